"""The enrich worker's publishing side: Faust tables, agents and a sweeping timer.

Three tables, each keyed like the stream that writes it, so a key's state lives
on the worker that owns its partition and is recovered from its changelog:

- ``l4s-sources`` (by source address, written from the detections stream): the
  :class:`~pipeline.ledger.Slot` of every source ever decided;
- ``l4s-prefixes`` (by prefix, from an internal topic the sources agent feeds
  when aggregation is on): the published members of each prefix and its slot;
- ``l4s-egress`` (by callback host, from an internal topic): what is known of the
  host and its slot.

A timer sweeps the slots of the partitions this worker owns: it refreshes
records before their lease ends, tombstones ended decisions, applies allowlist
and policy changes, and releases entries the breaker held. Writes outside of a
stream event go to the changelog partition the slot recorded, the same one the
stream wrote. Reading a slot, deciding, writing it back and handing the record
to the producer happen under one lock, so the topic and the table never
disagree on order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import faust
import msgspec
from faust.types import TableT

from pipeline import events, log
from pipeline.aggregate import prefix_entry, prefix_of
from pipeline.blocklist import (
    WITHHELD_LEVEL,
    BlocklistEntry,
    BlockPolicy,
    level_at_least,
)
from pipeline.config import Settings
from pipeline.egress import (
    EgressEntry,
    EgressState,
    Observation,
    egress_entry,
    new_state,
)
from pipeline.egress import observations as egress_observations
from pipeline.egress import review as egress_review
from pipeline.enrich_stage import Handled
from pipeline.ledger import Breaker, Ledger, Outcome, Slot
from pipeline.metrics import Metrics

_log = log.get("blocklist")
E = TypeVar("E", BlocklistEntry, EgressEntry)
#: Every slot is looked at this often even when nothing is due (recovered keys,
#: clock jumps); in between only keys whose time came are decoded.
_FULL_SWEEP_SECONDS = 60.0


class MemberUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A source entry joining, changing in, or leaving (``entry`` None) its prefix."""

    address: str
    entry: BlocklistEntry | None


class PrefixState(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    members: dict[str, BlocklistEntry] = {}
    slot: Slot[BlocklistEntry] | None = None


class HostState(msgspec.Struct, frozen=True, kw_only=True):
    partition: int
    seen: EgressState
    slot: Slot[EgressEntry] | None = None


class _Kind(Generic[E]):
    """One table and the topic its ledger publishes to, with its bookkeeping."""

    def __init__(
        self,
        name: str,
        *,
        table: TableT[Any, Any],
        topic: faust.TopicT,
        source_topic: str,
        ledger: Ledger[E],
        record_metric: Any,
    ) -> None:
        self.name = name
        self.table = table
        self.topic = topic
        self.source_topic = source_topic
        self.ledger: Ledger[E] = ledger
        self.record_metric = record_metric
        self.due: dict[bytes, float] = {}


class BlocklistPublisher:
    """Publishes blocklist and egress records for an enrich worker's Faust app.

    Args:
        app: the worker's app, not started yet.
        policy: the enrich stage's policy (shares its allowlist).
        clock: epoch seconds; tests may pass their own.

    Example:
        >>> publisher = BlocklistPublisher(app, s, policy, metrics)  # doctest: +SKIP
        >>> await publisher.on_handled(handled, partition=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        policy: BlockPolicy,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy
        self.metrics = metrics
        self.clock = clock
        b, t = settings.blocklist, settings.topics

        def topic(name: str, internal: bool = False) -> faust.TopicT:
            partitions = settings.kafka.partitions if internal else None
            return app.topic(
                name,
                key_serializer="raw",
                value_serializer="raw",
                internal=internal,
                partitions=partitions,
            )

        retention = settings.redis.dedup_days * 86400.0
        self._lock = asyncio.Lock()
        self._last_full = float("-inf")
        self._last_allowlist_check = float("-inf")
        self._assignment: frozenset[Any] = frozenset()

        blocklist_topic = topic(t.blocklist)
        # XXX(#5): the breaker counts new entries per enrich worker, not across the
        # group, so N workers admit up to N times the limit; a shared count would
        # put a Redis round trip on every publish.
        breaker = Breaker(
            b.breaker_per_minute,
            b.breaker_cooldown.total_seconds(),
            self._breaker_hook("blocklist"),
        )
        ledger: Ledger[BlocklistEntry] = Ledger(
            policy, policy.review, breaker, retention
        )
        # The last published record of each source, and its lifecycle.
        sources = app.Table(
            "l4s-sources", default=None, key_type=bytes, value_type=bytes
        )
        self.sources = _Kind(
            "blocklist",
            table=sources,
            topic=blocklist_topic,
            source_topic=t.detections,
            ledger=ledger,
            record_metric=metrics.blocklist_records,
        )
        self._slot_decoder = msgspec.json.Decoder(Slot[BlocklistEntry])
        self.internal_topics: list[str] = []

        self.prefixes: _Kind[BlocklistEntry] | None = None
        if b.aggregate_threshold > 0:
            members_topic = topic(f"{settings.enrich.app_id}-l4s-prefix-members", True)
            self.members_topic = members_topic
            table = app.Table(
                "l4s-prefixes", default=None, key_type=bytes, value_type=bytes
            )
            self.prefixes = _Kind(
                "blocklist",
                table=table,
                topic=blocklist_topic,
                source_topic=members_topic.get_topic_name(),
                ledger=ledger,
                record_metric=metrics.blocklist_records,
            )
            self.internal_topics.append(members_topic.get_topic_name())
            app.agent(members_topic, name="l4s-prefixes")(self._prefix_agent)
        self._prefix_decoder = msgspec.json.Decoder(PrefixState)
        self._member_decoder = msgspec.json.Decoder(MemberUpdate)

        egress_breaker = Breaker(
            b.breaker_per_minute,
            b.breaker_cooldown.total_seconds(),
            self._breaker_hook("egress"),
        )
        egress_ledger: Ledger[EgressEntry] = Ledger(
            policy, egress_review(policy), egress_breaker, retention
        )
        hosts_topic = topic(f"{settings.enrich.app_id}-l4s-egress-hosts", True)
        self.hosts_topic = hosts_topic
        table = app.Table("l4s-egress", default=None, key_type=bytes, value_type=bytes)
        self.egress = _Kind(
            "egress",
            table=table,
            topic=topic(t.egress),
            source_topic=hosts_topic.get_topic_name(),
            ledger=egress_ledger,
            record_metric=metrics.egress_records,
        )
        self.internal_topics.append(hosts_topic.get_topic_name())
        app.agent(hosts_topic, name="l4s-egress")(self._egress_agent)
        self._host_decoder = msgspec.json.Decoder(HostState)
        self._observation_decoder = msgspec.json.Decoder(Observation)

        app.timer(b.sweep_seconds)(self.sweep)

    # -- the detections stream ---------------------------------------------------

    async def on_handled(self, handled: Handled, partition: int) -> None:
        """Publish what one detection changed; call inside the detections stream."""
        ip = handled.enriched.detection.source_ip
        if not ip:
            return
        for obs in egress_observations(handled.enriched.detection):
            await self.hosts_topic.send(key=obs.host.encode(), value=events.encode(obs))
        if handled.rating is None:
            return
        withheld = handled.withheld
        if (
            handled.entry is None
            and withheld not in (None, "special", WITHHELD_LEVEL)
            and level_at_least(handled.rating.level, self.settings.blocklist.min_level)
        ):
            # Rated high enough to block but spared (allowlist, never-block,
            # research); special ranges are counted by the worker as special_range.
            self.metrics.blocklist_suppressed.labels(reason=str(withheld)).inc()
        key = ip.encode()
        now = self.clock()
        async with self._lock:
            slot = self._source_slot(key)
            outcome = self.sources.ledger.decide(
                ip, slot, handled.entry, partition, now=now, reason=handled.withheld
            )
            if outcome is None and slot is not None and not handled.aggregate.new:
                # A redelivery (counted before): the record may have been lost
                # in a crash after the table was written; send it again.
                outcome = self.sources.ledger.republish(ip, slot, now)
            if outcome is not None:
                await self._carry_out(self.sources, key, outcome, slot, in_stream=True)

    def _source_slot(self, key: bytes) -> Slot[BlocklistEntry] | None:
        raw = self.sources.table.get(key)
        if raw is None:
            return None
        try:
            return self._slot_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            # A value from before slots existed: decide afresh.
            return None

    # -- internal streams ----------------------------------------------------------

    async def _prefix_agent(self, stream: faust.StreamT[bytes]) -> None:
        assert self.prefixes is not None
        kind = self.prefixes
        async for event in stream.events():
            try:
                update = self._member_decoder.decode(event.value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                _log.warning("prefix_update_undecodable", offset=event.message.offset)
                continue
            key, partition = event.key or b"", event.message.partition
            async with self._lock:
                raw = kind.table.get(key)
                state = (
                    self._prefix_decoder.decode(raw)
                    if raw
                    else PrefixState(partition=partition)
                )
                members = dict(state.members)
                if update.entry is None:
                    members.pop(update.address, None)
                else:
                    members[update.address] = update.entry
                now = self.clock()
                desired, reason = prefix_entry(
                    key.decode(), members.values(), self.policy, now
                )
                outcome = kind.ledger.decide(
                    key.decode(), state.slot, desired, partition, now=now, reason=reason
                )
                slot = outcome.slot if outcome is not None else state.slot
                state = PrefixState(partition=partition, members=members, slot=slot)
                kind.table[key] = events.encode(state)
                if outcome is not None:
                    await self._publish(kind, key, outcome, state.slot)
                self._track(kind, key, slot)

    async def _egress_agent(self, stream: faust.StreamT[bytes]) -> None:
        kind = self.egress
        async for event in stream.events():
            try:
                obs = self._observation_decoder.decode(event.value or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                _log.warning(
                    "egress_observation_undecodable", offset=event.message.offset
                )
                continue
            key, partition = event.key or b"", event.message.partition
            async with self._lock:
                raw = kind.table.get(key)
                previous = self._host_decoder.decode(raw) if raw else None
                seen = previous.seen.merge(obs) if previous else new_state(obs)
                old_slot = previous.slot if previous else None
                if previous is not None and seen == previous.seen:
                    continue
                now = self.clock()
                desired, reason = egress_entry(obs.host, seen, self.policy, now)
                outcome = kind.ledger.decide(
                    obs.host, old_slot, desired, partition, now=now, reason=reason
                )
                slot = outcome.slot if outcome is not None else old_slot
                kind.table[key] = events.encode(
                    HostState(partition=partition, seen=seen, slot=slot)
                )
                if outcome is not None:
                    await self._publish(kind, key, outcome, old_slot)
                self._track(kind, key, slot)

    # -- the timer ---------------------------------------------------------------

    async def sweep(self) -> None:
        """Refresh, expire, withdraw and release what time and policy changed."""
        recovery = self.app.tables.recovery  # type: ignore[attr-defined]
        if (
            self.app.rebalancing
            or recovery.in_recovery
            or not recovery.completed.is_set()
        ):
            # A half-restored table may hold a slot older than its changelog's last
            # word; acting on it could republish a withdrawn entry.
            return
        now = self.clock()
        full = now - self._last_full >= _FULL_SWEEP_SECONDS
        interval = self.settings.blocklist.allowlist_check_seconds
        if now - self._last_allowlist_check >= interval:
            self._last_allowlist_check = now
            full = self.policy.allowlist.maybe_reload() or full
        assignment = frozenset(self.app.assignor.assigned_actives())
        if assignment != self._assignment:
            self._assignment, full = assignment, True
        for kind in self._kinds():
            kind.ledger.breaker.poll(now)
        if full:
            self._last_full = now
        for kind in self._kinds():
            await self._sweep_kind(kind, now, full)

    def _kinds(self) -> list[_Kind[Any]]:
        kinds: list[_Kind[Any]] = [self.sources, self.egress]
        if self.prefixes is not None:
            kinds.insert(1, self.prefixes)
        return kinds

    async def _sweep_kind(self, kind: _Kind[Any], now: float, full: bool) -> None:
        active = {
            tp.partition for tp in self._assignment if tp.topic == kind.source_topic
        }
        keys = (
            list(kind.table.data.keys())
            if full
            else [k for k, t in kind.due.items() if t <= now]
        )
        for count, key in enumerate(keys, 1):
            if count % 1000 == 0:
                # A full sweep of 100k slots takes about a second of CPU
                # (bench/bench_blocklist_sweep.py): let the streams run meanwhile.
                await asyncio.sleep(0)
            async with self._lock:
                slot, partition = self._slot_of(kind, key)
                if slot is None:
                    kind.due.pop(key, None)
                    continue
                if partition not in active:
                    # Standby data, or a partition this worker lost: its owner
                    # sweeps it.
                    kind.due.pop(key, None)
                    continue
                outcome = kind.ledger.sweep(key.decode(), slot, now)
                if outcome is None:
                    self._track(kind, key, slot)
                    continue
                await self._carry_out(kind, key, outcome, slot, in_stream=False)

    def _slot_of(self, kind: _Kind[Any], key: bytes) -> tuple[Slot[Any] | None, int]:
        raw = kind.table.data.get(key)
        if raw is None:
            return None, -1
        try:
            if kind is self.sources:
                slot = self._slot_decoder.decode(raw)
                return slot, slot.partition
            if kind is self.prefixes:
                prefix = self._prefix_decoder.decode(raw)
                return prefix.slot, prefix.partition
            host = self._host_decoder.decode(raw)
            return host.slot, host.partition
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None, -1

    # -- carrying out ----------------------------------------------------------------

    async def _carry_out(
        self,
        kind: _Kind[Any],
        key: bytes,
        outcome: Outcome[Any],
        previous: Slot[Any] | None,
        *,
        in_stream: bool,
    ) -> None:
        """Store the new slot (in the table's changelog partition), then publish."""
        value = self._state_value(kind, key, outcome)
        owner = outcome.slot or previous
        partition = owner.partition if owner is not None else 0
        if in_stream:
            if value is None:
                kind.table.pop(key, None)
            else:
                kind.table[key] = value
        elif value is None:
            kind.table.data.pop(key, None)
            kind.table.send_changelog(partition, key, None, value_serializer="raw")
        else:
            kind.table.data[key] = value
            kind.table.send_changelog(partition, key, value)
        await self._publish(kind, key, outcome, previous)
        self._track(kind, key, outcome.slot)

    def _state_value(
        self, kind: _Kind[Any], key: bytes, outcome: Outcome[Any]
    ) -> bytes | None:
        """The table value after ``outcome``; None removes the key."""
        if kind is self.sources:
            return events.encode(outcome.slot) if outcome.slot is not None else None
        raw = kind.table.data.get(key)
        if kind is self.prefixes:
            prefix = self._prefix_decoder.decode(raw) if raw else None
            if prefix is None or (outcome.slot is None and not prefix.members):
                return None
            # Forgetting a prefix's slot keeps its members: they are live entries.
            return events.encode(msgspec.structs.replace(prefix, slot=outcome.slot))
        host = self._host_decoder.decode(raw) if raw else None
        if host is None or outcome.slot is None:
            return None
        return events.encode(msgspec.structs.replace(host, slot=outcome.slot))

    async def _publish(
        self,
        kind: _Kind[Any],
        key: bytes,
        outcome: Outcome[Any],
        previous: Slot[Any] | None,
    ) -> None:
        if outcome.record is not None:
            await kind.topic.send(key=key, value=events.encode(outcome.record))
            kind.record_metric.labels(kind=outcome.kind).inc()
        elif outcome.tombstone:
            await kind.topic.send(key=key, value=None)
            reason = (
                "expired" if outcome.kind == "expire" else outcome.reason or "policy"
            )
            self.metrics.blocklist_tombstones.labels(
                topic=kind.name, reason=reason
            ).inc()
        if outcome.kind == "held" and outcome.reason == "breaker":
            self.metrics.blocklist_held.labels(topic=kind.name).inc()
        if kind is self.sources and self.prefixes is not None:
            await self._tell_prefix(key.decode(), outcome, previous)

    async def _tell_prefix(
        self, address: str, outcome: Outcome[Any], previous: Slot[Any] | None
    ) -> None:
        prefix = prefix_of(address, self.policy)
        if prefix is None:
            return
        if outcome.record is not None and outcome.kind != "refresh":
            update = MemberUpdate(address=address, entry=outcome.record)
        elif outcome.tombstone:
            update = MemberUpdate(address=address, entry=None)
        else:
            return
        await self.members_topic.send(key=prefix.encode(), value=events.encode(update))

    def _track(self, kind: _Kind[Any], key: bytes, slot: Slot[Any] | None) -> None:
        if slot is None:
            kind.due.pop(key, None)
            return
        if slot.status == "published":
            due = (
                slot.until
                if slot.refresh_at is None
                else min(slot.refresh_at, slot.until)
            )
        elif slot.status == "held":
            due = self.clock()
        else:
            due = slot.until + kind.ledger.retention
        kind.due[key] = due

    def _breaker_hook(self, topic: str) -> Callable[[bool, str], None]:
        def changed(is_open: bool, reason: str) -> None:
            # One gauge per worker: 1 while either list's breaker is open.
            still_open = any(k.ledger.breaker.open for k in self._kinds())
            self.metrics.blocklist_breaker_open.set(1 if still_open else 0)
            if is_open:
                self.metrics.blocklist_breaker_trips.labels(topic=topic).inc()
                _log.warning("blocklist_breaker_opened", topic=topic, reason=reason)
            else:
                _log.info("blocklist_breaker_closed", topic=topic, reason=reason)

        return changed
