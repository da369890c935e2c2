"""Running l4s workers as a supervisor would, and reading what they left behind.

Workers run as real ``l4s`` processes with their logs in files (a pipe nobody reads
would stall a busy worker). Helpers read consumer-group lag from Kafka, counters
and per-source views from Redis, and the metrics page a worker serves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.conftest import REPO, STACK, Namespace

#: Geo and ASN databases of the demo, so reports carry countries and networks.
GEO = [
    "--geoip-db",
    str(REPO / "samples/demo/geo/dbip-country-lite-demo.mmdb"),
    "--asn-db",
    str(REPO / "samples/demo/geo/asn-lite-demo.mmdb"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    """One ``l4s detect`` or ``l4s enrich`` process, logging JSON to a file."""

    ns: Namespace
    args: tuple[str, ...]
    log_dir: Path
    name: str
    extra_env: dict[str, str] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.{self.starts}.log"

    def start(self) -> Worker:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "--log-format",
                    "json",
                    *self.args,
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.ns.env, **self.extra_env},
                cwd=REPO,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9``: no cleanup of any kind."""
        assert self.process is not None and self.alive(), self.tail()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 90) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def logs(self, current: bool = False) -> list[dict[str, Any]]:
        """Every JSON log line of every run of this worker (or of the current run)."""
        records = []
        for run in range(self.starts if current else 1, self.starts + 1):
            path = self.log_dir / f"{self.name}.{run}.log"
            for line in path.read_text(errors="replace").splitlines():
                # Faust writes a terminal escape (show cursor) before some lines.
                start = line.find("{")
                if start < 0:
                    continue
                try:
                    records.append(json.loads(line[start:]))
                except json.JSONDecodeError:
                    continue
        return records

    def events(self, name: str, current: bool = False) -> list[dict[str, Any]]:
        return [r for r in self.logs(current) if r.get("event") == name]

    def tail(self, lines: int = 40) -> str:
        if self.starts == 0 or not self.log_path.exists():
            return "(no log)"
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()


def metric_value(page: str, name: str, **labels: str) -> float | None:
    """The value of one sample on a Prometheus text page, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in page.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, label_text = key.partition("{")
        if metric != name:
            continue
        found = (
            ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        )
        if found == wanted:
            return float(value)
    return None


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.5
) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def redis_client(ns: Namespace) -> redis.Redis:
    return redis.Redis.from_url(ns.stack.redis_url, socket_timeout=10)


def redis_totals(ns: Namespace) -> dict[str, int]:
    """The totals hash, or {} while Redis does not answer."""
    try:
        raw = redis_client(ns).hgetall(f"{ns.name}:totals")
    except redis.RedisError:
        return {}
    return {k.decode(): int(v) for k, v in raw.items()}


def source_views(ns: Namespace) -> dict[str, dict[str, str]]:
    """Every per-source hash under the namespace, by address."""
    client = redis_client(ns)
    addresses = sorted(a.decode() for a in client.smembers(f"{ns.name}:ips"))
    pipe = client.pipeline(transaction=False)
    for address in addresses:
        pipe.hgetall(f"{ns.name}:ip:{address}")
    views = pipe.execute()
    return {
        address: {k.decode(): v.decode() for k, v in view.items()}
        for address, view in zip(addresses, views, strict=True)
    }


def group_lag(ns: Namespace, group: str, topic: str) -> int | None:
    """Records of ``topic`` not committed by ``group``; None if Kafka is away."""
    config = {"bootstrap.servers": ns.stack.bootstrap, "group.id": group}
    consumer = Consumer({**config, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        committed = consumer.committed(partitions, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            lag += high - max(tp.offset, 0)
        return lag
    except KafkaException:
        return None
    finally:
        consumer.close()


def group_members(ns: Namespace, group: str) -> int:
    """How many members ``group`` has (0 while Kafka does not answer)."""
    client = admin(ns)  # held until the answer: a dropped client never answers
    try:
        future = client.describe_consumer_groups([group], request_timeout=10)[group]
        return len(future.result(timeout=20).members)
    except (KafkaException, TimeoutError):
        return 0


def topic_records(
    ns: Namespace, topic: str
) -> list[tuple[bytes | None, dict[str, bytes]]]:
    """Every record of ``topic`` from its start to its current end: (value, headers)."""
    consumer = Consumer(
        {
            "bootstrap.servers": ns.stack.bootstrap,
            "group.id": f"{ns.name}-reader",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
        }
    )
    out: list[tuple[bytes | None, dict[str, bytes]]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        assignment = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(topic, partition, low))
        consumer.assign(assignment)
        deadline = time.monotonic() + 120
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                out.append((message.value(), dict(message.headers() or [])))
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        assert not ends, f"could not read {topic} to its end"
    finally:
        consumer.close()
    return out


def topic_records_with_keys(
    ns: Namespace, topic: str, limit: int
) -> list[tuple[bytes | None, bytes | None]]:
    """The first ``limit`` records of ``topic`` (any partition): (key, value)."""
    consumer = Consumer(
        {
            "bootstrap.servers": ns.stack.bootstrap,
            "group.id": f"{ns.name}-peek",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(out) < limit and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                out.append((message.key(), message.value()))
    finally:
        consumer.close()
    return out


def stack_command(*args: str) -> None:
    """Run ``deploy/local/stack`` on this session's stack (L4S_STACK_* variables)."""
    result = subprocess.run(
        [str(STACK), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"stack {' '.join(args)} failed:\n{result.stderr}"


def stop_redis(ns: Namespace) -> int:
    """Shut the stack's Redis down the graceful way (AOF flushed); returns its pid.

    ``deploy/local/stack up`` starts it again on the same data.
    """
    client = redis_client(ns)
    pid = int(client.info("server")["process_id"])
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not _pid_alive(pid), 30, "redis to stop")
    return pid


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def admin(ns: Namespace) -> AdminClient:
    return AdminClient({"bootstrap.servers": ns.stack.bootstrap})


def error_lines(workers: list[Worker]) -> list[str]:
    """Error-level lines l4s itself logged (any run of the given workers).

    Client libraries log every failed connection attempt at error level while a
    broker restarts; those are the expected weather of a fault test, not l4s's.
    """
    out = []
    for worker in workers:
        for record in worker.logs():
            if "component" in record and record.get("level") in ("error", "critical"):
                out.append(f"{worker.name}: {json.dumps(record)[:400]}")
    return out
