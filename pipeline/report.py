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
from pipeline.enrich_stage import NOT_OBFUSCATION
from pipeline.store import Store


class DayStats(msgspec.Struct, frozen=True, kw_only=True):
    """One event day: attacks, sources, and how the payloads looked.

    ``new_ips`` are sources whose first attack in the report's range falls on
    this day; ``techniques`` and ``fields`` count attacks per tag and field.
    """

    attacks: int
    unique_ips: int
    attacks_per_ip: float = 0.0
    new_ips: int = 0
    techniques: dict[str, int] = {}
    fields: dict[str, int] = {}


class AsnStats(msgspec.Struct, frozen=True):
    org: str | None
    unique_ips: int


class KindStats(msgspec.Struct, frozen=True, kw_only=True):
    """Sources of one network kind (``research`` holds research/testing sources)."""

    unique_ips: int
    asns: dict[str, AsnStats]


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
    # Added for the published analysis' sections; keys above never change.
    first_day: str | None = None
    last_day: str | None = None
    attacks_per_ip: float = 0.0
    days_active: dict[str, int] = {}
    country_count: int = 0
    top5_country_share: float = 0.0
    network_kinds: dict[str, KindStats] = {}
    research_ips: int = 0
    compromised_ips: int = 0
    tor_share: float = 0.0
    dangerous_critical_share: float = 0.0
    obfuscation: dict[str, int] = {}


def build(store: Store, first: date | None = None, last: date | None = None) -> Report:
    """Compute the report over days in ``[first, last]`` (all days when None)."""
    totals = store.totals()
    days = [d for d in store.days() if _in_range(d, first, last)]
    per_day = {d: store.day(d) for d in days}
    days_seen: Counter[str] = Counter()
    first_day_of: dict[str, str] = {}
    techniques: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    attacks = inert = 0
    for day, view in per_day.items():
        days_seen.update(view.ips)
        for ip in view.ips:
            first_day_of.setdefault(ip, day)
        techniques.update(view.techniques)
        fields.update(view.fields)
        attacks += view.attacks
        inert += view.inert
    sources = store.sources(days_seen)
    countries: Counter[str] = Counter()
    asns: dict[str, AsnStats] = {}
    kinds: dict[str, dict[str, AsnStats]] = {}
    kind_ips: Counter[str] = Counter()
    levels = dict.fromkeys(LEVELS, 0)
    tor = research = compromised = 0
    for ip in days_seen:
        source = sources.get(ip, {})
        if source.get("country"):
            countries[source["country"]] += 1
        if source.get("asn"):
            asns[source["asn"]] = _one_more(asns.get(source["asn"]), source.get("org"))
        kind = (
            "research" if source.get("flag:research") else source.get("kind", "unknown")
        )
        kind_ips[kind] += 1
        group = kinds.setdefault(kind, {})
        if source.get("asn"):
            group[source["asn"]] = _one_more(
                group.get(source["asn"]), source.get("org")
            )
        if source.get("level") in levels:
            levels[source["level"]] += 1
        if source.get("flag:tor"):
            tor += 1
        research += bool(source.get("flag:research"))
        compromised += bool(source.get("flag:compromised"))
    new_ips = Counter(first_day_of.values())
    unique = len(days_seen)
    top5 = sum(n for _, n in countries.most_common(5))
    return Report(
        lines=totals["lines"],
        parsed=totals["parsed"],
        dead_letters=totals["dead_letters"],
        attacks=attacks,
        inert=inert,
        unique_ips=unique,
        recurring_ips=sum(1 for n in days_seen.values() if n >= 2),
        tor_ips=tor,
        days={
            d: DayStats(
                attacks=v.attacks,
                unique_ips=len(v.ips),
                attacks_per_ip=_ratio(v.attacks, len(v.ips)),
                new_ips=new_ips[d],
                techniques=_ranked(v.techniques),
                fields=_ranked(v.fields),
            )
            for d, v in per_day.items()
        },
        countries=_ranked(countries),
        asns=_by_sources(asns),
        levels=levels,
        techniques=_ranked(techniques),
        fields=_ranked(fields),
        first_day=days[0] if days else None,
        last_day=days[-1] if days else None,
        attacks_per_ip=_ratio(attacks, unique),
        days_active={str(n): c for n, c in sorted(Counter(days_seen.values()).items())},
        country_count=len(countries),
        top5_country_share=_ratio(top5, unique),
        network_kinds={
            kind: KindStats(unique_ips=kind_ips[kind], asns=_by_sources(kinds[kind]))
            for kind in _ranked(kind_ips)
        },
        research_ips=research,
        compromised_ips=compromised,
        tor_share=_ratio(tor, unique),
        dangerous_critical_share=_ratio(
            levels["Dangerous"] + levels["Critical"], unique
        ),
        obfuscation=_ranked(
            Counter({t: n for t, n in techniques.items() if is_obfuscation(t)})
        ),
    )


def is_obfuscation(technique: str) -> bool:
    """True for tags that hide a lookup; target descriptors (``ip-literal``) are not."""
    return technique not in NOT_OBFUSCATION


def _one_more(previous: AsnStats | None, org: str | None) -> AsnStats:
    return AsnStats(org=org, unique_ips=previous.unique_ips + 1 if previous else 1)


def _by_sources(asns: dict[str, AsnStats]) -> dict[str, AsnStats]:
    return dict(sorted(asns.items(), key=lambda item: (-item[1].unique_ips, item[0])))


def _ratio(part: int, whole: int) -> float:
    """``part / whole`` rounded to 4 places (0 for an empty whole), stable in JSON."""
    return round(part / whole, 4) if whole else 0.0


def _ranked(counts: Counter[str]) -> dict[str, int]:
    """Largest first; ties by name, so every store renders the same document."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _in_range(day: str, first: date | None, last: date | None) -> bool:
    return (first is None or day >= first.isoformat()) and (
        last is None or day <= last.isoformat()
    )


def to_json(report: Report) -> str:
    return json.dumps(msgspec.to_builtins(report), indent=2)


def render(report: Report, console: Console) -> None:
    """Terminal tables in the order of the published analysis."""
    r = report
    summary = Table(title="l4s — Log4Shell attack analysis", show_header=False)
    span = f"{r.first_day} … {r.last_day}" if r.first_day else "no attacks"
    summary.add_row("event days", f"{span} ({len(r.days)} days)")
    summary.add_row("log records read", f"{r.lines:,}")
    summary.add_row("parsed / dead-lettered", f"{r.parsed:,} / {r.dead_letters:,}")
    summary.add_row("attacks (records reaching a JNDI lookup)", f"{r.attacks:,}")
    summary.add_row("inert attempts", f"{r.inert:,}")
    summary.add_row("unique attacking IPs", f"{r.unique_ips:,}")
    summary.add_row("attacks per IP", f"{r.attacks_per_ip:.1f}")
    summary.add_row("recurring IPs (≥ 2 days)", f"{r.recurring_ips:,}")
    summary.add_row("Tor exit IPs", f"{r.tor_ips:,} ({_pct(r.tor_share)})")
    summary.add_row("research / testing IPs", f"{r.research_ips:,}")
    summary.add_row("possibly compromised hosts", f"{r.compromised_ips:,}")
    summary.add_row("Dangerous + Critical", _pct(r.dangerous_critical_share))
    console.print(summary)
    days = Table(title="Attacks per day")
    for column in ("day", "attacks", "unique IPs", "attacks per IP", "new IPs"):
        days.add_column(column, justify="right")
    for day, stats in r.days.items():
        ratio = stats.attacks / stats.unique_ips if stats.unique_ips else 0.0
        days.add_row(
            day,
            f"{stats.attacks:,}",
            f"{stats.unique_ips:,}",
            f"{ratio:.1f}",
            f"{stats.new_ips:,}",
        )
    console.print(days)
    recurring = f"{r.recurring_ips} recurring (≥ 2 days)"
    _counter_table(
        console, "Days active", "days", r.days_active, r.unique_ips, caption=recurring
    )
    spread = f"{r.country_count} countries, top five {_pct(r.top5_country_share)}"
    _counter_table(
        console,
        "Unique IPs per country",
        "country",
        r.countries,
        r.unique_ips,
        caption=spread,
    )
    kinds = Table(title="Sources by network kind (research/testing apart)")
    for column in ("kind", "unique IPs", "share", "organisations"):
        kinds.add_column(column)
    for kind, group in r.network_kinds.items():
        orgs = ", ".join(
            f"{s.org or 'AS' + asn} ({s.unique_ips})" for asn, s in group.asns.items()
        )
        share = _pct(group.unique_ips / r.unique_ips if r.unique_ips else 0.0)
        kinds.add_row(kind, str(group.unique_ips), share, orgs)
    console.print(kinds)
    asns = Table(title="Unique IPs per ASN")
    for column in ("ASN", "organisation", "unique IPs"):
        asns.add_column(column)
    for asn, asn_stats in list(r.asns.items())[:20]:
        asns.add_row(f"AS{asn}", asn_stats.org or "", str(asn_stats.unique_ips))
    console.print(asns)
    levels = Table(title="Threat levels (unique IPs)")
    for column in ("level", "count", "share"):
        levels.add_column(column, justify="right" if column != "level" else "left")
    for level, count in r.levels.items():
        levels.add_row(
            level, f"{count:,}", _pct(count / r.unique_ips if r.unique_ips else 0.0)
        )
    levels.caption = f"Dangerous + Critical: {_pct(r.dangerous_critical_share)}"
    console.print(levels)
    _diversification_table(console, r)
    _counter_table(
        console, "Techniques (attacks)", "technique", r.techniques, r.attacks
    )
    _counter_table(
        console, "Fields carrying payloads (attacks)", "field", r.fields, r.attacks
    )


def _diversification_table(console: Console, r: Report) -> None:
    """Per day: where payloads sat and which obfuscation they used."""
    table = Table(title="Payload diversification per day (share of the day's attacks)")
    for column in ("day", "attacks", "plain", "fields", "obfuscation techniques"):
        table.add_column(column)
    for day, stats in r.days.items():
        whole = stats.attacks
        fields = ", ".join(
            f"{_short_field(f)} {_pct(n / whole if whole else 0.0)}"
            for f, n in stats.fields.items()
        )
        obfuscation = ", ".join(
            f"{t} {n}" for t, n in stats.techniques.items() if is_obfuscation(t)
        )
        plain = _pct(stats.techniques.get("plain", 0) / whole if whole else 0.0)
        table.add_row(day, f"{whole:,}", plain, fields, obfuscation or "-")
    console.print(table)


def _short_field(name: str) -> str:
    """``http.request.headers.x-api-version`` → ``X-Api-Version`` (labels only)."""
    for prefix, label in (
        ("http.request.headers.", ""),
        ("user_agent.original", "User-Agent"),
        ("url.original", "URL"),
        ("http.request.referrer", "Referer"),
    ):
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            return label or "-".join(part.capitalize() for part in rest.split("-"))
    return name


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _counter_table(
    console: Console,
    title: str,
    name: str,
    values: dict[str, Any],
    whole: int,
    *,
    caption: str | None = None,
) -> None:
    table = Table(title=title, caption=caption)
    table.add_column(name)
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for key, count in values.items():
        share = f"{100 * count / whole:.1f}%" if whole else "-"
        table.add_row(str(key), f"{count:,}", share)
    console.print(table)
