"""Event time: UTC epoch seconds, zones honoured, absurd times per the policy."""

from __future__ import annotations

import time

import pytest

from pipeline.errors import PoisonRecord
from pipeline.formats import FormatRouter
from pipeline.formats.settings import FormatSettings
from pipeline.formats.times import Clock

STRICT = Clock(FormatSettings(bad_timestamp="dead_letter"))
LENIENT = Clock(FormatSettings(bad_timestamp="broker"))
T = 1639146338.0  # 2021-12-10T14:25:38Z


@pytest.mark.parametrize(
    "value",
    [
        "2021-12-10T14:25:38Z",
        "2021-12-10T15:25:38+01:00",
        "2021-12-10T14:25:38.000+0000",
    ],
)
def test_iso_times_become_utc_epoch_seconds(value: str) -> None:
    assert STRICT.iso(value) == T


@pytest.mark.parametrize("value", [T, T * 1e3, T * 1e6, T * 1e9, str(T), int(T * 1e9)])
def test_epoch_numbers_in_s_ms_us_ns_are_told_apart_by_magnitude(value: object) -> None:
    assert STRICT.epoch(value) == pytest.approx(T)


@pytest.mark.parametrize(
    "value",
    [
        "10/Dec/2021:14:25:38 +0000",
        "10/Dec/2021:09:25:38 -0500",
        "10/Dec/2021:14:25:38",
    ],
)
def test_access_log_times_honour_their_offset(value: str) -> None:
    assert STRICT.clf(value) == T


def test_times_without_offset_take_the_configured_zone() -> None:
    berlin = Clock(FormatSettings(timezone="Europe/Berlin"))

    assert berlin.clf("10/Dec/2021:15:25:38") == T
    assert berlin.iso("2021-12-10T15:25:38") == T
    assert berlin.clf("10/Dec/2021:15:25:38 +0000") == T + 3600


def test_haproxy_accept_date_uses_the_configured_zone() -> None:
    line = (
        b"203.0.113.9:54321 [10/Dec/2021:15:25:38.250] fe be/s1 0/0/1/3/4 200 512 - - "
        b'---- 1/1/0/0/0 0/0 "GET / HTTP/1.1"'
    )
    settings = FormatSettings(timezone="Europe/Berlin")
    request = FormatRouter(settings=settings).parser("haproxy").parse(line)

    assert request is not None
    assert request.timestamp == pytest.approx(T + 0.25)


@pytest.mark.parametrize("value", [None, "", "-"])
def test_absent_time_is_none_for_the_broker_substitute(value: str | None) -> None:
    assert STRICT.iso(value) is None
    assert STRICT.epoch(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "1989-12-31T23:59:59Z",
        "0001-01-01T00:00:00-01:00",
        "yesterday",
        "2021-13-45T00:00:00Z",
        "1" * 200,
    ],
)
def test_unreadable_or_out_of_range_time_is_poison_when_dead_lettering(value: str) -> None:
    with pytest.raises(PoisonRecord) as caught:
        STRICT.iso(value)

    assert caught.value.reason == "bad_timestamp"
    assert LENIENT.iso(value) is None


def test_more_than_a_day_ahead_is_out_of_range_but_an_hour_is_not() -> None:
    now = time.time()

    assert STRICT.epoch(now + 3600) == pytest.approx(now + 3600)
    with pytest.raises(PoisonRecord):
        STRICT.epoch(now + 2 * 86400)


@pytest.mark.parametrize("value", [True, [1], {"a": 1}, float("nan"), float("inf")])
def test_wrong_json_types_for_a_time_are_poison(value: object) -> None:
    with pytest.raises(PoisonRecord):
        STRICT.epoch(value)


def test_year_9999_access_log_time_is_poison_when_dead_lettering() -> None:
    line = b'203.0.113.9 - - [31/Dec/9999:23:59:59 +0000] "GET / HTTP/1.1" 200 1'
    router = FormatRouter(settings=FormatSettings(bad_timestamp="dead_letter"))

    with pytest.raises(PoisonRecord) as caught:
        router.parser("combined").parse(line)

    assert caught.value.reason == "bad_timestamp"


def test_year_9999_access_log_time_is_absent_by_default() -> None:
    line = b'203.0.113.9 - - [31/Dec/9999:23:59:59 +0000] "GET / HTTP/1.1" 200 1'

    request = FormatRouter().parser("combined").parse(line)

    assert request is not None and request.timestamp is None


def test_cloudflare_unix_nano_timestamps_are_read() -> None:
    record = (
        b'{"ClientIP":"203.0.113.9","ClientRequestURI":"/",'
        b'"EdgeStartTimestamp":1639146338000000000}'
    )
    request = FormatRouter().parser("cloudflare").parse(record)

    assert request is not None
    assert request.timestamp == pytest.approx(T)


@pytest.mark.parametrize("offset", ["+3000", "-2400", "+0099"])
def test_impossible_utc_offset_is_poison(offset: str) -> None:
    with pytest.raises(PoisonRecord) as caught:
        STRICT.clf(f"10/Dec/2021:14:25:38 {offset}")

    assert caught.value.reason == "bad_timestamp"
