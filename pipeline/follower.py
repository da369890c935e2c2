"""Reading the compacted blocklist topic into the current set of entries."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline.config import Settings
from pipeline.kafka_io import check_broker, client_config


def current_entries(settings: Settings, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """Read the blocklist topic from its start to its current end.

    Later records replace earlier ones for the same key; a tombstone removes it.
    """
    admin = check_broker(settings)
    topic = settings.topics.blocklist
    metadata = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return {}
    consumer = Consumer(
        client_config(settings, **{"group.id": "l4s-blocklist-export", "enable.auto.commit": False})
    )
    try:
        ends: dict[int, int] = {}
        assignment = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        entries: dict[str, dict[str, Any]] = {}
        while ends:
            message = consumer.poll(timeout)
            if message is None:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "blocklist topic stopped answering"))
            if message.error() is not None:
                raise KafkaException(message.error())
            key = (message.key() or b"").decode()
            value = message.value()
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = json.loads(value)
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return entries
    finally:
        consumer.close()
