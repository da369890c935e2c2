"""Payload corpus: public forms are detected as expected; look-alikes stay benign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detectors import analyze, may_contain_lookup
from detectors.model import TECHNIQUES

DATA = Path(__file__).resolve().parents[1] / "data"


def _load(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


ATTACKS = _load("payloads.jsonl")
BENIGN = _load("payloads_benign.jsonl")
PREFIX = '192.0.2.1 - - [10/Dec/2021:14:25:38 +0000] "GET / HTTP/1.1" 200 5 "-" '
_LOOKUP_KEYS = ("url", "scheme", "host", "port", "path", "oob", "family")
_TUPLE_KEYS = ("decodings", "exfil", "commands", "cves")


def test_corpus_cases_have_ids_sources_and_no_duplicates() -> None:
    ids = [case["id"] for case in ATTACKS + BENIGN]

    assert len(ids) == len(set(ids))
    assert all(case["source"].strip() for case in ATTACKS + BENIGN)
    assert len(ATTACKS) >= 80


@pytest.mark.parametrize("case", ATTACKS, ids=[c["id"] for c in ATTACKS])
def test_attack_corpus_case_is_detected_as_expected(case: dict[str, Any]) -> None:
    expect = case["expect"]
    verdict = analyze(case["value"], case["field"])

    assert verdict.malicious is expect["malicious"]
    if "inert" in expect:
        assert verdict.inert is expect["inert"]
    if not expect["malicious"]:
        assert verdict.lookups == ()
        assert set(expect.get("techniques", ())) <= set(verdict.techniques)
        return
    lookup = verdict.lookups[0]
    for key in _LOOKUP_KEYS:
        if key in expect:
            assert getattr(lookup, key) == expect[key], key
    for key in _TUPLE_KEYS:
        if key in expect:
            assert list(getattr(lookup, key)) == expect[key], key
    assert set(expect.get("techniques", ())) <= set(lookup.techniques)
    assert set(lookup.techniques) <= set(TECHNIQUES)


@pytest.mark.parametrize("case", BENIGN, ids=[c["id"] for c in BENIGN])
def test_benign_corpus_case_stays_benign(case: dict[str, Any]) -> None:
    verdict = analyze(case["value"], case["field"])

    assert not verdict.malicious
    assert not verdict.inert


@pytest.mark.parametrize("case", ATTACKS, ids=[c["id"] for c in ATTACKS])
def test_prefilter_accepts_every_attack_case_inside_a_log_line(
    case: dict[str, Any],
) -> None:
    value = case["value"].replace("\\", "\\\\").replace('"', '\\"')
    line = f'{PREFIX}"{value}"'

    assert may_contain_lookup(line.encode("utf-8"))
