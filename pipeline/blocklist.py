"""Blocklist records and the policy that decides what is published and for how long.

A decision lives ``lifetime(level, days)`` after its latest evidence (``block_until``).
A published record carries a shorter ``expires_at`` (the lease): the enrich worker
re-publishes it before then while the decision lives, and tombstones it when the
decision ends. A firewall that stops hearing from l4s therefore drops its blocks
within one lease instead of keeping them forever, and one that keeps listening
never sees a live block lapse.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

from detectors import ENGINE_VERSION
from pipeline import __version__
from pipeline.allowlist import Allowlist, network_of
from pipeline.config import BlocklistSettings

LEVELS = ("Safe", "Low", "Moderate", "Dangerous", "Critical")
SCHEMA_VERSION = 1

#: Why a rated source is not published (metric label and per-source view value).
WITHHELD_LEVEL, WITHHELD_RESEARCH = "level", "research"


class BlocklistEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a blocklist record; the record key is ``address``.

    A firewall acts on ``action == "block"`` unless ``dry_run`` is set, and
    removes the address at ``expires_at`` or when a tombstone arrives.
    ``address`` is a prefix (``198.51.100.0/24``) when ``addresses`` > 1 blocked
    sources of one network were aggregated. ``engine`` is the l4s version,
    ``detector`` the detection engine's.

    Args:
        action: ``block``, or ``tag`` for research sources kept for analysts.
        block_until: when the decision ends unless new evidence extends it.

    Example:
        >>> e = BlocklistEntry(address="198.51.100.7", level="Critical", score=80.0,
        ...     first_seen="2021-12-10T14:25:38Z", last_seen="2021-12-10T14:25:38Z",
        ...     hits=3, days=1, expires_at="2021-12-10T20:25:38Z")
        >>> e.enforce
        True
    """

    v: int = SCHEMA_VERSION
    address: str
    action: str = "block"
    dry_run: bool = False
    level: str
    score: float
    reasons: tuple[str, ...] = ()
    first_seen: str
    last_seen: str
    hits: int
    days: int
    country: str | None = None
    asn: int | None = None
    org: str | None = None
    kind: str | None = None
    research: bool = False
    addresses: int = 1
    expires_at: str
    block_until: str | None = None
    engine: str = __version__
    detector: str = ENGINE_VERSION

    def content(self) -> tuple[object, ...]:
        """Everything but the clock: equal content means nothing to republish."""
        return (
            self.address,
            self.action,
            self.dry_run,
            self.level,
            self.score,
            self.reasons,
            self.first_seen,
            self.last_seen,
            self.hits,
            self.days,
            self.country,
            self.asn,
            self.org,
            self.kind,
            self.research,
            self.addresses,
        )

    @property
    def enforce(self) -> bool:
        """True when a firewall should block this entry."""
        return self.action == "block" and not self.dry_run

    @property
    def until(self) -> float:
        """``block_until`` (``expires_at`` for records without it) as epoch seconds."""
        return parse_time(self.block_until or self.expires_at)


def iso(timestamp: float) -> str:
    """RFC 3339 UTC time with seconds precision."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time as :func:`iso` writes it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def level_at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum)


def spread(key: str, salt: float) -> float:
    """A fraction in [0, 1) fixed by ``key`` and ``salt``: jitter that replays alike.

    Example:
        >>> spread("198.51.100.7", 0.0) == spread("198.51.100.7", 0.0)
        True
    """
    digest = hashlib.blake2b(f"{key}|{salt:.3f}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class BlockPolicy:
    """Turns a rated source into a blocklist entry, or says why it does not.

    Args:
        settings: minimum level, dry-run, research policy, lifetimes and lease.
        allowlist: what may never be published; read from ``settings`` if None.

    Example:
        >>> BlockPolicy(BlocklistSettings()).lifetime("Critical", days=2) / 3600
        108.0
    """

    def __init__(
        self, settings: BlocklistSettings, allowlist: Allowlist | None = None
    ) -> None:
        self.settings = settings
        self.allowlist = (
            allowlist if allowlist is not None else Allowlist.from_settings(settings)
        )

    def lifetime(self, level: str, days: int) -> float:
        """Seconds a decision lives: longer for higher levels and returning sources."""
        s = self.settings
        extra_days = min(max(days - 1, 0), s.recurrence_max_days - 1)
        recurrence = 1.0 + s.recurrence_step * extra_days
        factor = float(s.level_factors.get(level, 1.0))  # type: ignore[call-overload]
        seconds = s.lifetime.total_seconds() * factor * recurrence
        return min(seconds, s.max_lifetime.total_seconds())

    def until(self, key: str, level: str, days: int, decided: float) -> float:
        """When a decision taken at ``decided`` ends, jittered per key."""
        lifetime = self.lifetime(level, days)
        return decided + lifetime * (
            1.0 + self.settings.lifetime_jitter * spread(key, decided)
        )

    def lease_end(self, now: float, until: float) -> float:
        """``expires_at`` of a record published at ``now``."""
        return min(until, now + self.settings.lease.total_seconds())

    def refresh_at(
        self, key: str, now: float, expires: float, until: float
    ) -> float | None:
        """When to re-publish a record published at ``now`` (None: never)."""
        if expires >= until:
            return None
        lease = self.settings.lease.total_seconds()
        early = self.settings.refresh_margin + self.settings.refresh_jitter * spread(
            key, now
        )

        return max(expires - early * lease, now + 0.05 * lease)

    def action(self, research: bool) -> str | None:
        """``block`` or ``tag``; None when the research policy says to allow."""
        if not research or self.settings.research == "block":
            return "block"
        return None if self.settings.research == "allow" else "tag"

    def withheld(
        self, address: str, level: str, research: bool, now: float
    ) -> str | None:
        """Why a rated source is not published, or None when it is."""
        reason = self.allowlist.withheld(address, now)
        if reason is not None:
            return reason
        if not level_at_least(level, self.settings.min_level):
            return WITHHELD_LEVEL
        if self.action(research) is None:
            return WITHHELD_RESEARCH

        return None

    def review(
        self, entry: BlocklistEntry, now: float
    ) -> tuple[BlocklistEntry | None, str | None]:
        """Re-apply the current policy (allowlist, level, research, dry-run)."""
        if "/" in entry.address:
            reason = self.allowlist.withheld_network(network_of(entry.address), now)
        else:
            reason = self.withheld(entry.address, entry.level, entry.research, now)
        if reason is not None:
            return None, reason
        action = self.action(entry.research) or "tag"
        if action != entry.action or self.settings.dry_run != entry.dry_run:
            entry = msgspec.structs.replace(
                entry, action=action, dry_run=self.settings.dry_run
            )

        return entry, None

    def entry(
        self,
        *,
        address: str,
        level: str,
        score: float,
        reasons: tuple[str, ...],
        first_seen: float,
        last_seen: float,
        hits: int,
        days: int,
        now: float,
        country: str | None = None,
        asn: int | None = None,
        org: str | None = None,
        kind: str | None = None,
        research: bool = False,
    ) -> BlocklistEntry:
        # Replayed archives carry old event times: a decision starts when l4s
        # takes it, never in the past.
        decided = max(now, last_seen)
        until = self.until(address, level, days, decided)
        return BlocklistEntry(
            address=address,
            action=self.action(research) or "tag",
            dry_run=self.settings.dry_run,
            level=level,
            score=score,
            reasons=reasons,
            first_seen=iso(first_seen),
            last_seen=iso(last_seen),
            hits=hits,
            days=days,
            country=country,
            asn=asn,
            org=org,
            kind=kind,
            research=research,
            expires_at=iso(self.lease_end(decided, until)),
            block_until=iso(until),
        )
