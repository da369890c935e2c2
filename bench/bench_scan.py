"""``l4s scan`` over large files beside a bare read loop over the same files.

Usage: .venv/bin/python bench/bench_scan.py [--lines N] [--rounds R]

Measures, in one run and alternating rounds: (1) a bare Python loop that reads
the file line by line and counts lines, (2) ``l4s scan`` (all stages, in
process, no enrichment databases) on a benign-only file and on a mixed file with
0.5 % attack lines. Reports medians and the ratio scan / bare loop.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import emit, median, write_workload
from pipeline.config import Settings
from pipeline.scan import scan


def bare_read(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        for _ in handle:
            count += 1
    return count


def timed(func: object, *args: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = func(*args)  # type: ignore[operator]
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.gettempdir()) / "l4s-bench"
    work.mkdir(exist_ok=True)
    files = {
        "benign": write_workload(work / f"benign-{args.lines}.log", args.lines, 0.0),
        "mixed": write_workload(work / f"mixed-{args.lines}.log", args.lines, 0.005),
    }
    settings = Settings()
    figures: dict[str, dict[str, float]] = {}
    for name, path in files.items():
        bare, full = [], []
        attacks = 0
        for _ in range(args.rounds):
            seconds, n = timed(bare_read, path)
            bare.append(seconds)
            seconds, result = timed(scan, [str(path)], settings)
            full.append(seconds)
            totals = result.store.totals()  # type: ignore[attr-defined]
            assert totals["lines"] == n, (totals, n)
            attacks = totals["attacks"]
        figures[name] = {
            "lines": args.lines,
            "attacks": attacks,
            "bare_read_lines_per_s": round(args.lines / median(bare)),
            "scan_lines_per_s": round(args.lines / median(full)),
            "scan_vs_bare_read": round(median(bare) / median(full), 3),
        }
    emit("scan", {"rounds": args.rounds, "files": figures})


if __name__ == "__main__":
    main()
