"""Fuzz the detection engine (atheris): analyze, the prefilter and find_candidates.

Properties checked on every input, besides "no exception" and the time bound:

- the prefilter is sound: a value the engine finds an attack or an attempt in
  is never rejected by ``may_contain_lookup``;
- ``find_candidates`` agrees with ``may_contain_lookup`` line by line.

    python fuzz/fuzz_detectors.py -max_total_time=60 CORPUS_DIR
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["detectors"]):
    from detectors import analyze, find_candidates, may_contain_lookup

from common import bounded


def _analyze(value: str) -> None:
    verdict = analyze(value, "url.original")
    if verdict.malicious or (verdict.inert and verdict.limit_hit is None):
        raw = value.encode("utf-8", "surrogatepass")
        assert may_contain_lookup(raw), (
            f"prefilter rejects a flagged value: {value[:200]!r}"
        )


def _candidates(data: bytes) -> None:
    found = set(find_candidates(data))
    for number, line in enumerate(data.split(b"\n")):
        assert (number in found) == may_contain_lookup(line), (number, line[:200])


def test_one(data: bytes) -> None:
    value = data.decode("utf-8", "replace")
    bounded(lambda: _analyze(value), "analyze")
    bounded(lambda: _candidates(data), "find_candidates")


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
