"""``l4s detect``: the hot-path worker on confluent-kafka.

Per batch: consume → detect stage → produce detections and dead letters → wait
for every delivery → add the line counts to Redis (once per offset range) →
store the offsets. Offsets are therefore stored only after everything derived
from them is acknowledged; a crash anywhere replays the batch, and the replay
is recognised downstream by event id and here by the partition's high-water mark.
"""

from __future__ import annotations

import bisect
import json
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from pipeline.metrics import Metrics, field_label, format_label, scheme_label
from pipeline.store import RedisStore

_log = log.get("detect")

#: Seconds to wait for the broker to acknowledge a batch's output.
_FLUSH_TIMEOUT = 60.0
#: A dead letter carries at most this much of its record (the whole record stays
#: in the input topic, at the coordinates the l4s-source header names).
DEAD_LETTER_VALUE_BYTES = 64 * 1024


@dataclass
class _Group:
    """A run of one partition's messages in a batch that share a declared format."""

    stream: str
    topic: str
    partition: int
    format: str | None
    messages: list[Message] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)


def _declared_format(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None],
) -> str | None:
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        if name == FORMAT_HEADER and value:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return None


def _offset(message: Message) -> int:
    """The offset of a consumed message (librdkafka always sets one)."""
    offset = message.offset()
    return offset if offset is not None else -1


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
        self._last_activity = time.monotonic()
        wait = self.settings.detect.max_wait_ms / 1000
        try:
            while not self._stopping:
                messages = self.consumer.consume(self.settings.detect.batch_size, timeout=wait)
                if not messages:
                    idle = time.monotonic() - self._last_activity
                    if self.stop_when_idle is not None and idle > self.stop_when_idle:
                        if self._joined and self._caught_up():
                            _log.info("detect_idle_exit", idle_seconds=self.stop_when_idle)
                            break
                        # Quiet but behind (a broker restart): wait on.
                        self._last_activity = time.monotonic()
                    continue
                self._last_activity = time.monotonic()
                self._handle(messages)
        finally:
            self.metrics.up.labels(stage="detect").set(0)
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _handle(self, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        groups = self._groups(messages)
        fresh, replayed = BatchOutcome(), BatchOutcome()
        for group in groups:
            # Offsets at or below the partition's high-water mark were counted
            # before a crash or rebalance: publish again (downstream drops them by
            # event id) but never count them twice.
            high_water = self._known_high_water(group.stream)
            split = 0
            if _offset(group.messages[0]) <= high_water:
                offsets = [_offset(m) for m in group.messages]
                split = bisect.bisect_right(offsets, high_water)
            if split:
                self._process(group, 0, split, replayed)
            if split < len(group.messages):
                self._process(group, split, len(group.messages), fresh)
        self._publish(fresh)
        self._publish(replayed)
        if replayed.by_stream:
            self.metrics.duplicates.labels(stage="detect").inc(replayed.counts["lines"])
        self._count(fresh)
        self._store_offsets(groups)
        self._observe(fresh, time.perf_counter() - started)

    def _process(self, group: _Group, start: int, end: int, out: BatchOutcome) -> None:
        values = group.values[start:end]
        messages = group.messages[start:end]
        stream, fmt, topic = group.stream, group.format, group.topic

        def make(i: int) -> RawRecord:
            message = messages[i]
            kind, stamp = message.timestamp()
            broker_time = stamp / 1000 if kind else None
            return RawRecord(values[i], stream, _offset(message), broker_time, fmt, topic=topic)

        last = max(out.last_seq.get(stream, -1), _offset(messages[-1]))
        joined = b"\n".join(values)
        if joined.count(b"\n") != len(values) - 1:
            # A record holding a newline (a multi-line format): record by record.
            self.stage.process((make(i) for i in range(len(values))), out)
            out.last_seq[stream] = last
            return
        self.stage.process_block(values, make, stream, last, out, fmt=fmt, topic=topic, joined=joined)

    def _known_high_water(self, stream: str) -> int:
        if stream not in self._high_water:
            self._with_redis(lambda: self._high_water.__setitem__(stream, self.store.high_water(stream)))
        return self._high_water[stream]

    def _groups(self, messages: Sequence[Message]) -> list[_Group]:
        """Runs of messages of one partition and declared format, in offset order.

        This loop touches every message, so it calls as few accessors as it can;
        offsets and timestamps are read later, only for records that need them.
        """
        groups: list[_Group] = []
        current: _Group | None = None
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    # Transient trouble (a topic a broker does not know yet just
                    # after its creation, a leader moving): librdkafka retries.
                    _log.warning("consume_error", code=error.name(), reason=error.str())
                continue
            partition = message.partition()
            headers = message.headers()
            fmt = _declared_format(headers) if headers else None
            if current is None or partition != current.partition or fmt != current.format:
                topic = message.topic() or ""
                current = _Group(f"{topic}/{partition}", topic, partition or 0, fmt)
                groups.append(current)
            current.messages.append(message)
            current.values.append(message.value() or b"")
        return groups

    def _publish(self, outcome: BatchOutcome) -> int:
        """Produce a batch's detections and dead letters; returns how many."""
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
        return len(outcome.detections) + len(outcome.dead)

    def _await_acks(self) -> None:
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
        # One round trip for the batch; each partition's counts are guarded by
        # that partition's high-water mark inside Redis.
        # XXX(#6): the guard compares the batch's last offset only. A worker that
        # overran max.poll.interval and lost its partitions mid-batch can still
        # count that batch; if its count lands after the new owner read the mark
        # and before the new owner counts an overlapping batch, the overlap is
        # counted twice. Not seen in the fault tests; closing it needs the
        # script to refuse a batch starting at or below the mark and the worker
        # to recount the part above it.
        items = [
            (stream, outcome.last_seq[stream], outcome.line_counts(stream))
            for stream in outcome.by_stream
        ]
        if not items:
            return
        self._with_redis(lambda: self.store.add_line_counts_many(items))
        for stream, last, _ in items:
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
    _last_activity = 0.0
    #: Set once the group has handed this worker its first assignment.
    _joined = False

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

    def _store_offsets(self, groups: list[_Group]) -> None:
        latest: dict[tuple[str, int], int] = {}
        for group in groups:
            key = (group.topic, group.partition)
            latest[key] = max(latest.get(key, -1), _offset(group.messages[-1]))
        self.consumer.store_offsets(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in latest.items()]
        )

    def _observe(self, outcome: BatchOutcome, seconds: float) -> None:
        observe_batch(self.metrics, outcome, seconds, self.settings.formats.default)

    def _caught_up(self) -> bool:
        """True when every partition of the input is read to its end.

        Partitions this worker does not own count too: a member that died keeps
        its partitions until its session times out, and idling out before then
        would leave them unread. Their progress is the group's committed offset.
        """
        topic = self.settings.topics.input
        try:
            metadata = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is None or metadata.error is not None:
                return False
            everything = [TopicPartition(topic, p) for p in metadata.partitions]
            committed = {
                tp.partition: tp.offset for tp in self.consumer.committed(everything, timeout=5)
            }
            owned = {
                tp.partition: tp.offset
                for tp in self.consumer.position(self.consumer.assignment())
                if tp.topic == topic
            }
            for tp in everything:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=5)
                position = owned.get(tp.partition, -1)
                if position < 0:
                    position = committed.get(tp.partition, -1)
                if position < 0:
                    position = low
                if position < high:
                    return False
        except KafkaException:
            return False
        return True

    def _on_stats(self, payload: str) -> None:
        observe_stats(self.metrics, json.loads(payload))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A rebalance is activity: a cooperative one may hand out partitions in
        # a second step, so idleness counts from the last one.
        self._last_activity = time.monotonic()
        self._joined = True
        _log.info("partitions_assigned", partitions=[p.partition for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Batches are processed between consume() calls, so every stored offset is
        # final here; commit them before another worker takes the partitions.
        self._last_activity = time.monotonic()
        _log.info("partitions_revoked", partitions=[p.partition for p in partitions])
        for p in partitions:
            # Another worker may advance the mark while it owns the partition.
            self._high_water.pop(f"{p.topic}/{p.partition}", None)
            # Its lag is now the new owner's to report; a stale series here would
            # double it in sums over workers.
            self.metrics.forget_lag(p.topic, p.partition)
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


def observe_batch(
    metrics: Metrics, outcome: BatchOutcome, seconds: float, declared: str = "auto"
) -> None:
    """Count one processed batch: records by format, dead letters, detections.

    ``declared`` is the configured input format; a record's own ``l4s-format``
    header overrides it. Every label value is folded into a fixed vocabulary.
    """
    m = metrics
    m.batch_seconds.labels(stage="detect").observe(seconds)
    m.records_consumed.labels(stage="detect", format="all").inc(outcome.counts["lines"])
    for fmt, n in outcome.formats.items():
        m.records_parsed.labels(format=format_label(fmt)).inc(n)
    m.records_clean.inc(outcome.counts["prefiltered"])
    m.timestamp_fallbacks.inc(outcome.counts["timestamp_fallbacks"])
    for record, exc in outcome.dead:
        m.dead_letters.labels(stage="detect", reason=exc.reason).inc()
        fmt = format_label(record.format or declared)
        m.dead_letter_formats.labels(stage="detect", format=fmt).inc()
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


def observe_stats(metrics: Metrics, stats: dict[str, Any]) -> None:
    """Consumer lag per assigned partition from one librdkafka statistics document."""
    for topic, info in stats.get("topics", {}).items():
        for partition, pstats in info.get("partitions", {}).items():
            if partition == "-1":
                continue
            lag = pstats.get("consumer_lag", -1)
            # librdkafka keeps stats for partitions it no longer fetches; only
            # an assigned, fetching partition has a meaningful lag.
            if lag >= 0 and pstats.get("fetch_state") in (None, "active"):
                metrics.consumer_lag.labels(topic=topic, partition=partition).set(lag)

