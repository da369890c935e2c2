"""Counters and the per-source view: Redis for the streaming path, memory for scan.

Both stores keep the same model and follow the same rules, so ``l4s scan`` and the
streaming workers give the same numbers for the same input:

- line counts per input partition are added once, guarded by a high-water offset;
- a detection is recorded once per event id (a Redis bitmap bucket per 65,536
  offsets of a partition, kept ``dedup_days``), in the same atomic step that
  increments its counters;
- per-source ratings are plain overwrites, so repeating them changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from importlib import resources
from typing import Any, Protocol

import msgspec
import redis

from pipeline.errors import ConfigError, ServiceUnavailable

#: Counter names of the totals hash.
TOTAL_FIELDS = ("lines", "parsed", "dead_letters", "prefiltered", "attacks", "inert")
_BUCKET_BITS = 16


class SourceAggregate(msgspec.Struct, frozen=True, kw_only=True):
    """What the store knows of one source address after recording an event."""

    new: bool
    hits: int = 0
    inert: int = 0
    days: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    techniques: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DetectionFacts:
    """The parts of an enriched detection that the counters and the view keep.

    Args:
        attributes: per-source values shown in the view (country, asn, org, kind...).
        flags: evidence that only ever turns on (``exfil``, ``commands``, ``oob``).
    """

    day: str
    ip: str
    malicious: bool
    timestamp: float
    techniques: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    flags: frozenset[str] = frozenset()
    attributes: Mapping[str, str | int | float] = field(default_factory=dict)


@dataclass(slots=True)
class DayView:
    attacks: int = 0
    inert: int = 0
    ips: set[str] = field(default_factory=set)
    techniques: Counter[str] = field(default_factory=Counter)
    fields: Counter[str] = field(default_factory=Counter)


class Store(Protocol):
    """What the stages write and the report reads."""

    def add_line_counts(self, stream: str, last_seq: int, counts: Mapping[str, int]) -> bool: ...

    def add_line_counts_many(
        self, items: Iterable[tuple[str, int, Mapping[str, int]]]
    ) -> list[bool]: ...

    def high_water(self, stream: str) -> int: ...

    def record(self, event_id: str, facts: DetectionFacts) -> SourceAggregate: ...

    def set_rating(self, ip: str, values: Mapping[str, str | int | float]) -> None: ...

    def totals(self) -> dict[str, int]: ...

    def days(self) -> list[str]: ...

    def day(self, day: str) -> DayView: ...

    def sources(self, ips: Iterable[str]) -> dict[str, dict[str, str]]: ...


def day_of(timestamp: float, zone: tzinfo = UTC) -> str:
    """The ``YYYY-MM-DD`` day of an event time in ``zone``."""
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d")


def split_event_id(event_id: str) -> tuple[str, int]:
    """``("topic/partition", offset)`` from ``topic/partition/offset`` (or ``file:line``)."""
    for sep in ("/", ":"):
        stream, _, seq = event_id.rpartition(sep)
        if stream and seq.isdigit():
            return stream, int(seq)
    raise ValueError(f"event id {event_id!r} has no sequence number")


class MemoryStore:
    """The store of ``l4s scan``: the Redis model, in one process's memory."""

    def __init__(self) -> None:
        self._hw: dict[str, int] = {}
        self._totals: Counter[str] = Counter()
        self._seen: set[tuple[str, int]] = set()
        self._days: dict[str, DayView] = defaultdict(DayView)
        self._sources: dict[str, dict[str, str]] = defaultdict(dict)
        self._source_days: dict[str, set[str]] = defaultdict(set)
        self._source_techniques: dict[str, set[str]] = defaultdict(set)

    def add_line_counts(self, stream: str, last_seq: int, counts: Mapping[str, int]) -> bool:
        if last_seq <= self._hw.get(stream, -1):
            return False
        self._hw[stream] = last_seq
        self._totals.update(counts)
        return True

    def add_line_counts_many(
        self, items: Iterable[tuple[str, int, Mapping[str, int]]]
    ) -> list[bool]:
        return [self.add_line_counts(stream, last, counts) for stream, last, counts in items]

    def high_water(self, stream: str) -> int:
        return self._hw.get(stream, -1)

    def record(self, event_id: str, facts: DetectionFacts) -> SourceAggregate:
        key = split_event_id(event_id)
        new = key not in self._seen
        if new:
            self._seen.add(key)
            self._apply(facts)
        if not facts.ip:
            return SourceAggregate(new=new)
        view = self._sources[facts.ip]
        return SourceAggregate(
            new=new,
            hits=int(view.get("hits", 0)),
            inert=int(view.get("inert", 0)),
            days=len(self._source_days[facts.ip]),
            first_seen=float(view["first_seen"]),
            last_seen=float(view["last_seen"]),
            techniques=frozenset(self._source_techniques[facts.ip]),
            flags=frozenset(k[5:] for k in view if k.startswith("flag:")),
        )

    def _apply(self, facts: DetectionFacts) -> None:
        day = self._days[facts.day]
        counter = "attacks" if facts.malicious else "inert"
        self._totals[counter] += 1
        if facts.malicious:
            day.attacks += 1
            day.techniques.update(facts.techniques)
            day.fields.update(facts.fields)
        else:
            day.inert += 1
        if not facts.ip:
            return
        view = self._sources[facts.ip]
        hits_key = "hits" if facts.malicious else "inert"
        view[hits_key] = str(int(view.get(hits_key, 0)) + 1)
        if facts.malicious:
            day.ips.add(facts.ip)
            self._source_days[facts.ip].add(facts.day)
            self._source_techniques[facts.ip].update(facts.techniques)
        first = float(view.get("first_seen", facts.timestamp))
        last = float(view.get("last_seen", facts.timestamp))
        view["first_seen"] = _lua_number(min(first, facts.timestamp))
        view["last_seen"] = _lua_number(max(last, facts.timestamp))
        for flag in facts.flags:
            view["flag:" + flag] = "1"
        for name, value in facts.attributes.items():
            view[name] = str(value)

    def set_rating(self, ip: str, values: Mapping[str, str | int | float]) -> None:
        self._sources[ip].update({k: str(v) for k, v in values.items()})

    def totals(self) -> dict[str, int]:
        return {name: self._totals.get(name, 0) for name in TOTAL_FIELDS}

    def days(self) -> list[str]:
        return sorted(self._days)

    def day(self, day: str) -> DayView:
        return self._days.get(day) or DayView()

    def sources(self, ips: Iterable[str]) -> dict[str, dict[str, str]]:
        return {ip: dict(self._sources[ip]) for ip in ips if ip in self._sources}


def _lua_number(value: float) -> str:
    # Redis Lua's tostring() prints integers without a fraction and others with
    # 14 significant digits; the memory store writes the same text.
    return str(int(value)) if value == int(value) else f"{value:.14g}"


class RedisStore:
    """The Redis serving view: counters, per-day sets and the per-source hashes.

    Args:
        client: a connected ``redis.Redis``.
        prefix: key prefix, so several deployments can share one Redis.
        dedup_days: how long event ids are remembered.

    Example:
        >>> store = RedisStore(redis.Redis.from_url("redis://127.0.0.1:6379/0"))  # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis, prefix: str = "l4s", dedup_days: int = 35) -> None:
        self.client = client
        self.prefix = prefix
        self._ttl = dedup_days * 86400
        self._count_lines = client.register_script(_script("count_lines.lua"))
        self._record = client.register_script(_script("record_detection.lua"))

    @classmethod
    def connect(cls, url: str, prefix: str = "l4s", dedup_days: int = 35) -> RedisStore:
        """Connect and check the server answers, or raise :class:`ServiceUnavailable`."""
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as exc:
            raise ConfigError(f"invalid Redis URL {url!r}: {exc}") from None
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ServiceUnavailable(
                f"Redis at {url} does not answer ({exc}); start it "
                "(deploy/local/stack up) or set L4S_REDIS__URL"
            ) from None
        return cls(client, prefix, dedup_days)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def add_line_counts(self, stream: str, last_seq: int, counts: Mapping[str, int]) -> bool:
        return self.add_line_counts_many([(stream, last_seq, counts)])[0]

    def add_line_counts_many(
        self, items: Iterable[tuple[str, int, Mapping[str, int]]]
    ) -> list[bool]:
        """Several streams' counts in one round trip; each guarded on its own."""
        pipe = self.client.pipeline(transaction=False)
        for stream, last_seq, counts in items:
            args: list[Any] = [last_seq]
            for name, value in counts.items():
                if value:
                    args += [name, value]
            keys = [self._key("hw", stream), self._key("totals")]
            self._count_lines(keys=keys, args=args, client=pipe)
        return [bool(added) for added in pipe.execute()]

    def high_water(self, stream: str) -> int:
        """The last offset of ``stream`` whose record is already counted, or -1."""
        value = self.client.get(self._key("hw", stream))
        return int(value) if value is not None else -1

    def record(self, event_id: str, facts: DetectionFacts) -> SourceAggregate:
        stream, seq = split_event_id(event_id)
        ip = facts.ip
        keys = [
            self._key("seen", stream, str(seq >> _BUCKET_BITS)),
            self._key("totals"),
            self._key("days"),
            self._key("day", facts.day),
            self._key("day", facts.day, "ips"),
            self._key("day", facts.day, "techniques"),
            self._key("day", facts.day, "fields"),
            self._key("ip", ip),
            self._key("ip", ip, "days"),
            self._key("ip", ip, "techniques"),
            self._key("ips"),
        ]
        args: list[str | int] = [
            seq & ((1 << _BUCKET_BITS) - 1),
            self._ttl,
            facts.day,
            ip,
            1 if facts.malicious else 0,
            _lua_number(facts.timestamp),
            json.dumps(list(facts.techniques)),
            json.dumps(list(facts.fields)),
            json.dumps(dict.fromkeys(facts.flags, 1)),
            json.dumps(dict(facts.attributes)),
        ]
        new, hits, inert, days, first, last, techniques, flags = self._record(keys=keys, args=args)
        return SourceAggregate(
            new=bool(new),
            hits=int(hits),
            inert=int(inert),
            days=int(days),
            first_seen=float(first) if first else None,
            last_seen=float(last) if last else None,
            techniques=frozenset(json.loads(techniques)),
            flags=frozenset(json.loads(flags)),
        )

    def set_rating(self, ip: str, values: Mapping[str, str | int | float]) -> None:
        self.client.hset(self._key("ip", ip), mapping={k: str(v) for k, v in values.items()})

    def totals(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.client.hgetall(self._key("totals"))  # type: ignore[assignment]
        values = {k.decode(): int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in TOTAL_FIELDS}

    def days(self) -> list[str]:
        members: set[bytes] = self.client.smembers(self._key("days"))  # type: ignore[assignment]
        return sorted(d.decode() for d in members)

    def day(self, day: str) -> DayView:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self._key("day", day))
        pipe.smembers(self._key("day", day, "ips"))
        pipe.hgetall(self._key("day", day, "techniques"))
        pipe.hgetall(self._key("day", day, "fields"))
        counts, ips, techniques, fields = pipe.execute()
        return DayView(
            attacks=int(counts.get(b"attacks", 0)),
            inert=int(counts.get(b"inert", 0)),
            ips={ip.decode() for ip in ips},
            techniques=Counter({k.decode(): int(v) for k, v in techniques.items()}),
            fields=Counter({k.decode(): int(v) for k, v in fields.items()}),
        )

    def clear(self) -> int:
        """Delete every key under the prefix; returns how many."""
        count = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                count += int(self.client.delete(*batch))
                batch.clear()
        if batch:
            count += int(self.client.delete(*batch))
        return count

    def sources(self, ips: Iterable[str]) -> dict[str, dict[str, str]]:
        ips = list(ips)
        pipe = self.client.pipeline(transaction=False)
        for ip in ips:
            pipe.hgetall(self._key("ip", ip))
        views = pipe.execute()
        return {
            ip: {k.decode(): v.decode() for k, v in view.items()}
            for ip, view in zip(ips, views, strict=True)
            if view
        }


def _script(name: str) -> str:
    return resources.files("pipeline").joinpath("lua", name).read_text()
