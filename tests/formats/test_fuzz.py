"""No input makes a parser raise anything but PoisonRecord (property tests)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import Parser

from .conftest import CASES, PAYLOAD, render, router_for

CASE_IDS = [c["id"] for c in CASES]
#: Examples per property; raise with L4S_FUZZ_EXAMPLES for a long local run.
FUZZ = settings(
    max_examples=int(os.environ.get("L4S_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def survives(parser: Parser, raw: bytes) -> None:
    """The parser's whole contract on one input."""
    assert isinstance(parser.looks_like(raw), bool)
    try:
        result = parser.parse(raw)
    except PoisonRecord as exc:
        assert exc.reason and exc.reason.replace("_", "").isalnum()
        assert len(exc.detail) < 300
        return
    assert result is None or isinstance(result, HttpRequest)
    if result is not None:
        for name, value in result.fields():
            assert isinstance(name, str) and isinstance(value, str)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FUZZ
@given(raw=st.binary(max_size=3000))
def test_arbitrary_bytes_are_parsed_or_poison(case: dict[str, Any], raw: bytes) -> None:
    survives(router_for(case).parser(case["format"]), raw)


@st.composite
def mutations(draw: st.DrawFn, record: bytes) -> bytes:
    """The record with a few bytes inserted, deleted or replaced, or cut short."""
    data = bytearray(record)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        chunk = draw(
            st.one_of(
                st.binary(min_size=1, max_size=8),
                st.sampled_from(
                    [
                        b'"',
                        b"\\",
                        b"\x00",
                        b"\xff\xfe",
                        b"\t",
                        b"\n",
                        b"{",
                        b"}",
                        b"[",
                        b" ",
                        b"#",
                        b"-",
                        b"\\x",
                        b"\\u12",
                        b"%",
                        b"9999",
                        b"--7c6f1d2a-Z--\n",
                    ]
                ),
            )
        )
        if action == "insert":
            data[at:at] = chunk
        elif action == "delete":
            del data[at : at + len(chunk)]
        elif action == "replace":
            data[at : at + len(chunk)] = chunk
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@FUZZ
@given(data=st.data())
def test_mutated_samples_are_parsed_or_poison(
    case: dict[str, Any], data: st.DataObject
) -> None:
    parser = router_for(case).parser(case["format"])

    survives(parser, data.draw(mutations(render(case))))


JSON_CASES = [c for c in CASES if c["record"].lstrip().startswith("{")]
WRONG = [
    True,
    False,
    [1, "a"],
    {"x": {"y": 1}},
    12345678901234567890123456789,
    -1.5,
    None,
    "",
]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    yield path


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


@pytest.mark.parametrize("case", JSON_CASES, ids=[c["id"] for c in JSON_CASES])
def test_wrong_json_types_in_every_field_are_parsed_or_poison(
    case: dict[str, Any],
) -> None:
    parser = router_for(case).parser(case["format"])
    doc = json.loads(render(case))
    tried = 0
    for path in leaves(doc):
        for value in WRONG:
            survives(parser, json.dumps(replaced(doc, path, value)).encode())
            tried += 1

    assert tried > 20


HOSTILE = {
    "ten_megabytes": b'203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] "GET /'
    + b"A" * 10_000_000,
    "deep_json_arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep_json_objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep_json_in_a_field": b'{"ecs":{},"url":{"original":'
    + b"[" * 50_000
    + b"]" * 50_000
    + b"}}",
    "nul_bytes": b"\x00" * 4096,
    "invalid_utf8": b'{"ecs":{},"url":{"original":"\xff\xfe\xc3\x28"}}',
    "invalid_utf8_line": (
        b"203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] "
        b'"GET /\xff\xc3\x28 HTTP/1.1" 200 1'
    ),
    "year_9999": b'203.0.113.9 - - [31/Dec/9999:23:59:59 +0000] "GET / HTTP/1.1" 200 1',
    "json_year_9999": (
        b'{"ecs":{},"@timestamp":"9999-12-31T23:59:59Z","url":{"original":"/"}}'
    ),
    "huge_number": b'{"ts":1e400,"id.orig_h":"203.0.113.9","trans_depth":1,"uri":"/"}',
    "empty": b"",
    "only_newline": b"\n",
    "lone_brace": b"{",
    "json_array": b"[1,2,3]",
    "json_string": b'"x"',
}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.timeout(60)
def test_hostile_inputs_are_parsed_or_poison(case: dict[str, Any], name: str) -> None:
    survives(router_for(case).parser(case["format"]), HOSTILE[name])


def test_ten_megabyte_line_is_too_large() -> None:
    parser = router_for(CASES[0]).parser("combined")

    with pytest.raises(PoisonRecord) as caught:
        parser.parse(HOSTILE["ten_megabytes"])

    assert caught.value.reason == "too_large"


def test_deep_json_is_poison_with_its_own_reason() -> None:
    parser = router_for(CASES[0]).parser("ecs")

    with pytest.raises(PoisonRecord) as caught:
        parser.parse(HOSTILE["deep_json_objects"])

    assert caught.value.reason == "json_too_deep"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_poison_detail_does_not_echo_the_payload(case: dict[str, Any]) -> None:
    """A dead-letter reason never carries the attacker's payload."""
    parser = router_for(case).parser(case["format"])
    whole = render(case, next(iter(case["slots"])))
    for cut in (len(whole) // 3, len(whole) // 2, len(whole) - 2):
        try:
            parser.parse(whole[:cut] + b'\x00"{')
        except PoisonRecord as exc:
            assert PAYLOAD not in str(exc)
