"""``l4s detect``: the hot-path worker on confluent-kafka.

Per batch: consume → detect stage → produce detections and dead letters → wait
for every delivery → add the line counts to Redis (once per offset range) →
store the offsets. Offsets are therefore stored only after everything derived
from them is acknowledged; a crash anywhere replays the batch, and the replay
is recognised downstream by event id and here by the partition's high-water mark.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import redis
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from pipeline import events, log
from pipeline.config import Settings
from pipeline.detect_stage import BatchOutcome, DetectStage, RawRecord
from pipeline.errors import ServiceUnavailable
from pipeline.kafka_io import (
    FORMAT_HEADER,
    check_broker,
    client_config,
    delivery_tracker,
    producer_config,
)
from pipeline.metrics import Metrics, field_label, scheme_label
from pipeline.store import RedisStore

_log = log.get("detect")

#: Seconds to wait for the broker to acknowledge a batch's output.
_FLUSH_TIMEOUT = 60.0
#: A dead letter carries at most this much of its record (the whole record stays
#: in the input topic, at the coordinates the l4s-source header names).
DEAD_LETTER_VALUE_BYTES = 64 * 1024


class DeliveryFailed(ServiceUnavailable):
    """The broker did not acknowledge a batch's output; its offsets stay unstored."""


class DetectWorker:
    """Consumes raw logs, publishes detections and dead letters, counts lines.

    Args:
        settings: topics, Kafka, Redis and detect settings.
        metrics: where to count; the worker never labels by address.
        stop_when_idle: exit cleanly once no record arrived for this many seconds.
    """

    def __init__(self, settings: Settings, metrics: Metrics, stop_when_idle: float | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stop_when_idle = stop_when_idle
        self.stage = DetectStage(settings)
        self._stopping = False
        check_broker(settings)
        self.store = RedisStore.connect(settings.redis.url, settings.redis.prefix, settings.redis.dedup_days)
        self.consumer = Consumer(
            client_config(
                settings,
                **{
                    "group.id": settings.detect.group,
                    "enable.auto.commit": True,
                    # Offsets are stored by hand, after the batch's output is acked.
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "cooperative-sticky",
                    "statistics.interval.ms": 5000,
                    "stats_cb": self._on_stats,
                },
            )
        )
        self.producer = Producer(producer_config(settings))
        self._failures, self._on_delivery = delivery_tracker()
        #: Per partition, the last offset whose record is counted in Redis.
        self._high_water: dict[str, int] = {}

    def run(self) -> int:
        """Run until SIGTERM/SIGINT or idleness; returns the exit status."""
        topic = self.settings.topics.input
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        self.metrics.up.labels(stage="detect").set(1)
        _log.info("detect_started", topic=topic, group=self.settings.detect.group)
        last_record = time.monotonic()
        try:
            while not self._stopping:
                messages = self.consumer.consume(self.settings.detect.batch_size, timeout=0.5)
                if not messages:
                    if self.stop_when_idle is not None and time.monotonic() - last_record > self.stop_when_idle:
                        _log.info("detect_idle_exit", idle_seconds=self.stop_when_idle)
                        break
                    continue
                last_record = time.monotonic()
                self._handle(messages)
        finally:
            self.metrics.up.labels(stage="detect").set(0)
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _handle(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        records = self._records(messages)
        fresh, recounted = self._split_counted(records)
        outcome = self.stage.process(fresh)
        self._publish(outcome)
        if recounted:
            # Records redelivered after a crash: publish again (downstream drops
            # them by event id) but never count them twice.
            self._publish(self.stage.process(recounted))
        self._count(outcome)
        self._store_offsets(messages)
        self._observe(outcome, time.perf_counter() - started)

    def _split_counted(self, records: list[RawRecord]) -> tuple[list[RawRecord], list[RawRecord]]:
        for stream in {r.stream for r in records} - self._high_water.keys():
            self._with_redis(lambda s=stream: self._high_water.__setitem__(s, self.store.high_water(s)))
        fresh = [r for r in records if r.seq > self._high_water[r.stream]]
        if len(fresh) == len(records):
            return records, []
        recounted = [r for r in records if r.seq <= self._high_water[r.stream]]
        return fresh, recounted

    def _records(self, messages: Sequence[Message]) -> list[RawRecord]:
        records: list[RawRecord] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            kind, stamp = message.timestamp()
            fmt = None
            headers = message.headers()
            if headers:
                for name, value in headers:
                    if name == FORMAT_HEADER and value:
                        fmt = value.decode("ascii", "replace")
            record = RawRecord(
                value=message.value() or b"",
                stream=f"{message.topic()}/{message.partition()}",
                seq=message.offset(),
                broker_time=stamp / 1000 if kind else None,
                format=fmt,
            )
            records.append(record)
        return records

    def _publish(self, outcome: BatchOutcome) -> None:
        topics = self.settings.topics
        for detection in outcome.detections:
            self._produce(
                topics.detections,
                key=detection.source_ip.encode(),
                value=events.encode(detection),
            )
        for record, exc in outcome.dead:
            reason = events.DeadLetter(reason=exc.reason, detail=exc.detail, source=record.event_id)
            headers = [
                ("l4s-reason", reason.reason.encode()),
                ("l4s-detail", reason.detail.encode("utf-8", "replace")),
                ("l4s-source", reason.source.encode()),
                ("l4s-stage", b"detect"),
            ]
            value = record.value
            if len(value) > DEAD_LETTER_VALUE_BYTES:
                headers.append(("l4s-original-bytes", str(len(value)).encode()))
                value = value[:DEAD_LETTER_VALUE_BYTES]
            self._produce(topics.dead_letter, key=None, value=value, headers=headers)
        if outcome.detections or outcome.dead:
            remaining = self.producer.flush(_FLUSH_TIMEOUT)
            if remaining or self._failures:
                failures = "; ".join(self._failures[:3]) or f"{remaining} messages unacknowledged"
                self._failures.clear()
                raise DeliveryFailed(f"Kafka did not acknowledge a batch: {failures}")

    def _produce(self, topic: str, **kwargs: Any) -> None:
        while True:
            try:
                self.producer.produce(topic, on_delivery=self._on_delivery, **kwargs)
                return
            except BufferError:
                # The local queue is full: serve deliveries until there is room.
                self.producer.poll(0.5)

    def _count(self, outcome: BatchOutcome) -> None:
        # One call per partition, each guarded by the partition's high-water mark.
        for stream in outcome.by_stream:
            last = outcome.last_seq[stream]
            counts = outcome.line_counts(stream)
            self._with_redis(lambda s=stream, o=last, c=counts: self.store.add_line_counts(s, o, c))
            self._high_water[stream] = last

    def _with_redis(self, call: Callable[[], object]) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(redis.RedisError),
            wait=wait_exponential(multiplier=0.5, max=10),
            before_sleep=self._redis_down,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                call()
        if self._paused:
            self.consumer.resume(self.consumer.assignment())
            self._paused = False
            self.metrics.sink_up.labels(sink="redis").set(1)
            _log.info("redis_recovered")

    _paused = False

    def _redis_down(self, state: RetryCallState) -> None:
        # Keep the group membership alive while Redis is away: pause fetching and
        # keep polling, so lag grows in Kafka instead of memory growing here.
        exc = state.outcome.exception() if state.outcome else None
        self.metrics.sink_errors.labels(sink="redis").inc()
        self.metrics.sink_up.labels(sink="redis").set(0)
        if not self._paused:
            self.consumer.pause(self.consumer.assignment())
            self._paused = True
        if state.attempt_number in (1, 5) or state.attempt_number % 20 == 0:
            _log.warning("redis_unavailable_retrying", attempt=state.attempt_number, error=str(exc))
        self.consumer.poll(0)

    def _store_offsets(self, messages: Sequence[Message]) -> None:
        latest: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                latest[(message.topic(), message.partition())] = message.offset()
        self.consumer.store_offsets(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in latest.items()]
        )

    def _observe(self, outcome: BatchOutcome, seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels(stage="detect").observe(seconds)
        for fmt, n in outcome.formats.items():
            m.records_parsed.labels(format=fmt).inc(n)
        m.records_consumed.labels(stage="detect", format="all").inc(outcome.counts["lines"])
        m.records_clean.inc(outcome.counts["prefiltered"])
        m.timestamp_fallbacks.inc(outcome.counts["timestamp_fallbacks"])
        for _record, exc in outcome.dead:
            m.dead_letters.labels(stage="detect", reason=exc.reason).inc()
        for detection in outcome.detections:
            if not detection.malicious:
                m.inert_attempts.inc()
                continue
            families = {f.family for f in detection.findings}
            for family in families:
                m.attacks.labels(family=family).inc()
            for technique in detection.techniques:
                m.detection_techniques.labels(technique=technique).inc()
            for name in detection.fields:
                m.detection_fields.labels(field=field_label(name)).inc()
            for scheme in {f.scheme for f in detection.findings}:
                m.detection_schemes.labels(scheme=scheme_label(scheme)).inc()
            if detection.limit_hit:
                m.detector_limits.labels(limit=detection.limit_hit).inc()

    def _on_stats(self, payload: str) -> None:
        stats = json.loads(payload)
        for topic, info in stats.get("topics", {}).items():
            for partition, pstats in info.get("partitions", {}).items():
                lag = pstats.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    self.metrics.consumer_lag.labels(topic=topic, partition=partition).set(lag)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _log.info("partitions_assigned", partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are processed between consume() calls, so every stored offset is
        # final here; commit them before another worker takes the partitions.
        _log.info("partitions_revoked", partitions=[p.partition for p in partitions])
        for p in partitions:
            # Another worker may advance the mark while it owns the partition.
            self._high_water.pop(f"{p.topic}/{p.partition}", None)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                _log.warning("commit_on_revoke_failed", error=exc.args[0].str())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        _log.info("detect_stopping", signal=signal.Signals(signum).name)
        self._stopping = True

    def _close(self) -> None:
        self.producer.flush(_FLUSH_TIMEOUT)
        try:
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                _log.warning("final_commit_failed", error=exc.args[0].str())
        self.consumer.close()
        _log.info("detect_stopped")


