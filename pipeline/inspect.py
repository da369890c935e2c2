"""``l4s inspect``: one JSON verdict per input string, for analysts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import TextIO

from detectors import ENGINE_VERSION, analyze


def inputs(values: Iterable[str], json_input: bool, field: str, stdin: TextIO) -> Iterator[tuple[str, str]]:
    """``(value, field)`` pairs from arguments, or from stdin when there are none."""
    values = list(values)
    if values:
        for value in values:
            yield value, field
        return
    for number, raw_line in enumerate(stdin, 1):
        line = raw_line.rstrip("\r\n")
        if not json_input:
            yield line, field
            continue
        try:
            item = json.loads(line)
            value = item["value"]
            name = item.get("field", field)
        except (ValueError, KeyError, TypeError, AttributeError):
            # Still one output line per input line, so results stay aligned.
            yield "", f"!invalid input line {number}: expected {{\"value\": ..., \"field\": ...}}"
            continue
        if not isinstance(value, str) or not isinstance(name, str):
            yield "", f"!invalid input line {number}: value and field must be strings"
            continue
        yield value, name


def verdict_json(value: str, field: str) -> str:
    """The verdict on ``value`` as one JSON line."""
    if field.startswith("!"):
        return json.dumps({"error": field[1:]})
    verdict = analyze(value, field)
    findings = [{"field": verdict.field, **asdict(lookup)} for lookup in verdict.lookups]
    return json.dumps(
        {
            "field": verdict.field,
            "malicious": verdict.malicious,
            "inert": verdict.inert,
            "findings": findings,
            "techniques": list(verdict.techniques),
            "limit_hit": verdict.limit_hit,
            "engine": ENGINE_VERSION,
        },
        ensure_ascii=False,
    )
