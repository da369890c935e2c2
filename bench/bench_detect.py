"""Benchmark the detection engine: prefilter and full evaluation, beside a naive regex.

Runs on one core, in one process:

* benign: the real Apache log in tests/data/real/apache_logs (10,000 lines, tiled
  to ``--benign-lines``), through the batch prefilter (``find_candidates``), the
  per-record prefilter and the full engine;
* attack: every attack payload of tests/data/payloads.jsonl as the user agent of a
  combined-log line: analyze_fields on the parsed fields (the engine alone), the
  same with parsing (pipeline.formats.combined) included, and the raw line as one
  value;
* mixed: benign lines with 0.5% attack lines, end to end (batch prefilter, then
  parse and analyze the candidates);
* hostile: 64 KB strings built to make an evaluator work hard.

The baseline, measured in the same run, is one case-insensitive ``jndi`` regex:
what a naive signature scanner does. Figures are medians of ``--repeat`` runs, in
CPU time of this one process (one core).
Prints one JSON line and writes bench/results/detect.json.

    python bench/bench_detect.py [--repeat 5] [--benign-lines 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors import (  # noqa: E402
    ENGINE_VERSION,
    analyze,
    analyze_fields,
    find_candidates,
    may_contain_lookup,
)
from pipeline.formats.combined import CombinedParser  # noqa: E402

PARSER = CombinedParser()

DATA = ROOT / "tests" / "data"
RESULTS = ROOT / "bench" / "results" / "detect.json"
NAIVE = re.compile(rb"jndi", re.IGNORECASE)
PREFIX = '192.0.2.1 - - [10/Dec/2021:14:25:38 +0000] "GET / HTTP/1.1" 200 5 "-" '
KB64 = 65_536
HOSTILE = {
    "dollar-brace": "${" * (KB64 // 2),
    "deep-nesting": "${" * (KB64 // 4) + "}" * (KB64 // 4),
    "flat-unresolved": "${a}" * (KB64 // 4),
    "flat-defaults": "${::-a}" * (KB64 // 7),
    "escapes": "$${" * (KB64 // 3),
    "recursion": "${${::-${::-$${::-j}}}}" * (KB64 // 23),
    "many-lookups": "${jndi:ldap://example.com/a}" * (KB64 // 28),
    "percent-chain": "%25" * (KB64 // 3),
    "entities": "&#36;&#123;" * (KB64 // 11),
    "unicode-escapes": "\\u0024\\u007b" * (KB64 // 12),
}


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of ``run`` in this process.

    CPU time rather than wall time: the figures are per core, and on a shared
    machine wall time also counts the time other processes held the core.
    """
    times = []
    for _ in range(repeat):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)

    return statistics.median(times)


def naive_candidates(buffer: bytes) -> list[int]:
    """The baseline's batch form: one regex over the buffer, mapped to line numbers."""
    found = []
    line = 0
    counted = 0
    pos = 0
    while True:
        match = NAIVE.search(buffer, pos)
        if match is None:
            break
        line += buffer.count(b"\n", counted, match.start())
        counted = match.start()
        found.append(line)
        end = buffer.find(b"\n", match.start())
        if end < 0:
            break
        pos = end + 1

    return found


def attack_lines() -> list[str]:
    lines = []
    for raw in (DATA / "payloads.jsonl").read_text("utf-8").splitlines():
        case = json.loads(raw)
        if case["expect"]["malicious"]:
            value = case["value"].replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{PREFIX}"{value}"')

    return lines


def engine_on_line(line: str) -> bool:
    """The whole raw line as one value (no parser): the engine's worst case."""
    return analyze(line, "log.extra.1").malicious


def engine_on_record(line: bytes) -> bool:
    """What the detect stage does for a candidate: parse, then analyze every field."""
    return analyze_fields(PARSER.parse(line).fields()).malicious


def bench_benign(repeat: int, target_lines: int) -> dict[str, object]:
    base = (ROOT / "tests" / "data" / "real" / "apache_logs").read_bytes().rstrip(b"\n")
    lines = base.split(b"\n")
    tiles = max(1, target_lines // len(lines))
    buffer = b"\n".join([base] * tiles)
    all_lines = lines * tiles
    texts = [line.decode("utf-8", "replace") for line in lines]
    n = len(all_lines)

    batch = median_seconds(lambda: find_candidates(buffer), repeat)
    naive_batch = median_seconds(lambda: naive_candidates(buffer), repeat)
    per_record = median_seconds(
        lambda: [may_contain_lookup(x) for x in all_lines], repeat
    )
    naive_per_record = median_seconds(
        lambda: [NAIVE.search(x) for x in all_lines], repeat
    )
    engine_all = median_seconds(lambda: [engine_on_record(x) for x in lines], repeat)
    candidates = find_candidates(buffer)

    return {
        "lines": n,
        "prefilter_batch_lines_per_s": round(n / batch),
        "naive_batch_lines_per_s": round(n / naive_batch),
        "prefilter_per_record_lines_per_s": round(n / per_record),
        "naive_per_record_lines_per_s": round(n / naive_per_record),
        "engine_without_prefilter_lines_per_s": round(len(lines) / engine_all),
        "prefilter_candidates": len(candidates),
        "prefilter_candidate_share": round(len(candidates) / n, 5),
        "engine_detections": sum(
            engine_on_line(texts[i % len(texts)]) for i in candidates
        ),
    }


def bench_attacks(repeat: int) -> dict[str, object]:
    lines = attack_lines()
    encoded = [line.encode() for line in lines]
    fields = [list(PARSER.parse(x).fields()) for x in encoded]
    engine = median_seconds(lambda: [analyze_fields(f) for f in fields], repeat)
    records = median_seconds(lambda: [engine_on_record(x) for x in encoded], repeat)
    raw = median_seconds(lambda: [engine_on_line(x) for x in lines], repeat)
    naive = median_seconds(lambda: [NAIVE.search(x) for x in encoded], repeat)
    detected = sum(engine_on_record(x) for x in encoded)
    naive_detected = sum(NAIVE.search(x) is not None for x in encoded)

    return {
        "lines": len(lines),
        "engine_lines_per_s": round(len(lines) / engine),
        "engine_us_per_line": round(engine / len(lines) * 1e6, 1),
        "parse_and_engine_lines_per_s": round(len(lines) / records),
        "engine_raw_line_as_one_field_lines_per_s": round(len(lines) / raw),
        "naive_lines_per_s": round(len(lines) / naive),
        "engine_detected": detected,
        "naive_detected": naive_detected,
    }


def bench_mixed(repeat: int, target_lines: int) -> dict[str, object]:
    rng = random.Random(2021)
    benign = (
        (ROOT / "tests" / "data" / "real" / "apache_logs").read_bytes().split(b"\n")
    )
    benign = [line for line in benign if line]
    attacks = [line.encode() for line in attack_lines()]
    lines = []
    for i in range(target_lines):
        lines.append(rng.choice(attacks) if i % 200 == 0 else benign[i % len(benign)])
    buffer = b"\n".join(lines)

    def end_to_end() -> int:
        return sum(engine_on_record(lines[index]) for index in find_candidates(buffer))

    def naive() -> int:
        return len(naive_candidates(buffer))

    seconds = median_seconds(end_to_end, repeat)
    naive_seconds = median_seconds(naive, repeat)

    return {
        "lines": len(lines),
        "attack_share": 0.005,
        "end_to_end_lines_per_s": round(len(lines) / seconds),
        "naive_lines_per_s": round(len(lines) / naive_seconds),
        "detected": end_to_end(),
        "attack_lines": sum(1 for i in range(target_lines) if i % 200 == 0),
    }


def bench_hostile(repeat: int) -> dict[str, object]:
    per_string = {}
    for name, value in HOSTILE.items():
        seconds = median_seconds(
            lambda v=value: analyze(v, "http.request.body.content"), repeat
        )
        per_string[name] = round(seconds * 1000, 3)

    return {"ms_per_64k_string": per_string, "max_ms": max(per_string.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--benign-lines", type=int, default=100_000)
    args = parser.parse_args()

    result = {
        "bench": "detect",
        "clock": "process CPU time",
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "engine": ENGINE_VERSION,
        "python": platform.python_version(),
        "repeat": args.repeat,
        "benign": bench_benign(args.repeat, args.benign_lines),
        "attack": bench_attacks(args.repeat),
        "mixed": bench_mixed(args.repeat, args.benign_lines),
        "hostile": bench_hostile(args.repeat),
    }
    benign = result["benign"]
    assert isinstance(benign, dict)
    result["ratios"] = {
        "prefilter_batch_vs_naive_batch": round(
            benign["prefilter_batch_lines_per_s"] / benign["naive_batch_lines_per_s"], 3
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
