"""Prefix aggregation: one entry for a network once enough of its addresses are blocked.

Member entries stay published; firewalls get the prefix and the addresses it
covers are left out of their sets (see :func:`pipeline.follower.effective`).
A prefix that overlaps an allowlisted, never-block or special range is never
published, so aggregation cannot reach an address l4s was told to spare.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import TypeVar

from pipeline.blocklist import LEVELS, BlocklistEntry, BlockPolicy, iso, parse_time

_T = TypeVar("_T")


def prefix_of(address: str, policy: BlockPolicy) -> str | None:
    """The aggregation prefix of an address, or None when aggregation is off.

    Example:
        >>> from pipeline.config import BlocklistSettings
        >>> policy = BlockPolicy(BlocklistSettings(aggregate_threshold=3))
        >>> prefix_of("198.51.100.7", policy)
        '198.51.100.0/24'
    """
    s = policy.settings
    if s.aggregate_threshold <= 0 or "/" in address:
        return None
    ip = ipaddress.ip_address(address)
    length = s.aggregate_prefix_v4 if ip.version == 4 else s.aggregate_prefix_v6

    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


def prefix_entry(
    prefix: str, members: Iterable[BlocklistEntry], policy: BlockPolicy, now: float
) -> tuple[BlocklistEntry | None, str | None]:
    """The entry for ``prefix`` from its live blocked members, or None and why not."""
    live = sorted(
        (m for m in members if m.action == "block" and m.until > now),
        key=lambda m: m.address,
    )
    if len(live) < max(policy.settings.aggregate_threshold, 1) or not live:
        return None, "below-threshold"
    reason = policy.allowlist.withheld_network(ipaddress.ip_network(prefix), now)
    if reason is not None:
        return None, reason
    level = max((m.level for m in live), key=LEVELS.index)
    until = max(m.until for m in live)
    first = min(parse_time(m.first_seen) for m in live)
    last = max(parse_time(m.last_seen) for m in live)
    entry = BlocklistEntry(
        address=prefix,
        dry_run=policy.settings.dry_run,
        level=level,
        score=max(m.score for m in live),
        reasons=(f"{len(live)} blocked addresses in {prefix}",),
        first_seen=iso(first),
        last_seen=iso(last),
        hits=sum(m.hits for m in live),
        days=max(m.days for m in live),
        country=_common(m.country for m in live),
        asn=_common(m.asn for m in live),
        org=_common(m.org for m in live),
        kind=_common(m.kind for m in live),
        addresses=len(live),
        expires_at=iso(policy.lease_end(now, until)),
        block_until=iso(until),
    )

    return entry, None


def aggregate(
    entries: Mapping[str, BlocklistEntry], policy: BlockPolicy, now: float
) -> dict[str, BlocklistEntry]:
    """Prefix entries for a finished set of address entries (``l4s scan``)."""
    groups: dict[str, list[BlocklistEntry]] = {}
    for address, entry in entries.items():
        prefix = prefix_of(address, policy)
        if prefix is not None:
            groups.setdefault(prefix, []).append(entry)
    out = {}
    for prefix, members in groups.items():
        made, _ = prefix_entry(prefix, members, policy, now)
        if made is not None:
            out[prefix] = made

    return out


def _common(values: Iterable[_T | None]) -> _T | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None
