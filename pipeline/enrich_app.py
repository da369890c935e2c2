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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import faust
import httpx
import msgspec
import redis
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential,
)

from pipeline import events, log
from pipeline.blocklist import LEVELS, BlocklistEntry, level_at_least
from pipeline.blocklist_app import BlocklistPublisher
from pipeline.config import Settings
from pipeline.datafetch import Download, DownloadError, fetch, validate_tor
from pipeline.ecs import event_document
from pipeline.enrich_stage import EnrichStage, Handled
from pipeline.errors import PoisonRecord
from pipeline.ledger import Slot
from pipeline.metrics import Metrics
from pipeline.store import RedisStore
from pipeline.summary import refresh_summary

_log = log.get("enrich")
T = TypeVar("T")

#: Seconds between refreshes of data ages, cache, lag and blocklist gauges.
_GAUGE_INTERVAL = 10.0
#: Seconds between summaries of the serving view (a few Redis round trips).
_SUMMARY_INTERVAL = 30.0
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

    class ContiguousConsumer(base):  # type: ignore[misc]
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
        self._cache_seen = [0, 0]
        self._lag_partitions: set[int] = set()
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
        consumer_class = contiguous_consumer(app.transport.Consumer, s.topics.detections)
        setattr(app.transport, "Consumer", consumer_class)  # noqa: B010 - a class attribute
        detections = app.topic(s.topics.detections, key_serializer="raw", value_serializer="raw")
        self.events_topic = app.topic(s.topics.events, key_serializer="raw", value_serializer="raw")
        self.dead_letter_topic = app.topic(
            s.topics.dead_letter, key_serializer="raw", value_serializer="raw"
        )
        # Per source: the blocklist record last published and its lifecycle, so a
        # redelivered or unchanged detection does not publish again; refreshed,
        # expired and withdrawn by the publisher's timer. Recovered from changelogs.
        self.publisher = BlocklistPublisher(app, s, self.stage.policy, self.metrics)
        self.sources = self.publisher.sources.table
        self._slot_decoder = msgspec.json.Decoder(Slot[BlocklistEntry])
        # XXX(#6): the tables are held in memory for every blocked source, about
        # 0.9 KB each (bench/bench_memory.py), so a million blocked sources cost
        # ~1 GB per worker; an on-disk store (rocksdict) would bound it. Not done
        # here: it adds a native dependency and changes recovery times.

        @app.agent(detections, name="l4s-enrich")
        async def enrich(stream: faust.StreamT[bytes]) -> None:
            async for event in stream.events():
                await self._on_event(event)

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def idle_check() -> None:
            await self._maybe_stop(app)

        @app.timer(_GAUGE_INTERVAL)  # type: ignore[untyped-decorator]
        async def gauge_timer() -> None:
            await self._refresh_gauges(app)

        @app.timer(_SUMMARY_INTERVAL)  # type: ignore[untyped-decorator]
        async def summary_timer() -> None:
            await self._refresh_summary()

        @app.timer(s.enrich.reload_seconds)  # type: ignore[untyped-decorator]
        async def reload_data() -> None:
            # A file replaced by `l4s data update` (renamed over) is picked up
            # here; the readers themselves stay open until then.
            loop = asyncio.get_running_loop()
            if await loop.run_in_executor(None, self.stage.reload_data):
                _log.info("enrichment_data_reloaded")

        if s.enrich.tor_refresh_hours and s.enrich.tor_exits is not None:

            @app.timer(s.enrich.tor_refresh_hours * 3600)  # type: ignore[untyped-decorator]
            async def refresh_tor() -> None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._refresh_tor)

        @app.timer(_STUCK_CHECK_SECONDS)  # type: ignore[untyped-decorator]
        async def stuck_commit_check() -> None:
            await self._refetch_dropped(app)

        return app

    async def _on_event(self, event: faust.EventT[bytes]) -> None:
        self._last_activity = time.monotonic()
        started = time.perf_counter()
        value = event.value or b""
        self.metrics.records_consumed.labels(stage="enrich", format="detection").inc()
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
        await self._emit(handled, event.message.partition)
        self._observe(handled)
        elapsed = time.perf_counter() - started
        self.metrics.batch_seconds.labels(stage="enrich").observe(elapsed)

    async def _emit(self, handled: Handled, partition: int) -> None:
        ip = handled.enriched.detection.source_ip
        key = ip.encode() if ip else None
        document = msgspec.json.encode(event_document(handled))
        await self.events_topic.send(key=key, value=document)
        await self.publisher.on_handled(handled, partition)

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
        observe_handled(self.metrics, handled, self.settings.blocklist.min_level)
        received = handled.enriched.detection.received
        if received is not None:
            self.metrics.end_to_end_seconds.observe(max(time.time() - received, 0.0))

    async def _refresh_gauges(self, app: faust.App) -> None:
        observe_data(self.metrics, self.stage, self._cache_seen)
        await self._observe_lag(app)
        self._observe_blocklist()

    async def _observe_lag(self, app: faust.App) -> None:
        # aiokafka has no statistics callback: lag is the fetched high-water mark
        # minus the position, per assigned partition of the detections topic.
        if app.rebalancing:
            return
        topic = self.settings.topics.detections
        consumer = app.consumer
        owned = {tp for tp in consumer.assignment() if tp.topic == topic}
        for tp in owned:
            highwater = consumer.highwater(tp)
            position = await consumer.position(tp)
            if highwater is not None and position is not None:
                gauge = self.metrics.consumer_lag
                lag = gauge.labels(topic=topic, partition=str(tp.partition))
                lag.set(max(highwater - position, 0))
        gone = self._lag_partitions - {tp.partition for tp in owned}
        for partition in gone:
            self.metrics.forget_lag(topic, partition)
        self._lag_partitions = {tp.partition for tp in owned}

    def _observe_blocklist(self) -> None:
        # XXX(#7): counts the decisions in this worker's table, which after a
        # rebalance can still hold keys of partitions it lost until the next
        # recovery prunes them; the sum over workers may then over-count briefly.
        # The follower's materialised set is the exact figure once it exports one.
        now = time.time()
        levels = dict.fromkeys(LEVELS, 0)
        for value in list(self.sources.values()):
            if value is None:
                continue
            try:
                slot = self._slot_decoder.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            entry = slot.entry
            live = (
                slot.status == "published"
                and entry.action == "block"
                and _epoch(entry.expires_at) > now
            )
            if live and entry.level in levels:
                levels[entry.level] += 1
        for level, count in levels.items():
            self.metrics.blocklist_entries.labels(level=level).set(count)

    async def _refresh_summary(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, refresh_summary, self.metrics, self.store)
        except redis.RedisError as exc:
            # A summary is for dashboards; the next tick tries again.
            _log.warning("summary_refresh_failed", error=str(exc))

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

    def _refresh_tor(self) -> None:
        refresh_tor_list(self.settings)

    async def _maybe_stop(self, app: faust.App) -> None:
        if self.stop_when_idle is None or app.rebalancing:
            return
        if time.monotonic() - self._last_activity < self.stop_when_idle:
            return
        consumer = app.consumer
        assignment = consumer.assignment()
        if not assignment:
            return
        inputs = {self.settings.topics.detections, *self.publisher.internal_topics}
        for tp in assignment:
            if tp.topic not in inputs:
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


def observe_handled(metrics: Metrics, handled: Handled, min_level: str) -> None:
    """Count one enriched detection: lookups, rating, policy suppressions."""
    enriched = handled.enriched
    geo = enriched.geo
    lookups = metrics.enrich_lookups
    if enriched.detection.source_ip:
        if geo.special is not None:
            lookups.labels(source="geo", result="special").inc()
        else:
            lookups.labels(source="geo", result=_found(geo.country_iso)).inc()
            lookups.labels(source="asn", result=_found(geo.asn)).inc()
            tor = "exit" if enriched.tor else "not_exit"
            lookups.labels(source="tor", result=tor).inc()
    rating = handled.rating
    if rating is None:
        return
    metrics.threat_decisions.labels(level=rating.level).inc()
    blockable = level_at_least(rating.level, min_level)
    if handled.entry is None and geo.special is not None and blockable:
        # Rated high enough to block, but a special-purpose range never is.
        metrics.blocklist_suppressed.labels(reason="special_range").inc()


def _found(value: object) -> str:
    return "not_found" if value is None else "found"


def observe_data(metrics: Metrics, stage: EnrichStage, seen: list[int]) -> None:
    """Data-file ages and the geo cache counters since the last call.

    ``seen`` holds the cache's hit and miss counts at the previous call.
    """
    for source, age in stage.geo.ages().items():
        metrics.data_age.labels(source=source).set(age)
    if stage.tor is not None:
        metrics.data_age.labels(source="tor").set(stage.tor.age_seconds())
    hits, misses = stage.geo.hits, stage.geo.misses
    cache = metrics.enrich_cache
    cache.labels(cache="geo", result="hit").inc(max(hits - seen[0], 0))
    cache.labels(cache="geo", result="miss").inc(max(misses - seen[1], 0))
    seen[:] = [hits, misses]


def _epoch(stamp: str) -> float:
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return parsed.timestamp()


def refresh_tor_list(settings: Settings) -> bool:
    """Fetch the Tor exit list into ``enrich.tor_exits``; False on failure.

    On failure the last good copy stays: the list ages, the stale-data alert
    fires, nothing stops.
    """
    dest = settings.enrich.tor_exits
    if dest is None:
        return False
    item = Download(url=settings.data.tor.url, dest=dest)
    try:
        with httpx.Client(timeout=settings.data.timeout) as client:
            result = fetch(item, validate_tor, client=client, attempts=settings.data.retries)
    except DownloadError as exc:
        _log.warning("tor_refresh_failed", error=str(exc))
        return False
    _log.info("tor_list_refreshed", status=result.status)
    return True
