"""Blocklist records and the policy that decides whether a source is published."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from pipeline import __version__
from pipeline.config import BlocklistSettings

LEVELS = ("Safe", "Low", "Moderate", "Dangerous", "Critical")
SCHEMA_VERSION = 1

#: How much longer than the base lifetime a block of each level lives.
_LEVEL_FACTOR = {"Dangerous": 1.0, "Critical": 3.0}


class BlocklistEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a blocklist record; the record key is ``address``.

    A firewall acts on ``action == "block"`` unless ``dry_run`` is set, and
    removes the address at ``expires_at`` or when a tombstone arrives.
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
    expires_at: str
    engine: str = __version__

    def content(self) -> tuple[object, ...]:
        """Everything but the expiry: equal content means nothing to republish."""
        return (
            self.address, self.action, self.dry_run, self.level, self.score, self.reasons,
            self.first_seen, self.last_seen, self.hits, self.days, self.country, self.asn,
            self.org, self.kind, self.research,
        )


def iso(timestamp: float) -> str:
    """RFC 3339 UTC time with seconds precision."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def level_at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum)


class BlockPolicy:
    """Turns a rated source into a blocklist entry, or decides not to.

    Args:
        settings: minimum level, dry-run and base lifetime.

    Example:
        >>> BlockPolicy(BlocklistSettings()).lifetime("Critical", days=2) / 3600
        108.0
    """

    def __init__(self, settings: BlocklistSettings) -> None:
        self.settings = settings

    def lifetime(self, level: str, days: int) -> float:
        """Seconds a block lives: longer for higher levels and returning sources."""
        recurrence = 1.0 + 0.5 * min(max(days - 1, 0), 6)
        return self.settings.ttl_hours * 3600 * _LEVEL_FACTOR.get(level, 1.0) * recurrence

    def blockable(self, level: str, special: str | None) -> bool:
        return special is None and level_at_least(level, self.settings.min_level)

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
        expires = max(now, last_seen) + self.lifetime(level, days)
        return BlocklistEntry(
            address=address,
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
            expires_at=iso(expires),
        )
