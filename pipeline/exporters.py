"""The current blocklist in the formats firewalls and threat-intel platforms read.

One function per format in a plain registry; each takes a :class:`Listing` (the
live entries at one instant) and returns the whole document. Firewall formats
(plain, nftables, ipset) hold only what a firewall should enforce: ``block``
entries not in dry-run, with addresses covered by a blocked prefix left out.
JSON, CSV and STIX hold every live entry with its action and dry-run flag.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import stix2

from pipeline import __version__
from pipeline.blocklist import BlocklistEntry, parse_time
from pipeline.config import BlocklistSettings
from pipeline.egress import EgressEntry
from pipeline.follower import effective

#: Namespace of the deterministic STIX identifiers l4s writes.
_STIX_NAMESPACE = uuid.UUID("5b1c7c1e-4a52-4b8e-9d0c-2f1ad5e0a1c4")
_STIX_EPOCH = "2021-12-10T00:00:00Z"
_CSV_FIELDS = (
    "address",
    "action",
    "dry_run",
    "level",
    "score",
    "addresses",
    "first_seen",
    "last_seen",
    "hits",
    "days",
    "country",
    "asn",
    "org",
    "kind",
    "research",
    "expires_at",
    "block_until",
    "reasons",
)
_EGRESS_CSV_FIELDS = (
    "host",
    "type",
    "action",
    "dry_run",
    "roles",
    "schemes",
    "ports",
    "oob",
    "sources",
    "first_seen",
    "last_seen",
    "expires_at",
    "block_until",
)


@dataclass(frozen=True)
class Listing:
    """What to export: live entries at ``now``.

    Args:
        entries: live blocklist entries (sources and prefixes).
        egress: live egress entries (callback hosts).
        egress_only: export the egress list instead of the source list.
        min_level: firewall formats keep entries at this level or above.

    Example:
        >>> EXPORTERS["plain"](Listing([], [], BlocklistSettings(), now=0.0))
        ''
    """

    entries: Sequence[BlocklistEntry]
    egress: Sequence[EgressEntry]
    settings: BlocklistSettings
    now: float
    egress_only: bool = False
    min_level: str | None = None
    notes: list[str] = field(default_factory=list)

    def firewall(self) -> list[tuple[str, int]]:
        """``(address or prefix, seconds left)`` a firewall should block now."""
        if self.egress_only:
            chosen: list[tuple[str, str]] = [
                (e.host, e.expires_at)
                for e in self.egress
                if e.enforce and e.type != "name"
            ]
            names = sum(1 for e in self.egress if e.enforce and e.type == "name")
            if names:
                self.notes.append(
                    f"{names} callback host names left out (addresses only)"
                )
        else:
            chosen = [
                (e.address, e.expires_at)
                for e in effective(self.entries, self.min_level)
            ]
        out = []
        for address, expires_at in chosen:
            seconds = math.ceil(parse_time(expires_at) - self.now)
            if seconds >= 1:
                out.append((address, seconds))

        return out


def _plain(listing: Listing) -> str:
    if listing.egress_only:
        # Names too: a DNS firewall (RPZ, a resolver blocklist) takes them.
        hosts = [g.host for g in listing.egress if g.enforce]
        return "".join(f"{host}\n" for host in hosts)
    return "".join(f"{address}\n" for address, _ in listing.firewall())


def _json(listing: Listing) -> str:
    items: Sequence[msgspec.Struct] = (
        listing.egress if listing.egress_only else listing.entries
    )
    return "".join(
        json.dumps(msgspec.to_builtins(e), sort_keys=True) + "\n" for e in items
    )


def _csv(listing: Listing) -> str:
    out = io.StringIO()
    if listing.egress_only:
        writer = csv.DictWriter(out, _EGRESS_CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for g in listing.egress:
            row = {k: getattr(g, k) for k in _EGRESS_CSV_FIELDS}
            for name in ("roles", "schemes", "ports"):
                row[name] = " ".join(str(v) for v in row[name])
            writer.writerow(row)
    else:
        writer = csv.DictWriter(out, _CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for e in listing.entries:
            row = {k: getattr(e, k) for k in _CSV_FIELDS}
            row["reasons"] = "; ".join(e.reasons)
            writer.writerow(row)

    return out.getvalue()


def set_names(settings: BlocklistSettings, egress: bool = False) -> tuple[str, str]:
    """The IPv4 and IPv6 nftables set names."""
    base = f"{settings.nft_set}_egress" if egress else settings.nft_set
    return f"{base}_v4", f"{base}_v6"


def ipset_names(settings: BlocklistSettings, egress: bool = False) -> tuple[str, str]:
    """The IPv4 and IPv6 ipset names."""
    base = f"{settings.ipset_name}-egress" if egress else settings.ipset_name
    return f"{base}-v4", f"{base}-v6"


def split_families(
    elements: Sequence[tuple[str, int]],
) -> tuple[list[tuple[str, int]], ...]:
    v4 = [x for x in elements if ipaddress.ip_network(x[0], strict=False).version == 4]
    v6 = [x for x in elements if ipaddress.ip_network(x[0], strict=False).version == 6]
    return v4, v6


def nft_set_declarations(
    settings: BlocklistSettings, egress: bool = False
) -> list[str]:
    """Commands that create the table and sets if missing (idempotent)."""
    table = settings.nft_table
    v4, v6 = set_names(settings, egress)
    flags = "flags interval, timeout;"
    return [
        f"add table inet {table}",
        f"add set inet {table} {v4} {{ type ipv4_addr; {flags} }}",
        f"add set inet {table} {v6} {{ type ipv6_addr; {flags} }}",
    ]


def nft_elements(elements: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{address} timeout {seconds}s" for address, seconds in elements)


def _nftables(listing: Listing) -> str:
    """An ``nft -f`` script that replaces the sets' contents in one transaction."""
    s = listing.settings
    table = s.nft_table
    lines = [
        f"# l4s {__version__} blocklist: load with  nft -f FILE  (one transaction)",
        *nft_set_declarations(s, listing.egress_only),
    ]
    names = set_names(s, listing.egress_only)
    for name, elements in zip(names, split_families(listing.firewall()), strict=True):
        lines.append(f"flush set inet {table} {name}")
        if elements:
            lines.append(
                f"add element inet {table} {name} {{ {nft_elements(elements)} }}"
            )

    return "\n".join(lines) + "\n"


def _ipset(listing: Listing) -> str:
    """``ipset restore`` input that swaps freshly filled sets in atomically."""
    lines = [f"# l4s {__version__} blocklist: load with  ipset restore < FILE"]
    names = ipset_names(listing.settings, listing.egress_only)
    families = ("inet", "inet6")
    for name, family, elements in zip(
        names, families, split_families(listing.firewall()), strict=True
    ):
        staging = f"{name}-new"
        create = f"hash:net family {family} timeout 0 -exist"
        lines += [
            f"create {name} {create}",
            f"create {staging} {create}",
            f"flush {staging}",
        ]
        lines += [
            f"add {staging} {address} timeout {seconds}"
            for address, seconds in elements
        ]
        lines += [f"swap {staging} {name}", f"destroy {staging}"]

    return "\n".join(lines) + "\n"


def _stix_id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(_STIX_NAMESPACE, key)}"


def _pattern(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"[domain-name:value = '{value}']"
    kind = "ipv4-addr" if net.version == 4 else "ipv6-addr"
    if "/" in value:
        return f"[{kind}:value ISSUBSET '{net}']"

    return f"[{kind}:value = '{net.network_address}']"


def _stix(listing: Listing) -> str:
    """A STIX 2.1 bundle: one indicator per blocked address and per callback host."""
    identity = stix2.Identity(
        id=_stix_id("identity", "l4s"),
        name="l4s",
        identity_class="system",
        description="Log4Shell detection pipeline",
        created=_STIX_EPOCH,
        modified=_STIX_EPOCH,
    )
    reference = {"source_name": "cve", "external_id": "CVE-2021-44228"}
    objects: list[object] = [identity]
    for e in listing.entries:
        labels = [e.level.lower(), e.action] + (["dry-run"] if e.dry_run else [])
        objects.append(
            stix2.Indicator(
                id=_stix_id("indicator", f"source:{e.address}"),
                created_by_ref=identity.id,
                created=e.first_seen,
                modified=e.last_seen,
                name=f"Log4Shell exploitation source {e.address}",
                description="; ".join(e.reasons) or None,
                indicator_types=["malicious-activity"],
                pattern=_pattern(e.address),
                pattern_type="stix",
                valid_from=e.first_seen,
                valid_until=e.expires_at,
                confidence=max(0, min(100, round(e.score))),
                labels=labels,
                external_references=[reference],
            )
        )
    for g in listing.egress:
        labels = ["callback", *g.roles] + (["dry-run"] if g.dry_run else [])
        objects.append(
            stix2.Indicator(
                id=_stix_id("indicator", f"callback:{g.host}"),
                created_by_ref=identity.id,
                created=g.first_seen,
                modified=g.last_seen,
                name=f"Log4Shell callback host {g.host}",
                description=(
                    f"named in payloads as {', '.join(g.roles)}; "
                    f"schemes {', '.join(g.schemes) or '-'}; never resolved by l4s"
                ),
                indicator_types=["malicious-activity"],
                pattern=_pattern(g.host),
                pattern_type="stix",
                valid_from=g.first_seen,
                valid_until=g.expires_at,
                labels=labels,
                external_references=[reference],
            )
        )
    ids = ",".join(sorted(str(getattr(o, "id", "")) for o in objects))
    bundle = stix2.Bundle(objects=objects, id=_stix_id("bundle", ids))

    return str(bundle.serialize(pretty=True)) + "\n"


#: Format name → exporter.
EXPORTERS: dict[str, Callable[[Listing], str]] = {
    "plain": _plain,
    "json": _json,
    "csv": _csv,
    "nftables": _nftables,
    "ipset": _ipset,
    "stix": _stix,
}
