"""Detect-stage throughput on hostile records beside normal traffic, in one run.

Times ``DetectStage.process`` (parse, prefilter, evaluate: the detect worker's
whole per-record work, without Kafka) over:

- normal: the demo's real Apache traffic, repeated to ``--normal`` records;
- hostile: the generated set of 10,509 hostile records of the streaming test
  (binary, invalid UTF-8, truncated, 10 MB lines, JSON 100,000 deep, wrong types,
  far-off times, detector-hard payloads).

Each figure is the median of ``--repeat`` runs; the factors say how many times
slower hostile input is, per record and per byte. Prints one JSON line and
writes bench/results/hostile.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import Settings  # noqa: E402
from pipeline.detect_stage import DetectStage, RawRecord  # noqa: E402
from pipeline.sources import lines, open_log  # noqa: E402
from tests.integration.workload import write_hostile_workload  # noqa: E402


def timed(stage: DetectStage, records: list[RawRecord], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        stage.process(records)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def rates(records: list[RawRecord], seconds: float) -> dict[str, float]:
    size = sum(len(r.value) for r in records)
    return {
        "records": len(records),
        "mb": round(size / 2**20, 1),
        "seconds": round(seconds, 3),
        "records_per_s": round(len(records) / seconds),
        "mb_per_s": round(size / 2**20 / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stage = DetectStage(Settings())
    benign = (REPO / "samples/demo/apache_logs").read_bytes().splitlines()
    normal = [
        RawRecord(benign[i % len(benign)], "normal", i, sep=":")
        for i in range(args.normal)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        hostile_file = write_hostile_workload(Path(tmp) / "hostile.log")
        with open_log(str(hostile_file.path)) as handle:
            hostile = [RawRecord(v, "hostile", n, sep=":") for n, v in lines(handle)]
    normal_rates = rates(normal, timed(stage, normal, args.repeat))
    hostile_rates = rates(hostile, timed(stage, hostile, args.repeat))
    result = {
        "bench": "hostile",
        "normal": normal_rates,
        "hostile": hostile_rates,
        "slower_per_record": round(
            normal_rates["records_per_s"] / hostile_rates["records_per_s"], 1
        ),
        "slower_per_byte": round(
            normal_rates["mb_per_s"] / hostile_rates["mb_per_s"], 2
        ),
    }
    line = json.dumps(result)
    print(line)
    (REPO / "bench" / "results" / "hostile.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
