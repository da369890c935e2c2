"""The Redis store and the memory store of ``l4s scan`` keep the same model."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from pipeline.store import (
    DetectionFacts,
    MemoryStore,
    RedisStore,
    Store,
    day_of,
    split_event_id,
)
from tests.conftest import Stack


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    stack: Stack = request.getfixturevalue("stack")
    redis_store = RedisStore(redis.Redis.from_url(stack.redis_url), prefix=f"t{uuid.uuid4().hex[:8]}")
    yield redis_store
    redis_store.clear()


def facts(ip: str, ts: float, *, malicious: bool = True, techniques: tuple[str, ...] = ("lower",)) -> DetectionFacts:
    return DetectionFacts(
        day=day_of(ts),
        ip=ip,
        malicious=malicious,
        timestamp=ts,
        techniques=techniques,
        fields=("user_agent.original",),
        flags=frozenset({"exfil"}) if malicious else frozenset(),
        attributes={"country": "NL", "asn": 14061},
    )


DEC_11 = 1639180800.0  # 2021-12-11T00:00:00Z
DAY = 86400.0


def test_line_counts_are_added_once_per_offset_range(store: Store) -> None:
    assert store.add_line_counts("logs/0", 99, {"lines": 100, "parsed": 99, "dead_letters": 1})
    assert not store.add_line_counts("logs/0", 99, {"lines": 100, "parsed": 99, "dead_letters": 1})
    assert not store.add_line_counts("logs/0", 50, {"lines": 51})
    assert store.add_line_counts("logs/1", 9, {"lines": 10, "parsed": 10})
    assert store.high_water("logs/0") == 99
    assert store.high_water("logs/7") == -1
    totals = store.totals()
    assert (totals["lines"], totals["parsed"], totals["dead_letters"]) == (110, 109, 1)


def test_redelivered_detection_is_counted_once_and_returns_the_aggregate(store: Store) -> None:
    first = store.record("logs/0/5", facts("198.51.100.7", DEC_11 + 60))
    again = store.record("logs/0/5", facts("198.51.100.7", DEC_11 + 60))
    assert first.new and not again.new
    assert (again.hits, again.days, again.first_seen) == (1, 1, DEC_11 + 60)
    assert store.totals()["attacks"] == 1
    assert store.day("2021-12-11").attacks == 1


def test_aggregate_grows_with_days_and_keeps_first_and_last_seen(store: Store) -> None:
    store.record("logs/0/1", facts("198.51.100.7", DEC_11 + 3600))
    store.record("logs/1/1", facts("198.51.100.7", DEC_11 + 2 * DAY))
    store.record("logs/2/1", facts("198.51.100.7", DEC_11 + 60, techniques=("upper", "nested")))
    inert = store.record("logs/2/2", facts("198.51.100.7", DEC_11 + 3 * DAY, malicious=False))
    assert (inert.hits, inert.inert, inert.days) == (3, 1, 2)
    assert inert.first_seen == DEC_11 + 60
    assert inert.last_seen == DEC_11 + 3 * DAY
    assert inert.techniques == {"lower", "upper", "nested"}
    assert inert.flags == {"exfil"}
    assert store.days() == ["2021-12-11", "2021-12-13", "2021-12-14"]
    assert store.day("2021-12-14").ips == set()
    assert store.day("2021-12-14").inert == 1
    view = store.sources(["198.51.100.7"])["198.51.100.7"]
    assert (view["country"], view["asn"], view["hits"], view["inert"]) == ("NL", "14061", "3", "1")


def test_day_view_counts_techniques_and_fields_of_attacks_only(store: Store) -> None:
    store.record("logs/0/1", facts("198.51.100.7", DEC_11, techniques=("lower", "nested")))
    store.record("logs/0/2", facts("203.0.113.9", DEC_11 + 10, techniques=("lower",)))
    store.record("logs/0/3", facts("203.0.113.9", DEC_11 + 20, malicious=False))
    day = store.day("2021-12-11")
    assert (day.attacks, day.inert) == (2, 1)
    assert day.ips == {"198.51.100.7", "203.0.113.9"}
    assert dict(day.techniques) == {"lower": 2, "nested": 1}
    assert dict(day.fields) == {"user_agent.original": 2}


def test_detection_without_address_counts_but_has_no_source(store: Store) -> None:
    aggregate = store.record("logs/0/9", facts("", DEC_11))
    assert aggregate.new and aggregate.hits == 0
    assert store.totals()["attacks"] == 1
    assert store.day("2021-12-11").ips == set()


def test_rating_is_an_overwrite(store: Store) -> None:
    store.record("logs/0/1", facts("198.51.100.7", DEC_11))
    store.set_rating("198.51.100.7", {"level": "Low", "score": 10})
    store.set_rating("198.51.100.7", {"level": "Dangerous", "score": 60})
    view = store.sources(["198.51.100.7", "192.0.2.1"])
    assert list(view) == ["198.51.100.7"]
    assert (view["198.51.100.7"]["level"], view["198.51.100.7"]["score"]) == ("Dangerous", "60")


def test_event_ids_split_into_stream_and_sequence() -> None:
    assert split_event_id("http-logs/2/123") == ("http-logs/2", 123)
    assert split_event_id("/var/log/a.log:17") == ("/var/log/a.log", 17)
    with pytest.raises(ValueError):
        split_event_id("no-number")


def test_sub_second_timestamps_round_trip_alike(store: Store) -> None:
    aggregate = store.record("logs/0/1", facts("198.51.100.7", DEC_11 + 0.123456789))
    assert aggregate.first_seen == pytest.approx(DEC_11 + 0.123456789, abs=1e-3)
