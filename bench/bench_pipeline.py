"""The detect worker beside a raw confluent-kafka consume loop, on one topic and data.

Usage: .venv/bin/python bench/bench_pipeline.py [--lines N] [--rounds R] [--partitions P]

Replays N mostly-benign lines (0.5 % attacks) once into a fresh input topic of the
local stack (deploy/local/stack), then alternates, R rounds: a raw consume loop
(new group, batch consume, touching every value) and the ``l4s detect`` worker in
1 and in 2 processes (new group each). The worker's rate is measured from its
own Redis line counter between the first counted batch and the last. Reports
medians and the headline ratio detect / raw (goal ≥ 0.75 on mostly-benign traffic).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer

from bench.common import emit, l4s, median, namespace_env, stack_env, write_workload
from pipeline import config
from pipeline.kafka_io import create_topics
from pipeline.replay import replay


def raw_loop(bootstrap: str, topic: str, expected: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    first = 0.0
    size = 0
    while seen < expected:
        for message in consumer.consume(2000, timeout=0.5):
            if message.error() is None:
                if not seen:
                    first = time.perf_counter()
                size += len(message.value() or b"")
                seen += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return expected / elapsed


def detect_workers(env: dict[str, str], processes: int, expected: int) -> float:
    group = f"{env['L4S_DETECT__GROUP']}-{uuid.uuid4().hex[:6]}"
    prefix = f"{env['L4S_REDIS__PREFIX']}-{uuid.uuid4().hex[:6]}"
    run_env = {**env, "L4S_DETECT__GROUP": group, "L4S_REDIS__PREFIX": prefix}
    client = redis.Redis.from_url(env["L4S_REDIS__URL"])
    logs = [open(Path(tempfile.gettempdir()) / f"l4s-bench-detect-{i}.log", "w") for i in range(processes)]  # noqa: SIM115
    workers = [l4s(run_env, "detect", "--stop-when-idle", "3", stderr=log) for log in logs]
    first_at = first_count = None
    try:
        while True:
            count = int(client.hget(f"{prefix}:totals", "lines") or 0)
            now = time.perf_counter()
            if count and first_at is None:
                first_at, first_count = now, count
            if count >= expected:
                break
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a detect worker exited before the input was drained")
            time.sleep(0.02)
    finally:
        for worker in workers:
            worker.wait(timeout=120)
    assert first_at is not None and first_count is not None
    return (expected - first_count) / (now - first_at)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    env = namespace_env(stack_env(), args.partitions)
    for name, value in env.items():
        if name.startswith("L4S_"):
            import os

            os.environ[name] = value
    settings = config.load()
    work = Path(tempfile.gettempdir()) / "l4s-bench"
    work.mkdir(exist_ok=True)
    data = write_workload(work / f"mixed-{args.lines}.log", args.lines, 0.005)
    create_topics(settings)
    replay([str(data)], settings, progress=False)
    raw, one, two = [], [], []
    for _ in range(args.rounds):
        raw.append(raw_loop(settings.kafka.bootstrap, settings.topics.input, args.lines))
        one.append(detect_workers(env, 1, args.lines))
        two.append(detect_workers(env, 2, args.lines))
    emit(
        "pipeline",
        {
            "lines": args.lines,
            "partitions": args.partitions,
            "rounds": args.rounds,
            "raw_consume_lines_per_s": round(median(raw)),
            "detect_1_process_lines_per_s": round(median(one)),
            "detect_2_processes_lines_per_s": round(median(two)),
            "detect_vs_raw": round(median(one) / median(raw), 3),
            "two_vs_one_process": round(median(two) / median(one), 3),
            "all_rounds": {"raw": [round(x) for x in raw], "one": [round(x) for x in one], "two": [round(x) for x in two]},
        },
    )


if __name__ == "__main__":
    main()
