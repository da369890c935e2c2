"""The analysis l4s reproduces, computed from a store for any range of days."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from pipeline.blocklist import LEVELS
from pipeline.store import Store


class DayStats(msgspec.Struct, frozen=True):
    attacks: int
    unique_ips: int


class AsnStats(msgspec.Struct, frozen=True):
    org: str | None
    unique_ips: int


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """What ``l4s report --json`` prints; keys are part of l4s's contract.

    ``lines``, ``parsed`` and ``dead_letters`` cover all input read so far (benign
    records carry no day); every other figure covers the chosen days, by event time.
    """

    lines: int
    parsed: int
    dead_letters: int
    attacks: int
    inert: int
    unique_ips: int
    recurring_ips: int
    tor_ips: int
    days: dict[str, DayStats]
    countries: dict[str, int]
    asns: dict[str, AsnStats]
    levels: dict[str, int]
    techniques: dict[str, int]
    fields: dict[str, int]


def build(store: Store, first: date | None = None, last: date | None = None) -> Report:
    """Compute the report over days in ``[first, last]`` (all days when None)."""
    totals = store.totals()
    days = [d for d in store.days() if _in_range(d, first, last)]
    per_day = {d: store.day(d) for d in days}
    days_seen: Counter[str] = Counter()
    techniques: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    attacks = inert = 0
    for view in per_day.values():
        days_seen.update(view.ips)
        techniques.update(view.techniques)
        fields.update(view.fields)
        attacks += view.attacks
        inert += view.inert
    sources = store.sources(days_seen)
    countries: Counter[str] = Counter()
    asns: dict[str, AsnStats] = {}
    levels = dict.fromkeys(LEVELS, 0)
    tor = 0
    for ip in days_seen:
        view = sources.get(ip, {})
        if view.get("country"):
            countries[view["country"]] += 1
        if view.get("asn"):
            previous = asns.get(view["asn"])
            count = previous.unique_ips + 1 if previous else 1
            asns[view["asn"]] = AsnStats(org=view.get("org"), unique_ips=count)
        if view.get("level") in levels:
            levels[view["level"]] += 1
        if view.get("flag:tor"):
            tor += 1
    return Report(
        lines=totals["lines"],
        parsed=totals["parsed"],
        dead_letters=totals["dead_letters"],
        attacks=attacks,
        inert=inert,
        unique_ips=len(days_seen),
        recurring_ips=sum(1 for n in days_seen.values() if n >= 2),
        tor_ips=tor,
        days={d: DayStats(attacks=v.attacks, unique_ips=len(v.ips)) for d, v in per_day.items()},
        countries=_ranked(countries),
        asns=dict(sorted(asns.items(), key=lambda item: (-item[1].unique_ips, item[0]))),
        levels=levels,
        techniques=_ranked(techniques),
        fields=_ranked(fields),
    )


def _ranked(counts: Counter[str]) -> dict[str, int]:
    """Largest first; ties by name, so every store renders the same document."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _in_range(day: str, first: date | None, last: date | None) -> bool:
    return (first is None or day >= first.isoformat()) and (last is None or day <= last.isoformat())


def to_json(report: Report) -> str:
    return json.dumps(msgspec.to_builtins(report), indent=2)


def render(report: Report, console: Console) -> None:
    """Terminal tables in the order of the published analysis."""
    r = report
    summary = Table(title="l4s — Log4Shell attack analysis", show_header=False)
    summary.add_row("log records read", f"{r.lines:,}")
    summary.add_row("parsed / dead-lettered", f"{r.parsed:,} / {r.dead_letters:,}")
    summary.add_row("attacks (records reaching a JNDI lookup)", f"{r.attacks:,}")
    summary.add_row("inert attempts", f"{r.inert:,}")
    summary.add_row("unique attacking IPs", f"{r.unique_ips:,}")
    summary.add_row("recurring IPs (≥ 2 days)", f"{r.recurring_ips:,}")
    summary.add_row("Tor exit IPs", f"{r.tor_ips:,}")
    console.print(summary)
    days = Table(title="Attacks per day")
    for column in ("day", "attacks", "unique IPs", "attacks per IP"):
        days.add_column(column, justify="right")
    for day, stats in r.days.items():
        ratio = stats.attacks / stats.unique_ips if stats.unique_ips else 0.0
        days.add_row(day, f"{stats.attacks:,}", f"{stats.unique_ips:,}", f"{ratio:.1f}")
    console.print(days)
    _counter_table(console, "Unique IPs per country", "country", r.countries, r.unique_ips)
    asns = Table(title="Unique IPs per ASN")
    for column in ("ASN", "organisation", "unique IPs"):
        asns.add_column(column)
    for asn, stats in list(r.asns.items())[:20]:
        asns.add_row(f"AS{asn}", stats.org or "", str(stats.unique_ips))
    console.print(asns)
    _counter_table(console, "Threat levels (unique IPs)", "level", r.levels, r.unique_ips)
    _counter_table(console, "Techniques (attacks)", "technique", r.techniques, r.attacks)
    _counter_table(console, "Fields carrying payloads (attacks)", "field", r.fields, r.attacks)


def _counter_table(console: Console, title: str, name: str, values: dict[str, Any], whole: int) -> None:
    table = Table(title=title)
    table.add_column(name)
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for key, count in values.items():
        share = f"{100 * count / whole:.1f}%" if whole else "-"
        table.add_row(str(key), f"{count:,}", share)
    console.print(table)
