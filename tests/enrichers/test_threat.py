"""The five-level threat rating: calibration, monotonicity, the weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrichers.threat import LEVELS, Evidence, Levels, ThreatModel, Weights
from pipeline.errors import DataFileError

MODEL = ThreatModel.default()


def evidence(**changes: Any) -> Evidence:
    base: dict[str, Any] = {
        "hits": 0,
        "inert_hits": 0,
        "days": 1,
        "techniques": frozenset(),
        "obfuscated": False,
        "exfil": False,
        "commands": False,
        "oob": False,
        "tor": False,
        "kind": "hosting",
        "research": False,
        "compromised": False,
    }
    base.update(changes)
    return Evidence(**base)


def test_a_single_inert_attempt_is_low() -> None:
    rating = MODEL.rate(evidence(inert_hits=1, kind="isp"))

    assert rating.level == "Low"
    assert rating.reasons == ("1 inert attempt",)


def test_no_evidence_is_safe_with_no_reasons() -> None:
    rating = MODEL.rate(evidence(days=0))

    assert (rating.level, rating.score, rating.reasons) == ("Safe", 0.0, ())


def test_one_working_lookup_from_hosting_is_moderate() -> None:
    assert MODEL.rate(evidence(hits=1)).level == "Moderate"


def test_a_source_that_returns_on_a_third_day_climbs() -> None:
    day1 = MODEL.rate(evidence(hits=1, days=1))
    day2 = MODEL.rate(evidence(hits=2, days=2))
    day3 = MODEL.rate(evidence(hits=3, days=3))

    assert day1.score < day2.score < day3.score
    assert (day1.level, day2.level, day3.level) == ("Moderate", "Moderate", "Dangerous")
    assert "attacked on 3 days" in day3.reasons


@pytest.mark.parametrize(
    ("changes", "levels"),
    [
        (
            {
                "hits": 20,
                "days": 3,
                "obfuscated": True,
                "techniques": frozenset({"lower", "upper"}),
            },
            {"Critical"},
        ),
        ({"hits": 5, "days": 3}, {"Dangerous", "Critical"}),
        ({"hits": 10, "days": 2}, {"Dangerous", "Critical"}),
        ({"hits": 4, "days": 4, "kind": "isp"}, {"Dangerous", "Critical"}),
        ({"hits": 8, "days": 3, "exfil": True, "obfuscated": True}, {"Critical"}),
    ],
)
def test_typical_scanners_on_several_days_are_dangerous_or_critical(
    changes: dict[str, Any], levels: set[str]
) -> None:
    assert MODEL.rate(evidence(**changes)).level in levels


def test_research_scanner_with_oob_callback_is_rated_and_marked_research() -> None:
    rating = MODEL.rate(evidence(hits=1, oob=True, research=True, kind="scanner"))

    assert rating.level == "Low"
    assert rating.reasons[0] == "1 working JNDI lookup"
    assert rating.reasons[-1] == "research/testing (out-of-band test callback)"


def test_reasons_name_the_payload_severity_and_origin() -> None:
    rating = MODEL.rate(
        evidence(
            hits=2,
            commands=True,
            exfil=True,
            obfuscated=True,
            tor=True,
            compromised=True,
        )
    )

    for reason in (
        "command/dropper payload",
        "tries to exfiltrate secrets",
        "obfuscated payload",
        "Tor exit",
        "possibly compromised host",
    ):
        assert reason in rating.reasons


def test_reputation_adds_up_to_its_weight() -> None:
    base = MODEL.rate(evidence(hits=1)).score

    assert MODEL.rate(evidence(hits=1, reputation=100)).score == pytest.approx(
        base + 30
    )
    assert MODEL.rate(evidence(hits=1, reputation=500)).score == pytest.approx(
        base + 30
    )


evidence_strategy = st.builds(
    evidence,
    hits=st.integers(0, 500),
    inert_hits=st.integers(0, 500),
    days=st.integers(0, 30),
    techniques=st.frozensets(
        st.sampled_from(["lower", "upper", "env", "date", "base64"])
    ),
    obfuscated=st.booleans(),
    exfil=st.booleans(),
    commands=st.booleans(),
    oob=st.booleans(),
    tor=st.booleans(),
    kind=st.sampled_from(
        ["hosting", "isp", "unknown", "scanner", "education", "tor", "cdn"]
    ),
    research=st.booleans(),
    compromised=st.booleans(),
    reputation=st.one_of(st.none(), st.floats(0, 100)),
)


@given(
    evidence_strategy,
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 5),
    st.data(),
)
def test_more_evidence_never_lowers_the_rating(
    e: Evidence, more_hits: int, more_inert: int, more_days: int, data: st.DataObject
) -> None:
    worse = evidence(
        hits=e.hits + more_hits,
        inert_hits=e.inert_hits + more_inert,
        days=e.days + more_days,
        techniques=e.techniques
        | data.draw(st.frozensets(st.sampled_from(["nested", "sys"]))),
        obfuscated=e.obfuscated or data.draw(st.booleans()),
        exfil=e.exfil or data.draw(st.booleans()),
        commands=e.commands or data.draw(st.booleans()),
        oob=e.oob,
        tor=e.tor,
        kind=e.kind,
        research=e.research,
        compromised=e.compromised,
        reputation=None
        if e.reputation is None
        else min(100.0, e.reputation + data.draw(st.floats(0, 50))),
    )

    before, after = MODEL.rate(e), MODEL.rate(worse)

    assert after.score >= before.score
    assert LEVELS.index(after.level) >= LEVELS.index(before.level)


@given(evidence_strategy)
def test_rating_is_deterministic_and_within_bounds(e: Evidence) -> None:
    first, second = MODEL.rate(e), MODEL.rate(e)

    assert first == second
    assert 0.0 <= first.score <= 100.0
    assert first.level == MODEL.level_of(first.score)


def test_operator_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "threat.toml"
    path.write_text("[weights]\ncommands = 40.0\n[levels]\nCritical = 80.0\n")

    model = ThreatModel.from_file(path)

    assert model.weights.commands == 40.0
    assert model.weights.attack == MODEL.weights.attack
    assert model.thresholds[-1] == ("Critical", 80.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[weights]\nattack = -5.0\n", "negative"),
        ("[weights]\nresearch = 5.0\n", "research must be 0 or negative"),
        ("[levels]\nLow = 50.0\nModerate = 40.0\n", "increase strictly"),
        ("[weights]\nbogus = 1.0\n", "bogus"),
        ("[weights]\nattack = 'high'\n", "Expected"),
        ("[weights\n", "not valid TOML"),
    ],
)
def test_bad_model_file_is_refused_in_one_line(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "threat.toml"
    path.write_text(body)

    with pytest.raises(DataFileError, match=message) as info:
        ThreatModel.from_file(path)

    assert "\n" not in str(info.value)


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="does not exist"):
        ThreatModel.from_file(tmp_path / "none.toml")


def test_shipped_file_and_code_defaults_agree() -> None:
    assert MODEL.weights == Weights()
    assert MODEL.levels == Levels()
