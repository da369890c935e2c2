"""Shared pieces of the l4s benchmarks: workloads, the local stack, result files.

Every benchmark prints one JSON line (its result) on stdout and writes the same
document to ``bench/results/<name>.json`` with the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
DEMO = REPO / "samples" / "demo"
STACK = REPO / "deploy" / "local" / "stack"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def emit(name: str, result: dict[str, Any]) -> None:
    """Print the one result line and keep it in bench/results/<name>.json."""
    document = {
        "benchmark": name,
        "command": " ".join(shlex.quote(a) for a in [sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document))


def median(values: list[float]) -> float:
    return statistics.median(values)


def attack_payloads() -> list[str]:
    """Malicious payloads of the corpus that belong in a User-Agent (sourced there)."""
    payloads = []
    for line in (REPO / "tests" / "data" / "payloads.jsonl").read_text().splitlines():
        case = json.loads(line)
        if case["expect"].get("malicious") and "\n" not in case["value"]:
            payloads.append(case["value"])
    return payloads


def workload(lines: int, attack_share: float, seed: int = 7) -> Iterator[bytes]:
    """Real benign Apache lines with attack lines mixed in at ``attack_share``.

    Attack sources are drawn from 11.0.0.0/8, so they are ordinary public
    addresses (not special-purpose ranges) that the blocklist may publish.
    """
    rng = random.Random(seed)
    benign = (DEMO / "apache_logs").read_bytes().splitlines()
    payloads = attack_payloads()
    for i in range(lines):
        if rng.random() < attack_share:
            ip = f"11.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            ua = rng.choice(payloads).replace("\\", "\\\\").replace('"', '\\"')
            minute, second = divmod(i % 3600, 60)
            yield (
                f'{ip} - - [12/Dec/2021:10:{minute:02d}:{second:02d} +0000] '
                f'"GET / HTTP/1.1" 200 5 "-" "{ua}"'
            ).encode()
        else:
            yield benign[i % len(benign)]


def write_workload(path: Path, lines: int, attack_share: float) -> Path:
    if not path.exists():
        with path.open("wb") as out:
            for line in workload(lines, attack_share):
                out.write(line + b"\n")
    return path


def stack_env() -> dict[str, str]:
    """Start the local stack if needed; the L4S_* addresses of it."""
    subprocess.run([str(STACK), "up"], check=True, capture_output=True)
    env = {}
    out = subprocess.run([str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def namespace_env(base: dict[str, str], partitions: int) -> dict[str, str]:
    """Private topic names, groups and Redis prefix for one benchmark run."""
    n = f"bench{uuid.uuid4().hex[:8]}"
    return {
        **os.environ,
        **base,
        "L4S_REDIS__PREFIX": n,
        "L4S_TOPICS__INPUT": f"{n}.http-logs",
        "L4S_TOPICS__DETECTIONS": f"{n}.detections",
        "L4S_TOPICS__EVENTS": f"{n}.events",
        "L4S_TOPICS__BLOCKLIST": f"{n}.blocklist",
        "L4S_TOPICS__DEAD_LETTER": f"{n}.dlq",
        "L4S_DETECT__GROUP": f"{n}-detect",
        "L4S_ENRICH__APP_ID": f"{n}-enrich",
        "L4S_KAFKA__PARTITIONS": str(partitions),
    }


def l4s(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--log-level", "info", "--log-format", "json", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=kwargs.pop("stderr", subprocess.DEVNULL),
        **kwargs,
    )
