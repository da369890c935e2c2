"""Records per second per log format: full parse, cheap test, auto-detection.

Beside each figure, the same run measures a bare decode of the same record
(``msgspec.json.decode`` and ``json.loads`` for JSON shapes, ``bytes.split`` for
lines) as the baseline, and reports the ratio. Records are the benign samples
of ``tests/data/formats/field_cases.toml`` (one per format).

Usage: ``.venv/bin/python bench/bench_formats.py [--seconds 0.2] [--repeats 5]``.
Prints one JSON line and writes ``bench/results/formats.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from pipeline.formats import FormatRouter
from pipeline.formats.settings import FormatSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "formats"


def render(case: dict[str, Any]) -> bytes:
    record: str = case["record"]
    for name, spec in case["slots"].items():
        record = record.replace(f"@@{name}@@", spec["default"])
    return (
        record.lstrip("\n").encode() if case["format"] == "modsec" else record.encode()
    )


def router_for(case: dict[str, Any]) -> FormatRouter:
    values = dict(case.get("settings", {}))
    if "mapping" in case:
        values["json_mappings"] = {case["format"]: DATA / case["mapping"]}
    router = FormatRouter(settings=FormatSettings(**values))
    for line in case.get("directives", []):
        router.parser(case["format"]).parse(line.encode())
    return router


def calls_for(call: Callable[[], object], seconds: float) -> int:
    """How many calls of ``call`` take about ``seconds``."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 10:
            return max(1, int(n * seconds / elapsed))
        n *= 2


def once(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


def measure(case: dict[str, Any], seconds: float, repeats: int) -> dict[str, Any]:
    """The figures of one format's sample record.

    The measured calls take turns within each repeat, so a burst of load on the
    machine hits the parser and its baseline alike; ratios are per repeat, then
    the median is taken.
    """
    router = router_for(case)
    parser = router.parser(case["format"])
    record = render(case)
    is_json = record.lstrip()[:1] == b"{"
    calls: dict[str, Callable[[], object]] = {
        "parse": lambda: parser.parse(record),
        "looks_like": lambda: parser.looks_like(record),
        "auto_choose": lambda: router.choose(record),
    }
    if is_json:
        calls["baseline"] = lambda: msgspec.json.decode(record)
        calls["json_loads"] = lambda: json.loads(record)
    else:
        calls["baseline"] = lambda: record.split(b" ")
    counts = {name: calls_for(call, seconds) for name, call in calls.items()}
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            rates[name].append(once(call, counts[name]))
    ratios = [p / b for p, b in zip(rates["parse"], rates["baseline"], strict=True)]
    figures: dict[str, Any] = {
        "format": case["format"],
        "bytes": len(record),
        "baseline": "msgspec.json.decode" if is_json else "bytes.split",
    }
    for name, values in rates.items():
        figures[f"{name}_per_s"] = round(statistics.median(values))
    figures["parse_vs_baseline"] = round(statistics.median(ratios), 4)
    return figures


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=float, default=0.2)
    options.add_argument("--repeats", type=int, default=5)
    args = options.parse_args()
    cases = tomllib.loads((DATA / "field_cases.toml").read_text())["case"]
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        results[case["id"]] = measure(case, args.seconds, args.repeats)

    parse_rates = [f["parse_per_s"] for f in results.values()]
    summary = {
        "bench": "formats",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds_per_repeat": args.seconds,
        "repeats": args.repeats,
        "statistic": "median of repeats (calls interleaved per repeat)",
        "load_average_at_end": os.getloadavg()[0],
        "median_parse_per_s": round(statistics.median(parse_rates)),
        "min_parse_per_s": min(parse_rates),
        "median_looks_like_per_s": round(
            statistics.median(f["looks_like_per_s"] for f in results.values())
        ),
        "formats": results,
    }
    out = ROOT / "bench" / "results" / "formats.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
