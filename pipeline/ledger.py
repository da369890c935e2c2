"""What a compacted topic holds per key over time: publish, refresh, expire, withdraw.

Pure: every call takes ``now``; the Faust worker stores the :class:`Slot` of each
key in a table and carries out the :class:`Outcome`. A slot remembers the last
decision even after it was tombstoned (``withdrawn`` or ``expired``), so a
redelivered detection with nothing new can never publish it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

import msgspec

from pipeline import log
from pipeline.blocklist import BlockPolicy, iso

_log = log.get("blocklist")

Status = Literal["published", "held", "withdrawn", "expired"]
#: What an outcome did, as a metric label.
Kind = Literal[
    "new", "update", "refresh", "release", "held", "expire", "withdraw", "forget"
]


class Record(Protocol):
    """A topic value the ledger can keep alive: blocklist and egress entries."""

    @property
    def expires_at(self) -> str: ...

    @property
    def block_until(self) -> str | None: ...

    @property
    def until(self) -> float: ...

    def content(self) -> tuple[object, ...]: ...


E = TypeVar("E", bound=Record)


class Slot(msgspec.Struct, Generic[E], frozen=True, kw_only=True):
    """The state of one key: its last decision and what the topic holds for it.

    Args:
        partition: the input partition the key belongs to (the table's changelog
            partition, needed to write it outside of a stream event).
        status: ``published`` (the topic holds ``entry``), ``held`` (decided, not
            yet published: the breaker is open), ``withdrawn`` (tombstoned by
            policy: allowlist, level, research) or ``expired``.
        refresh_at: when to re-publish; None when the record runs to ``until``.
    """

    partition: int
    status: Status
    entry: E
    until: float
    refresh_at: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome(Generic[E]):
    """What to do for one key: store ``slot`` (or forget the key) and maybe publish.

    ``record`` is the value to publish; ``tombstone`` publishes a null value.
    """

    kind: Kind
    slot: Slot[E] | None
    record: E | None = None
    tombstone: bool = False
    reason: str | None = None


class Breaker:
    """Pauses new entries when more than ``per_minute`` arrive within a minute.

    New entries that arrive while it is open are held, not dropped; it closes
    once the rate stayed at or under the limit for ``cooldown`` seconds, and
    held entries are then released no faster than the limit.

    Args:
        per_minute: the limit; 0 turns the breaker off.
        on_change: called with ``(open, reason)`` when it opens or closes.

    Example:
        >>> b = Breaker(2, cooldown=60)
        >>> [b.admit(now=0.0) for _ in range(3)]
        [True, True, False]
    """

    def __init__(
        self,
        per_minute: int,
        cooldown: float,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.cooldown = cooldown
        self.on_change = on_change
        self.open = False
        self._recent: deque[float] = deque()
        self._last_over = float("-inf")

    def _rate(self, now: float) -> int:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        return len(self._recent)

    def admit(self, now: float) -> bool:
        """Count one new entry; True when it may be published now."""
        if self.per_minute <= 0:
            return True
        self._recent.append(now)
        rate = self._rate(now)
        if rate > self.per_minute:
            self._last_over = now
            if not self.open:
                self.open = True
                self._changed(
                    f"{rate} new entries in the last minute, limit {self.per_minute}"
                )
        return not self.open

    def poll(self, now: float) -> None:
        """Close when the rate has stayed under the limit for the cool-down."""
        quiet = now - self._last_over >= self.cooldown
        if self.open and quiet and self._rate(now) <= self.per_minute:
            self.open = False
            self._changed(
                f"rate under {self.per_minute} per minute for {self.cooldown:.0f}s"
            )

    def try_release(self, now: float) -> bool:
        """Take one slot of the limit for a held entry; False while open or full."""
        if self.per_minute <= 0:
            return True
        if self.open or self._rate(now) >= self.per_minute:
            return False
        self._recent.append(now)
        return True

    def _changed(self, reason: str) -> None:
        if self.on_change is not None:
            self.on_change(self.open, reason)


class Ledger(Generic[E]):
    """Decides, per key, what its topic should hold now.

    Args:
        policy: lease and refresh timing.
        review: re-applies the current policy to a live entry (allowlist,
            dry-run...); returns the entry to publish or None and a reason.
        breaker: limits how fast new keys appear.
        retention: seconds a tombstoned key's slot is kept after its decision
            ended, so a late redelivery cannot revive it.

    Example:
        >>> ledger = Ledger(policy, review, Breaker(0, 0), 86400)  # doctest: +SKIP
        >>> ledger.decide("192.0.2.7", None, entry, 0, now=1e9).kind  # doctest: +SKIP
        'new'
    """

    def __init__(
        self,
        policy: BlockPolicy,
        review: Callable[[E, float], tuple[E | None, str | None]],
        breaker: Breaker,
        retention: float,
    ) -> None:
        self.policy = policy
        self.review = review
        self.breaker = breaker
        self.retention = retention

    def decide(
        self,
        key: str,
        slot: Slot[E] | None,
        desired: E | None,
        partition: int,
        *,
        now: float,
        reason: str | None = None,
    ) -> Outcome[E] | None:
        """A decision from new evidence; ``desired`` None: policy withholds it."""
        if desired is None:
            return self._withdraw(slot, now, reason) if slot is not None else None
        if slot is not None and slot.entry.content() == desired.content():
            # Nothing new (a redelivery, or a repeat of the same evidence).
            return None
        until = desired.until
        if (
            slot is not None
            and slot.status in ("published", "held")
            and slot.until > until
        ):
            # New evidence never shortens a live decision.
            until = slot.until
            desired = msgspec.structs.replace(desired, block_until=iso(until))  # type: ignore[type-var]
        if slot is not None and slot.status == "published":
            return self._publish(
                key, desired, partition=partition, now=now, until=until, kind="update"
            )
        if slot is not None and slot.status == "held":
            return Outcome(
                "held",
                Slot(partition=partition, status="held", entry=desired, until=until),
            )
        if not self.breaker.admit(now):
            held = Slot(partition=partition, status="held", entry=desired, until=until)
            return Outcome("held", held, reason="breaker")

        return self._publish(
            key, desired, partition=partition, now=now, until=until, kind="new"
        )

    def republish(self, key: str, slot: Slot[E], now: float) -> Outcome[E] | None:
        """A published decision sent again: same content, a fresh lease.

        For a redelivered detection: the table's changelog and the record on the
        topic are separate sends, so a crash between them can leave the table
        saying "published" for a record the topic never got.
        """
        if slot.status != "published" or now >= slot.until:
            return None
        return self._publish(
            key, slot.entry, partition=slot.partition, now=now, until=slot.until, kind="refresh"
        )

    def sweep(self, key: str, slot: Slot[E], now: float) -> Outcome[E] | None:
        """What time alone changes for a key: refresh, expiry, policy changes."""
        if slot.status in ("withdrawn", "expired"):
            if now >= slot.until + self.retention:
                return Outcome("forget", None)
            return None
        if now >= slot.until:
            ended = msgspec.structs.replace(slot, status="expired", refresh_at=None)
            return Outcome("expire", ended, tombstone=slot.status == "published")
        reviewed, reason = self.review(slot.entry, now)
        if reviewed is None:
            return self._withdraw(slot, now, reason)
        if slot.status == "held":
            if self.breaker.try_release(now):
                return self._publish(
                    key,
                    reviewed,
                    partition=slot.partition,
                    now=now,
                    until=slot.until,
                    kind="release",
                )
            return None
        if reviewed.content() != slot.entry.content():
            return self._publish(
                key,
                reviewed,
                partition=slot.partition,
                now=now,
                until=slot.until,
                kind="update",
            )
        if slot.refresh_at is not None and now >= slot.refresh_at:
            return self._publish(
                key,
                reviewed,
                partition=slot.partition,
                now=now,
                until=slot.until,
                kind="refresh",
            )

        return None

    def _withdraw(
        self, slot: Slot[E], now: float, reason: str | None
    ) -> Outcome[E] | None:
        if slot.status not in ("published", "held"):
            return None
        gone = msgspec.structs.replace(slot, status="withdrawn", refresh_at=None)
        return Outcome(
            "withdraw", gone, tombstone=slot.status == "published", reason=reason
        )

    def _publish(
        self,
        key: str,
        entry: E,
        *,
        partition: int,
        now: float,
        until: float,
        kind: Kind,
    ) -> Outcome[E]:
        expires = self.policy.lease_end(now, until)
        record = msgspec.structs.replace(entry, expires_at=iso(expires))  # type: ignore[type-var]
        slot = Slot(
            partition=partition,
            status="published",
            entry=record,
            until=until,
            refresh_at=self.policy.refresh_at(key, now, expires, until),
        )
        return Outcome(kind, slot, record=record)
