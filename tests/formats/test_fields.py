"""Every field a format carries reaches the detector under its ECS name."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import PoisonRecord

from .conftest import CASES, PAYLOAD, render, router_for

SLOTS = [
    pytest.param(case, slot, id=f"{case['id']}-{slot}")
    for case in CASES
    for slot in case["slots"]
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_benign_sample_parses_and_carries_no_payload(case: dict[str, Any]) -> None:
    """The all-defaults record parses, with an event time and a client."""
    router = router_for(case)
    request = router.parser(case["format"]).parse(render(case))

    assert request is not None
    assert request.timestamp == pytest.approx(1639146338, abs=1.0)
    assert request.peer_ip in ("203.0.113.9", None)
    assert not any(PAYLOAD in value for _, value in request.fields())


@pytest.mark.parametrize(("case", "slot"), SLOTS)
def test_payload_in_each_field_is_yielded_under_its_ecs_name(
    case: dict[str, Any], slot: str
) -> None:
    """A payload placed in one field appears once, under that field's ECS name."""
    router = router_for(case)
    request = router.parser(case["format"]).parse(render(case, slot))

    assert request is not None
    carrying = [name for name, value in request.fields() if PAYLOAD in value]
    assert carrying == [case["slots"][slot]["field"]]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_record_cut_in_half_is_poison(case: dict[str, Any]) -> None:
    """A record truncated mid-way is dead-lettered, and the cheap test rejects it."""
    router = router_for(case)
    parser = router.parser(case["format"])
    whole = render(case)
    cut = whole[: len(whole) // 2]

    assert parser.looks_like(whole.rstrip(b"\n"))
    assert not parser.looks_like(cut)
    with pytest.raises(PoisonRecord):
        parser.parse(cut)
