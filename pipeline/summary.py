"""A bounded summary of the serving view as Prometheus gauges, for the dashboard.

Per-country and per-organisation figures cannot be labels of address-level
metrics without one series per attacker. Instead the enrich worker computes the
report over the latest event days every few seconds and exports only what stays
small: a handful of windows, the five levels, the network kinds, the top-N
countries and the top-N organisations. Series of names that fall out of the
top N are removed, so at most ``top`` of each exist at any time.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

from prometheus_client import Gauge

from pipeline.metrics import Metrics
from pipeline.report import Report, build
from pipeline.store import Store

#: Event days the summary covers, ending at the latest day in the store.
WINDOW_DAYS = 7
#: Countries and organisations exported.
TOP = 10
#: Organisation names are cut to this many characters in a label value.
_ORG_CHARS = 60

_Values = dict[tuple[str, ...], float]


def summary_report(store: Store, days: int = WINDOW_DAYS) -> tuple[Report, Report]:
    """The report over the latest ``days`` event days, and over the latest day."""
    stored = store.days()
    if not stored:
        empty = build(store, date.max, date.max)
        return empty, empty
    last = date.fromisoformat(stored[-1])
    return build(store, last - timedelta(days=days - 1), last), build(store, last, last)


def refresh_summary(
    metrics: Metrics, store: Store, days: int = WINDOW_DAYS, top: int = TOP
) -> Report:
    """Set the ``l4s_store_*`` gauges from ``store``; returns the window's report.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> from pipeline.store import MemoryStore
        >>> refresh_summary(Metrics(CollectorRegistry()), MemoryStore()).unique_ips
        0
    """
    window, latest = summary_report(store, days)
    m = metrics
    name = f"{days}d"
    m.store_unique_sources.labels(window=name).set(window.unique_ips)
    m.store_unique_sources.labels(window="latest_day").set(latest.unique_ips)
    m.store_attacks.labels(window=name).set(window.attacks)
    m.store_attacks.labels(window="latest_day").set(latest.attacks)
    m.store_recurring_sources.set(window.recurring_ips)
    m.store_tor_sources.set(window.tor_ips)
    for level, count in window.levels.items():
        m.store_level_sources.labels(level=level).set(count)
    kinds: _Values = {(k,): g.unique_ips for k, g in window.network_kinds.items()}
    _replace(m.store_kind_sources, ("kind",), kinds)
    countries: _Values = {(c,): n for c, n in list(window.countries.items())[:top]}
    _replace(m.store_country_sources, ("country",), countries)
    orgs = list(window.asns.items())[:top]
    top_orgs: _Values = {
        (asn, (s.org or "")[:_ORG_CHARS]): s.unique_ips for asn, s in orgs
    }
    _replace(m.store_org_sources, ("asn", "org"), top_orgs)
    m.store_summary_time.set(time.time())

    return window


def _replace(gauge: Gauge, names: tuple[str, ...], values: _Values) -> None:
    """Set ``values`` and remove every other child, never leaving a scrape empty."""
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    for family in gauge.collect():
        for sample in family.samples:
            labels = tuple(sample.labels[n] for n in names)
            if labels not in values:
                gauge.remove(*labels)
