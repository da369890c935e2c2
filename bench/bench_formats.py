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


def rate(call: Callable[[], object], seconds: float, repeats: int) -> float:
    """Median calls per second over ``repeats`` runs of about ``seconds`` each."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            call()
        if time.perf_counter() - start > seconds / 10:
            break
        n *= 2
    n = max(1, int(n * seconds / max(time.perf_counter() - start, 1e-9)))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            call()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(case: dict[str, Any], seconds: float, repeats: int) -> dict[str, Any]:
    """The figures of one format's sample record."""
    router = router_for(case)
    parser = router.parser(case["format"])
    record = render(case)
    figures: dict[str, Any] = {
        "format": case["format"],
        "bytes": len(record),
        "parse_per_s": rate(lambda: parser.parse(record), seconds, repeats),
        "looks_like_per_s": rate(lambda: parser.looks_like(record), seconds, repeats),
        "auto_choose_per_s": rate(lambda: router.choose(record), seconds, repeats),
    }
    if record.lstrip()[:1] == b"{":
        figures["baseline"] = "msgspec.json.decode"
        figures["baseline_per_s"] = rate(
            lambda: msgspec.json.decode(record), seconds, repeats
        )
        figures["json_loads_per_s"] = rate(lambda: json.loads(record), seconds, repeats)
    else:
        figures["baseline"] = "bytes.split"
        figures["baseline_per_s"] = rate(lambda: record.split(b" "), seconds, repeats)
    figures["parse_vs_baseline"] = round(
        figures["parse_per_s"] / figures["baseline_per_s"], 3
    )
    figures["looks_like_vs_parse"] = round(
        figures["looks_like_per_s"] / figures["parse_per_s"], 1
    )
    for key in list(figures):
        if key.endswith("_per_s"):
            figures[key] = round(figures[key])
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
        "statistic": "median of repeats",
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
