"""Kafka client settings, topic layout and the broker check, done once for all commands."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from pipeline import log
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailable

#: Kafka record header naming the log format of a raw record.
FORMAT_HEADER = "l4s-format"
#: Largest raw record the input topic takes (Kafka's default is 1 MB). Records
#: over the 1 MiB that l4s parses still reach the detect worker, which counts and
#: dead-letters them; only records over this limit are refused at the producer.
MAX_INPUT_RECORD_BYTES = 16 * 1024 * 1024

_log = log.get("kafka")


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """librdkafka properties shared by every client, then ``extra``."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "error_cb": _log_client_error,
        # librdkafka's own log lines go through logging, not straight to stderr.
        "logger": logging.getLogger("librdkafka"),
    }
    config.update(settings.kafka.client)
    config.update(extra)
    return config


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """An idempotent producer: retries never duplicate or reorder a partition."""
    return client_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            **extra,
        },
    )


def _log_client_error(error: KafkaError) -> None:
    # librdkafka reports transient broker trouble here and retries by itself;
    # fatal errors surface again on the next produce or consume call.
    _log.warning("kafka_client_error", code=error.name(), reason=error.str(), fatal=error.fatal())


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic l4s uses, with the configs its contract needs."""
    t, k = settings.topics, settings.kafka
    day_ms = 86_400_000

    def spec(name: str, **config: str) -> NewTopic:
        return NewTopic(name, num_partitions=k.partitions, replication_factor=k.replication, config=config)

    return [
        spec(
            t.input,
            **{
                "retention.ms": str(7 * day_ms),
                "max.message.bytes": str(MAX_INPUT_RECORD_BYTES),
            },
        ),
        # Keyed by source address so one enrich worker owns each source's state.
        spec(t.detections, **{"retention.ms": str(30 * day_ms)}),
        spec(t.events, **{"retention.ms": str(30 * day_ms)}),
        # Compacted: a follower reading from the start gets the current list.
        # Tombstones stay a day so a follower offline for hours still sees removals.
        spec(
            t.blocklist,
            **{
                "cleanup.policy": "compact",
                "delete.retention.ms": str(day_ms),
                "segment.ms": str(3_600_000),
                "min.cleanable.dirty.ratio": "0.1",
            },
        ),
        # Callback hosts for outbound rules: compacted, keyed by host, like the above.
        spec(
            t.egress,
            **{
                "cleanup.policy": "compact",
                "delete.retention.ms": str(day_ms),
                "segment.ms": str(3_600_000),
                "min.cleanable.dirty.ratio": "0.1",
            },
        ),
        spec(t.dead_letter, **{"retention.ms": str(14 * day_ms)}),
    ]


def check_broker(settings: Settings, timeout: float = 10.0) -> AdminClient:
    """An admin client for a broker that answers, or :class:`ServiceUnavailable`."""
    admin = AdminClient(client_config(settings))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ServiceUnavailable(
            f"Kafka at {settings.kafka.bootstrap} does not answer ({exc.args[0].str()}); "
            "start it (deploy/local/stack up) or set L4S_KAFKA__BOOTSTRAP"
        ) from None
    return admin


def create_topics(settings: Settings) -> list[tuple[str, str]]:
    """Create missing topics; returns ``(topic, "created" | "exists")`` pairs."""
    admin = check_broker(settings)
    results = []
    for name, future in admin.create_topics(topic_specs(settings), request_timeout=30).items():
        try:
            future.result()
            results.append((name, "created"))
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceUnavailable(f"cannot create topic {name}: {error.str()}") from None
            results.append((name, "exists"))
    return results


def delivery_tracker() -> tuple[list[str], Callable[[KafkaError | None, Message], None]]:
    """A list that collects delivery failures, and the callback that fills it."""
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{message.topic()}: {error.str()}")

    return failures, on_delivery


def delete_everything(settings: Settings, groups: list[str], timeout: float = 60.0) -> list[str]:
    """Delete l4s's topics and consumer groups; returns what existed and was deleted."""
    admin = check_broker(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    names = [spec.topic for spec in topic_specs(settings)]
    names += [t for t in existing if t.startswith(f"{settings.enrich.app_id}-")]
    doomed = [name for name in names if name in existing]
    deleted: list[str] = []
    for name, future in (admin.delete_topics(doomed, operation_timeout=timeout).items() if doomed else []):
        try:
            future.result()
            deleted.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ServiceUnavailable(f"cannot delete topic {name}: {exc.args[0].str()}") from None
    listed = admin.list_consumer_groups(request_timeout=timeout).result()
    known = {g.group_id for g in listed.valid}
    groups = [g for g in groups if g in known]
    requests = admin.delete_consumer_groups(groups, request_timeout=timeout) if groups else {}
    for group, future in requests.items():
        try:
            future.result()
            deleted.append(f"group {group}")
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.NON_EMPTY_GROUP:
                raise ServiceUnavailable(f"group {group} still has running workers; stop them first") from None
            if code != KafkaError.GROUP_ID_NOT_FOUND:
                raise ServiceUnavailable(f"cannot delete group {group}: {exc.args[0].str()}") from None
    # Deletion completes in the background; wait so topics can be created again.
    deadline = time.monotonic() + timeout
    while set(deleted) & set(admin.list_topics(timeout=timeout).topics):
        if time.monotonic() > deadline:
            raise ServiceUnavailable("Kafka is still deleting topics; try again shortly")
        time.sleep(0.2)
    return deleted
