"""Following a compacted list topic (blocklist or egress) into a local copy.

A follower assigns itself every partition from the beginning and commits
nothing, so a restart rebuilds exactly the current list from the compacted log;
two followers that read the same records hold the same list. Entries whose
``expires_at`` passed are dropped even when no tombstone came (the enrich worker
may be down): a record is a lease, not a promise.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

import msgspec
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from pipeline import log
from pipeline.blocklist import BlocklistEntry, level_at_least, parse_time
from pipeline.config import Settings
from pipeline.egress import EgressEntry
from pipeline.errors import ConfigError
from pipeline.kafka_io import check_broker, client_config

_log = log.get("follower")
E = TypeVar("E", BlocklistEntry, EgressEntry)


class View(Generic[E]):
    """The current value per key of a compacted topic, decoded.

    Args:
        kind: :class:`BlocklistEntry` or :class:`EgressEntry`.

    Example:
        >>> view = View(BlocklistEntry)
        >>> view.apply(b"198.51.100.7", None)
        False
    """

    def __init__(self, kind: type[E]) -> None:
        self.kind: type[E] = kind
        self.entries: dict[str, E] = {}
        self.undecodable = 0
        self._decoder: msgspec.json.Decoder[E] = msgspec.json.Decoder(kind)

    def apply(self, key: bytes | None, value: bytes | None) -> bool:
        """Apply one record; True when the view changed."""
        name = (key or b"").decode("utf-8", "replace")
        if value is None:
            return self.entries.pop(name, None) is not None
        try:
            entry = self._decoder.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.undecodable += 1
            _log.warning("list_record_undecodable", key=name[:64], error=str(exc)[:200])
            return False
        if self.entries.get(name) == entry:
            return False
        self.entries[name] = entry
        return True

    def live(self, now: float) -> list[E]:
        """Entries whose lease has not ended, in address order."""
        out = [e for e in self.entries.values() if parse_time(e.expires_at) > now]
        return sorted(out, key=sort_key)

    def next_expiry(self, now: float) -> float | None:
        """The earliest ``expires_at`` ahead: when the view next changes by itself."""
        ahead = [
            t
            for t in (parse_time(e.expires_at) for e in self.entries.values())
            if t > now
        ]
        return min(ahead, default=None)


def sort_key(entry: BlocklistEntry | EgressEntry) -> tuple[int, int, int, str]:
    """Addresses and prefixes by number (IPv4 first), then names."""
    text = entry.address if isinstance(entry, BlocklistEntry) else entry.host
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return (9, 0, 0, text)
    return (net.version, int(net.network_address), net.prefixlen, text)


def effective(
    entries: Iterable[BlocklistEntry], min_level: str | None = None
) -> list[BlocklistEntry]:
    """What a firewall should block: enforced entries at ``min_level`` or above,
    less addresses a blocked prefix already covers (interval sets refuse overlaps).

    Example:
        >>> e = lambda a, n=1: BlocklistEntry(address=a, level="Critical", score=90.0,
        ...     first_seen="2021-12-10T00:00:00Z", last_seen="2021-12-10T00:00:00Z",
        ...     hits=1, days=1, addresses=n, expires_at="2099-01-01T00:00:00Z")
        >>> [x.address for x in effective([e("198.51.100.0/24", 3), e("198.51.100.7")])]
        ['198.51.100.0/24']
    """
    chosen = [
        e
        for e in entries
        if e.enforce and (min_level is None or level_at_least(e.level, min_level))
    ]
    prefixes = [ipaddress.ip_network(e.address) for e in chosen if "/" in e.address]
    out = []
    for entry in chosen:
        net = ipaddress.ip_network(entry.address, strict=False)
        covered = any(
            p != net and p.version == net.version and net.subnet_of(p)  # type: ignore[arg-type]
            for p in prefixes
        )
        if not covered:
            out.append(entry)

    return sorted(out, key=sort_key)


class Follower(Generic[E]):
    """Keeps a :class:`View` of one topic in sync, from its beginning.

    Args:
        topic: the compacted topic (blocklist or egress).
        kind: the entry type its values decode to.

    Example:
        >>> topic = settings.topics.blocklist  # doctest: +SKIP
        >>> follower = Follower(settings, topic, BlocklistEntry)  # doctest: +SKIP
        >>> follower.catch_up(); follower.view.live(time.time())  # doctest: +SKIP
    """

    def __init__(
        self, settings: Settings, topic: str, kind: type[E], must_exist: bool = False
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.must_exist = must_exist
        self.view: View[E] = View(kind)
        self.caught_up = False
        self._consumer: Consumer | None = None
        self._ends: dict[int, int] = {}

    # XXX(#5): partitions are listed once, when the follower starts; partitions
    # added to the topic later are followed only after a restart. Adding
    # partitions to a keyed topic moves keys anyway, so l4s never does it.
    def _open(self, timeout: float) -> Consumer | None:
        admin = check_broker(self.settings)
        metadata = admin.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            if self.must_exist:
                # An empty list would empty the firewall: a mistyped name must not.
                raise ConfigError(
                    f"topic {self.topic} does not exist; create it (l4s topics create) "
                    "or check the topic settings"
                )
            return None
        config = {"group.id": "l4s-list-follower", "enable.auto.commit": False}
        consumer = Consumer(client_config(self.settings, **config))
        assignment = []
        for partition in metadata.partitions:
            tp = TopicPartition(self.topic, partition)
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            if high > low:
                self._ends[partition] = high
            assignment.append(TopicPartition(self.topic, partition, OFFSET_BEGINNING))
        consumer.assign(assignment)
        return consumer

    def catch_up(self, timeout: float = 30.0) -> None:
        """Read every partition up to the end it had when this call began."""
        if self._consumer is None:
            self._consumer = self._open(timeout)
        if self._consumer is None:
            # The topic does not exist yet: the list is empty.
            self.caught_up = True
            return
        while self._ends:
            message = self._consumer.poll(timeout)
            if message is None:
                raise KafkaException(
                    KafkaError(
                        KafkaError._TIMED_OUT, f"topic {self.topic} stopped answering"
                    )
                )
            self._take(message)
        self.caught_up = True

    def poll(self, timeout: float = 1.0, max_messages: int = 1000) -> bool:
        """Read what arrived since; True when the view changed."""
        if self._consumer is None:
            self._consumer = self._open(timeout)
            if self._consumer is None:
                time.sleep(timeout)
                return False
        changed = False
        for message in self._consumer.consume(max_messages, timeout=timeout):
            changed = self._take(message) or changed

        return changed

    def _take(self, message: Any) -> bool:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return False
            raise KafkaException(error)
        changed = self.view.apply(message.key(), message.value())
        end = self._ends.get(message.partition())
        if end is not None and message.offset() + 1 >= end:
            self._ends.pop(message.partition(), None)

        return changed

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def current_entries(
    settings: Settings, timeout: float = 30.0
) -> dict[str, dict[str, Any]]:
    """The live blocklist as plain JSON objects, keyed by address (read once)."""
    follower = Follower(settings, settings.topics.blocklist, BlocklistEntry)
    try:
        follower.catch_up(timeout)
    finally:
        follower.close()
    now = time.time()
    return {
        e.address: json.loads(msgspec.json.encode(e)) for e in follower.view.live(now)
    }
