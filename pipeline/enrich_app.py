"""``l4s enrich``: the stateful worker, a faust-streaming app over the detections topic.

Detections are keyed by source address, so each source's events reach one worker
in order. For each: the enrich stage counts it in Redis (once per event id) and
rates the source; the enriched event goes to the events topic; when the source's
blocklist decision changed, the new record goes to the blocklist topic and the
``sources`` table remembers what was published. Faust flushes the producer before
it commits an offset, so outputs are acknowledged before their input is marked done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import faust
import msgspec
import redis
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from pipeline import events, log
from pipeline.config import Settings
from pipeline.ecs import event_document
from pipeline.enrich_stage import EnrichStage, Handled
from pipeline.errors import PoisonRecord
from pipeline.metrics import Metrics
from pipeline.store import RedisStore

_log = log.get("enrich")
T = TypeVar("T")

#: How often the worker looks for partitions whose commits cannot advance.
_STUCK_CHECK_SECONDS = 5.0


def contiguous_consumer(base: type[Any], topic: str) -> type[Any]:
    """A Faust consumer class that commits ``topic`` only over processed records.

    Faust takes a jump in the offsets it reads for a hole in the log (compaction,
    transaction markers) and commits over it, and commits over a single missing
    record at the head. The detections topic has neither compaction nor
    transactions, so a jump there means records were fetched and dropped
    (faust-streaming issue 596): committing over them would lose them. Here the
    commit stops at the first record not processed; the worker's periodic check
    then seeks back so that they are delivered again.
    """

    class ContiguousConsumer(base):  # type: ignore[misc, valid-type]
        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            if tp.topic != topic:
                await super()._add_gap(tp, offset_from, offset_to)

        def _new_offset(self, tp: Any) -> int | None:
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            # A record before the first acknowledged one was never processed.
            missing = bool(acked) and committed is not None and min(acked) > committed
            if tp.topic == topic and missing:
                return None
            result: int | None = super()._new_offset(tp)
            return result

    return ContiguousConsumer


class EnrichWorker:
    """Builds and runs the Faust app.

    Args:
        stage: the enrich stage with its data files already open.
        store: the Redis serving view.
        stop_when_idle: exit once caught up and idle for this many seconds.
    """

    def __init__(
        self,
        settings: Settings,
        stage: EnrichStage,
        store: RedisStore,
        metrics: Metrics,
        stop_when_idle: float | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.store = store
        self.metrics = metrics
        self.stop_when_idle = stop_when_idle
        self._last_activity = time.monotonic()
        self._redis_down = False
        #: Partitions whose acknowledged offsets do not start at the committed one.
        self._suspect: dict[Any, tuple[int, int]] = {}
        self.app = self._build()

    def _build(self) -> faust.App:
        s = self.settings
        brokers = ";".join(f"kafka://{h.strip()}" for h in s.kafka.bootstrap.split(","))
        app = faust.App(
            s.enrich.app_id,
            broker=brokers,
            store="memory://",
            datadir=Path(tempfile.gettempdir()) / f"l4s-faust-{s.enrich.app_id}",
            topic_partitions=s.kafka.partitions,
            topic_replication_factor=s.kafka.replication,
            topic_disable_leader=True,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            web_enabled=False,
            autodiscover=False,
        )
        # Faust treats a jump in offsets as a hole in the log and commits over it;
        # in l4s's topics a jump means records Faust dropped (see
        # _refetch_dropped), so commits must stop there instead.
        app.transport.Consumer = contiguous_consumer(
            app.transport.Consumer, s.topics.detections
        )
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        detections = app.topic(s.topics.detections, **raw)
        self.events_topic = app.topic(s.topics.events, **raw)
        self.blocklist_topic = app.topic(s.topics.blocklist, **raw)
        self.dead_letter_topic = app.topic(s.topics.dead_letter, **raw)
        # Per source: the blocklist record last published, so an unchanged
        # decision does not publish again. Recovered from its changelog.
        # XXX(#6): held in memory for every blocked source, about 0.9 KB each
        # (bench/bench_memory.py), so a million blocked sources cost ~1 GB per
        # worker; a digest as the value or an on-disk store would bound it. Not
        # changed here: the table's shape is part of the enrich design.
        self.sources = app.Table("l4s-sources", default=None, key_type=bytes, value_type=bytes)

        @app.agent(detections, name="l4s-enrich")
        async def enrich(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                await self._on_event(event)

        @app.timer(1.0)
        async def idle_check() -> None:
            await self._maybe_stop(app)

        @app.timer(_STUCK_CHECK_SECONDS)
        async def stuck_commit_check() -> None:
            await self._refetch_dropped(app)

        return app

    async def _on_event(self, event: faust.EventT[bytes]) -> None:
        self._last_activity = time.monotonic()
        value = event.value or b""
        try:
            detection = events.decode_detection(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(event, value, str(exc)[:200])
            return
        try:
            handled = await self._redis(self.stage.handle, detection, self.store)
        except PoisonRecord as exc:
            # A detection the stage cannot use (e.g. a source that is no address):
            # it came from outside l4s's detect worker, or from an older version.
            await self._dead_letter(event, value, str(exc)[:200], reason=exc.reason)
            return
        await self._emit(handled)
        self._observe(handled)

    async def _emit(self, handled: Handled) -> None:
        ip = handled.enriched.detection.source_ip
        key = ip.encode() if ip else None
        document = msgspec.json.encode(event_document(handled))
        await self.events_topic.send(key=key, value=document)
        entry = handled.entry
        if entry is None or key is None:
            return
        published = self.sources.get(key)
        # A redelivered detection (already counted) publishes the current decision
        # even when the table holds the same: the table's changelog may have been
        # written before a crash that lost the blocklist record itself.
        if published is not None and handled.aggregate.new:
            previous = msgspec.json.decode(published, type=type(entry))
            if previous.content() == entry.content():
                return
        encoded = events.encode(entry)
        await self.blocklist_topic.send(key=key, value=encoded)
        self.sources[key] = encoded
        kind = "new" if published is None else "update"
        self.metrics.blocklist_records.labels(kind=kind).inc()

    async def _dead_letter(
        self, event: faust.EventT[bytes], value: bytes, detail: str, reason: str = "bad_detection"
    ) -> None:
        message = event.message
        source = f"{message.topic}/{message.partition}/{message.offset}"
        _log.warning("record_dead_lettered", reason=reason, source=source)
        self.metrics.dead_letters.labels(stage="enrich", reason=reason).inc()
        await self.dead_letter_topic.send(
            key=None,
            value=value,
            headers={
                "l4s-reason": reason.encode(),
                "l4s-detail": detail.encode(),
                "l4s-source": source.encode(),
                "l4s-stage": b"enrich",
            },
        )

    async def _redis(self, call: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(redis.RedisError),
            wait=wait_exponential(multiplier=0.5, max=10),
            before_sleep=self._on_redis_error,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                result = await loop.run_in_executor(None, call, *args)
        if self._redis_down:
            self._redis_down = False
            self.metrics.sink_up.labels(sink="redis").set(1)
            _log.info("redis_recovered")
        return result

    def _on_redis_error(self, state: RetryCallState) -> None:
        # Holding the event blocks the stream, so lag grows in Kafka while Redis
        # is away; Faust's bounded stream buffer keeps memory flat.
        exc = state.outcome.exception() if state.outcome else None
        self._redis_down = True
        self.metrics.sink_errors.labels(sink="redis").inc()
        self.metrics.sink_up.labels(sink="redis").set(0)
        if state.attempt_number in (1, 5) or state.attempt_number % 20 == 0:
            _log.warning("redis_unavailable_retrying", attempt=state.attempt_number, error=str(exc))

    def _observe(self, handled: Handled) -> None:
        if handled.rating is not None:
            self.metrics.threat_decisions.labels(level=handled.rating.level).inc()
        received = handled.enriched.detection.received
        if received is not None:
            self.metrics.end_to_end_seconds.observe(max(time.time() - received, 0.0))

    async def _refetch_dropped(self, app: faust.App) -> None:
        """Deliver again records Faust fetched but dropped, so commits go on.

        faust-streaming can drop records it had fetched while it recovers its
        tables after a rebalance (its issue 596). They are never processed nor
        acknowledged, and contiguous_consumer keeps the commit before them, so
        lag would stay up for good. Seeking the partition back to its committed
        offset delivers them again (the store dedups by event id).

        XXX(#6): a partition whose committed offset fell out of retention (the
        worker was down longer than the topic keeps records) also looks like
        this; the seek then restarts from the earliest record and the check
        repeats every few seconds with a warning. Not handled: it needs the
        partition's low watermark, which Faust does not keep.
        """
        if app.rebalancing:
            self._suspect.clear()
            return
        consumer = app.consumer
        acked_by_tp = getattr(consumer, "_acked", {})
        committed_by_tp = getattr(consumer, "_committed_offset", {})
        unacked = getattr(consumer, "_unacked_messages", ())
        in_flight = {(m.tp, m.offset) for m in unacked}
        for tp in consumer.assignment():
            if tp.topic != self.settings.topics.detections:
                continue
            acked, committed = acked_by_tp.get(tp), committed_by_tp.get(tp)
            if not acked or committed is None or min(acked) <= committed:
                self._suspect.pop(tp, None)
                continue
            if any(t == tp and offset < min(acked) for t, offset in in_flight):
                continue
            gap = (committed, min(acked))
            if self._suspect.get(tp) != gap:
                # Seen once: wait one more check, a record may be on its way.
                self._suspect[tp] = gap
                continue
            _log.warning(
                "dropped_records_refetched",
                partition=tp.partition,
                first=gap[0],
                until=gap[1],
            )
            self._suspect.pop(tp, None)
            await consumer.seek(tp, committed)

    async def _maybe_stop(self, app: faust.App) -> None:
        if self.stop_when_idle is None or app.rebalancing:
            return
        if time.monotonic() - self._last_activity < self.stop_when_idle:
            return
        consumer = app.consumer
        assignment = consumer.assignment()
        if not assignment:
            return
        for tp in assignment:
            if tp.topic != self.settings.topics.detections:
                continue
            position = await consumer.position(tp)
            highwater = consumer.highwater(tp)
            if position is None or highwater is None or position < highwater:
                return
        _log.info("enrich_idle_exit", idle_seconds=self.stop_when_idle)
        # The worker's own SIGTERM handling is the graceful path: streams finish
        # their current event, offsets are committed, the producer flushed.
        os.kill(os.getpid(), signal.SIGTERM)

    def run(self) -> int:
        worker = faust.Worker(
            self.app,
            loglevel="WARNING",
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        self.metrics.up.labels(stage="enrich").set(1)
        _log.info("enrich_started", topic=self.settings.topics.detections)
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0)
        finally:
            self.metrics.up.labels(stage="enrich").set(0)
            _log.info("enrich_stopped")
        return 0
