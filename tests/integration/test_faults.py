"""Counts and blocklist survive what production does to a pipeline.

A million generated records stream through real detect and enrich workers while
they are killed, Redis and the broker restart and the detect group rebalances;
afterwards every counter, every per-source view and every blocklist record equals
what ``l4s scan`` computes on the same file. The other tests take Redis away for
a minute and stop workers with SIGTERM mid-stream, with the same equality.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import pytest
from confluent_kafka import Producer

from pipeline import report as reports
from pipeline.config import Settings
from pipeline.scan import scan
from pipeline.store import TOTAL_FIELDS
from tests.conftest import REPO, Namespace
from tests.integration.conftest import Supervisor
from tests.integration.harness import (
    GEO,
    Worker,
    error_lines,
    group_lag,
    group_members,
    metric_value,
    redis_totals,
    source_views,
    stack_command,
    stop_redis,
    topic_records,
    topic_records_with_keys,
    wait_until,
)
from tests.integration.workload import Workload, write_fault_workload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Short consumer sessions, so a killed detect worker's partitions move on in
#: seconds rather than librdkafka's default 45 s.
FAST_SESSIONS = {"L4S_KAFKA__CLIENT": json.dumps({"session.timeout.ms": "6000"})}


def start_replay(
    supervisor: Supervisor, path: Path, rate: int
) -> subprocess.Popen[bytes]:
    """``l4s replay --rate`` in the background, logging to ``replay.log``."""
    ns = supervisor.ns
    with (supervisor.log_dir / "replay.log").open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "pipeline", "--log-format", "json", "replay"),
                *("--rate", str(rate), "--no-progress", str(path)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ns.env,
            cwd=REPO,
        )
    supervisor.processes.append(process)
    return process


def drain(
    ns: Namespace, lines: int, workers: list[Worker], timeout: float = 300
) -> None:
    """Wait until every line is counted and both groups have committed everything."""
    input_topic = ns.env["L4S_TOPICS__INPUT"]
    detections = ns.env["L4S_TOPICS__DETECTIONS"]

    def done() -> bool:
        for worker in workers:
            assert worker.alive(), f"{worker.name} died:\n{worker.tail()}"
        return (
            redis_totals(ns).get("lines") == lines
            and group_lag(ns, ns.env["L4S_DETECT__GROUP"], input_topic) == 0
            and group_lag(ns, ns.env["L4S_ENRICH__APP_ID"], detections) == 0
        )

    wait_until(done, timeout, "the workers to drain the input", every=2)


def stop_all(workers: list[Worker]) -> None:
    for worker in workers:
        status = worker.terminate()
        assert status == 0, f"{worker.name} exited {status}:\n{worker.tail()}"


def scanned(
    ns: Namespace, path: Path
) -> tuple[Any, dict[str, Any], dict[str, int], Any]:
    """What ``l4s scan`` computes on ``path`` with the workers' settings.

    Returns the report document, the blocklist (as exported, by address), the
    totals and the memory store with its per-source views.
    """
    geo = {"geoip_db": GEO[1], "asn_db": GEO[3]}
    with mock.patch.dict(os.environ, ns.env, clear=True):
        settings = Settings(enrich=geo)
    result = scan([str(path)], settings)
    blocklist = {
        a: json.loads(msgspec.json.encode(e)) for a, e in result.blocklist.items()
    }
    report = json.loads(reports.to_json(reports.build(result.store)))
    return report, blocklist, result.store.totals(), result.store


NO_BREAKER = {"L4S_BLOCKLIST__BREAKER_PER_MINUTE": "0"}


def without_expiry(
    entries: dict[str, dict[str, object]],
) -> dict[str, dict[str, object]]:
    # expires_at and block_until are computed from the wall clock at decision time.
    wall_clock = ("expires_at", "block_until")
    return {
        k: {f: v for f, v in e.items() if f not in wall_clock} for k, e in entries.items()
    }


def assert_streamed_equals_scan(ns: Namespace, workload: Workload) -> dict[str, Any]:
    """Every counter, per-source view and blocklist record equals the scan's."""
    report, blocklist, totals, store = scanned(ns, workload.path)
    streamed = json.loads(ns.l4s("report", "--json").stdout)
    redis = redis_totals(ns)
    views = source_views(ns)
    expected_views = store.sources(views.keys() | store.sources(views).keys())
    exported = ns.l4s("blocklist", "export", "--format", "json").stdout.splitlines()
    published = {e["address"]: e for e in map(json.loads, exported)}
    differences = {
        "report": {
            k: (v, report.get(k)) for k, v in streamed.items() if report.get(k) != v
        },
        "totals": {
            n: (redis.get(n, 0), totals[n])
            for n in TOTAL_FIELDS
            if redis.get(n, 0) != totals[n]
        },
        "views": {
            a: (views.get(a), expected_views.get(a))
            for a in views.keys() | expected_views.keys()
            if views.get(a) != expected_views.get(a)
        },
        "blocklist": {
            a: (without_expiry(published).get(a), without_expiry(blocklist).get(a))
            for a in published.keys() | blocklist.keys()
            if without_expiry(published).get(a) != without_expiry(blocklist).get(a)
        },
    }
    assert not any(differences.values()), json.dumps(differences, indent=1)[:6000]
    assert totals["lines"] == workload.lines
    assert totals["dead_letters"] == workload.garbage
    assert len(views) == workload.sources
    assert len(blocklist) > workload.sources // 4, "the workload blocks many sources"
    dead = topic_records(ns, ns.env["L4S_TOPICS__DEAD_LETTER"])
    sources = {headers["l4s-source"] for _value, headers in dead}
    assert len(sources) == workload.garbage
    assert all(headers.get("l4s-reason") for _value, headers in dead)
    return streamed


def test_a_million_lines_through_kills_restarts_and_a_rebalance_count_exactly(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    ns = supervisor.ns
    workload = write_fault_workload(tmp_path / "faults.log")
    ns.l4s("topics", "create")
    logs = supervisor.log_dir
    detect = supervisor.worker("detect-a", "detect", env=FAST_SESSIONS)
    # Over a thousand sources are blocked within minutes: the circuit breaker
    # (tested on its own) would rightly hold most of them, which l4s scan does not
    # model; this test is about exact counts through faults.
    enrich = supervisor.worker("enrich", "enrich", *GEO, env=NO_BREAKER)
    replay = start_replay(supervisor, workload.path, 12_000)
    started = time.monotonic()
    timeline: list[tuple[float, str]] = []

    def at(seconds: float, what: str) -> None:
        time.sleep(max(0.0, started + seconds - time.monotonic()))
        for worker in (detect, enrich):
            assert worker.alive(), (
                f"{worker.name} died before '{what}':\n{worker.tail()}"
            )
        timeline.append((round(time.monotonic() - started, 1), what))

    at(5, "kill -9 enrich")
    enrich.kill()
    enrich.start()
    at(10, "kill -9 detect")
    detect.kill()
    detect.start()
    # Kill it again while it catches up on the backlog, i.e. mid-batch.
    wait_until(
        lambda: any(
            e["partitions"] for e in detect.events("partitions_assigned", current=True)
        ),
        60,
        "detect to rejoin",
    )
    at(time.monotonic() - started + 1.0, "kill -9 detect while catching up")
    detect.kill()
    detect.start()
    at(30, "restart redis")
    stack_command("restart-redis")
    at(38, "add a second detect worker")
    second = supervisor.worker("detect-b", "detect", env=FAST_SESSIONS)
    wait_until(
        lambda: any(e["partitions"] for e in second.events("partitions_assigned")),
        60,
        "the second detect worker to take partitions",
    )
    at(52, "remove the second detect worker")
    assert second.terminate() == 0, second.tail()
    at(58, "restart kafka")
    stack_command("restart-kafka")
    at(75, "restart redis again")
    stack_command("restart-redis")
    assert replay.wait(timeout=600) == 0, (logs / "replay.log").read_text()[-3000:]
    timeline.append((round(time.monotonic() - started, 1), "replay finished"))

    drain(ns, workload.lines, [detect, enrich])
    timeline.append((round(time.monotonic() - started, 1), "drained"))
    stop_all([detect, enrich])
    print(json.dumps({"timeline": timeline}))

    streamed = assert_streamed_equals_scan(ns, workload)
    assert streamed["attacks"] == workload.attacks
    # Partitions really moved to the second worker and back.
    assert any(e["partitions"] for e in detect.events("partitions_revoked"))
    assert not error_lines([detect, enrich, second])


def republish_one_detection(ns: Namespace) -> None:
    """Send an already-published detection again, as a redelivery would.

    Its event id is already counted, so it changes no figure; it only makes the
    enrich worker touch Redis while Redis is away.
    """
    records = topic_records_with_keys(ns, ns.env["L4S_TOPICS__DETECTIONS"], limit=1)
    producer = Producer(
        {"bootstrap.servers": ns.stack.bootstrap, "enable.idempotence": True}
    )
    for key, value in records:
        producer.produce(ns.env["L4S_TOPICS__DETECTIONS"], key=key, value=value)
    assert producer.flush(30) == 0


def test_a_minute_without_redis_pauses_the_workers_and_loses_nothing(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    ns = supervisor.ns
    workload = write_fault_workload(
        tmp_path / "outage.log", lines=150_000, attacks=1_500, sources=400, garbage=100
    )
    ns.l4s("topics", "create")
    detect = supervisor.worker("detect", "detect")
    enrich = supervisor.worker("enrich", "enrich", *GEO, env=NO_BREAKER)
    replay = start_replay(supervisor, workload.path, 2_000)
    wait_until(
        lambda: redis_totals(ns).get("lines", 0) > 10_000, 120, "the first counts"
    )
    wait_until(lambda: redis_totals(ns).get("attacks", 0) > 0, 60, "the first attack")

    stop_redis(ns)
    down_since = time.monotonic()
    republish_one_detection(ns)
    for worker in (detect, enrich):
        wait_until(
            lambda w=worker: bool(w.events("redis_unavailable_retrying", current=True)),
            60,
            f"{worker.name} to log that Redis is unavailable",
        )
        page = worker.metrics()
        assert metric_value(page, "l4s_sink_up", sink="redis") == 0, worker.name
        assert (metric_value(page, "l4s_sink_errors_total", sink="redis") or 0) >= 1
    detect_group, input_topic = ns.env["L4S_DETECT__GROUP"], ns.env["L4S_TOPICS__INPUT"]
    lag_early = group_lag(ns, detect_group, input_topic)
    time.sleep(max(0.0, down_since + 60 - time.monotonic()))
    lag_late = group_lag(ns, detect_group, input_topic)
    assert lag_early is not None and lag_late is not None
    assert lag_late > lag_early + 50_000, (
        "the backlog waits in Kafka while Redis is away"
    )
    assert detect.alive() and enrich.alive()

    stack_command("up")
    assert replay.wait(timeout=300) == 0
    drain(ns, workload.lines, [detect, enrich])
    for worker in (detect, enrich):
        assert metric_value(worker.metrics(), "l4s_sink_up", sink="redis") == 1
        assert worker.events("redis_recovered", current=True), worker.name
    stop_all([detect, enrich])

    assert_streamed_equals_scan(ns, workload)
    assert not error_lines([detect, enrich])


def test_sigterm_mid_batch_leaves_nothing_half_written(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    ns = supervisor.ns
    workload = write_fault_workload(
        tmp_path / "sigterm.log", lines=300_000, attacks=6_000, sources=600, garbage=100
    )
    ns.l4s("topics", "create")
    # A backlog first, so that each SIGTERM lands while a batch is in flight.
    ns.l4s("replay", "--no-progress", str(workload.path))
    detect = supervisor.worker("detect", "detect", "--batch-size", "5000")
    enrich = supervisor.worker("enrich", "enrich", *GEO, env=NO_BREAKER)
    for round_ in range(3):
        wait_until(
            lambda: any(
                e["partitions"]
                for e in detect.events("partitions_assigned", current=True)
            ),
            60,
            "detect to take its partitions",
        )
        time.sleep(1.0 + round_)
        assert detect.terminate(timeout=60) == 0, detect.tail()
        assert detect.events("detect_stopped", current=True), detect.tail()
        detect.start()
    wait_until(
        lambda: redis_totals(ns).get("attacks", 0) > 300, 120, "enrich to be busy"
    )
    assert enrich.terminate(timeout=60) == 0, enrich.tail()
    assert enrich.events("enrich_stopped", current=True), enrich.tail()
    assert redis_totals(ns).get("attacks", 0) < workload.attacks, (
        "enrich stopped mid-stream"
    )
    enrich.start()
    # Faust handles SIGTERM once it runs; wait until it has joined its group.
    group = ns.env["L4S_ENRICH__APP_ID"]
    wait_until(lambda: group_members(ns, group) > 0, 120, "enrich to rejoin")

    drain(ns, workload.lines, [detect, enrich])
    stop_all([detect, enrich])
    assert_streamed_equals_scan(ns, workload)
    assert not error_lines([detect, enrich])
    # Every stop was graceful: the lines counted before each stop were never
    # counted again, and the batch in flight was finished (or left uncommitted).
    assert len(detect.events("detect_stopped")) == 4
