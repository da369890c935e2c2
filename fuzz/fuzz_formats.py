"""Fuzz the log-format parsers and the detect stage on raw records (atheris).

A parser may return a request, return None (a header line), or raise
``PoisonRecord``; anything else is a crash. The detect stage must never raise,
must account for the record exactly once (parsed or dead-lettered), and must
stay within the time bound.

    python fuzz/fuzz_formats.py -max_total_time=60 CORPUS_DIR
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["pipeline", "detectors"]):
    from pipeline.config import Settings
    from pipeline.detect_stage import DetectStage, RawRecord
    from pipeline.errors import PoisonRecord
    from pipeline.formats import REGISTRY, FormatRouter

from common import bounded

_ROUTER = FormatRouter()
_PARSERS = [cls() for cls in REGISTRY.values()]
_STAGE = DetectStage(Settings())


def _parsers(data: bytes) -> None:
    for parser in [*_PARSERS, _ROUTER]:
        if parser is not _ROUTER:
            parser.looks_like(data)
        try:
            parser.parse(data)
        except PoisonRecord as exc:
            assert exc.reason, "a poison record names its reason"


def _stage(data: bytes) -> None:
    out = _STAGE.process([RawRecord(data, "fuzz", 1, sep=":")])
    counts = out.by_stream["fuzz"]
    assert counts["lines"] == 1
    assert counts["parsed"] + counts["dead_letters"] == 1, dict(counts)
    assert len(out.dead) == counts["dead_letters"]


def test_one(data: bytes) -> None:
    bounded(lambda: _parsers(data), "parsing")
    bounded(lambda: _stage(data), "the detect stage")


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
