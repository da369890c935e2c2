"""Choosing the parser: named, per topic, or auto-detected without silent guesses."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import ConfigError, PoisonRecord
from pipeline.formats import ALIASES, REGISTRY, FormatRouter
from pipeline.formats.settings import FormatSettings

from .conftest import CASES, DATA, render, router_for

SNIFFED = [c for c in CASES if c["format"] in REGISTRY]


@pytest.mark.parametrize("case", SNIFFED, ids=[c["id"] for c in SNIFFED])
def test_auto_detection_claims_each_format_unambiguously(case: dict[str, Any]) -> None:
    router = router_for(case)

    parser, ambiguous = router.choose(render(case))

    assert (parser.name, ambiguous) == (case["format"], False)


@pytest.mark.parametrize("case", SNIFFED, ids=[c["id"] for c in SNIFFED])
def test_no_other_parser_claims_a_sample(case: dict[str, Any]) -> None:
    """Each sniff is specific: every other built-in parser rejects the record."""
    router = router_for(case)
    record = render(case)

    claims = [k for k in REGISTRY if router.parser(k).looks_like(record)]

    assert claims == [case["format"]]


def test_unclaimed_record_takes_the_fallback_and_is_reported_ambiguous() -> None:
    router = FormatRouter(fallback="combined")

    parser, ambiguous = router.choose(b"this is not any log format")

    assert (parser.name, ambiguous) == ("combined", True)


def test_record_claimed_twice_takes_the_fallback_and_is_reported_ambiguous() -> None:
    """A JSON object carrying the marker keys of two shapes is not guessed."""
    both = b'{"ecs":{"version":"8"},"httpRequest":{"requestUrl":"/"}}'
    router = FormatRouter(fallback="ecs")

    parser, ambiguous = router.choose(both)

    assert (parser.name, ambiguous) == ("ecs", True)


def test_a_payload_cannot_forge_a_json_marker_key() -> None:
    """Marker keys end in ``":``, which cannot occur inside a JSON string."""
    record = (
        b'{"@timestamp":"2021-12-10T14:25:38Z","ecs":{"version":"8"},'
        b'"user_agent":{"original":"\\"httpRequest\\": \\"ClientRequestURI\\":"}}'
    )

    parser, ambiguous = FormatRouter().choose(record)

    assert (parser.name, ambiguous) == ("ecs", False)


def test_header_names_the_format_over_topic_and_default() -> None:
    router = FormatRouter.from_settings(
        FormatSettings(default="combined", topics={"lb": "alb"})
    )

    assert router.choose(b"x", named="envoy", topic="lb")[0].name == "envoy"
    assert router.choose(b"x", topic="lb")[0].name == "alb"
    assert router.choose(b"x", topic="other")[0].name == "combined"


def test_unknown_format_in_a_record_header_is_poison() -> None:
    with pytest.raises(PoisonRecord) as caught:
        FormatRouter().choose(b"x", named="no-such-format")

    assert caught.value.reason == "unknown_format"


@pytest.mark.parametrize(
    "settings",
    [
        {"default": "nope"},
        {"fallback": "auto"},
        {"topics": {"t": "nope"}},
        {"nginx": {"combined": "$remote_addr $request"}},
        {"nginx": {"bad": "$remote_addr$remote_user"}},
        {"nginx": {"bad": "no variables at all"}},
        {"json_mappings": {"m": DATA / "does-not-exist.toml"}},
    ],
)
def test_bad_format_settings_stop_at_start(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        FormatRouter.from_settings(FormatSettings(**settings))


def test_bad_mapping_file_names_the_setting(tmp_path: Any) -> None:
    bad = tmp_path / "m.toml"
    bad.write_text('uri = "u"\nno_such_key = "x"\n')

    with pytest.raises(ConfigError, match="no_such_key"):
        FormatRouter.from_settings(FormatSettings(json_mappings={"m": bad}))


def test_aliases_name_the_same_parser() -> None:
    router = FormatRouter()

    for alias, key in ALIASES.items():
        assert router.parser(alias) is router.parser(key)


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        (b"#Fields: date time c-ip cs-method cs-uri-stem", "iis"),
        (b"#Software: Microsoft Internet Information Services 10.0", "iis"),
        (b"#Version: 1.0", "cloudfront"),
        (b"#Fields: date time x-edge-location sc-bytes c-ip", "cloudfront"),
        (b"#separator \\x09", "zeek_tsv"),
        (b"#fields\tts\tuid\tid.orig_h", "zeek_tsv"),
        (b"#close\t2021-12-10-15-00-00", "zeek_tsv"),
    ],
)
def test_directive_lines_go_to_their_format_and_parse_to_none(
    line: bytes, fmt: str
) -> None:
    router = FormatRouter()

    parser, ambiguous = router.choose(line)

    assert (parser.name, ambiguous) == (fmt, False)
    assert router.parse(line) is None


def test_fields_directive_changes_the_layout_of_following_records() -> None:
    router = FormatRouter()
    router.parse(b"#Fields: date time c-ip cs-method cs-uri-stem cs(User-Agent)")

    request = router.parse(b"2021-12-10 14:25:38 203.0.113.9 GET /a curl/8+x")

    assert request is not None
    assert (request.peer_ip, request.uri, request.user_agent) == (
        "203.0.113.9",
        "/a",
        "curl/8 x",
    )


def test_record_not_matching_the_layout_is_poison() -> None:
    parser = FormatRouter().parser("iis")
    parser.parse(b"#Fields: date time c-ip cs-method")

    with pytest.raises(PoisonRecord) as caught:
        parser.parse(b"2021-12-10 14:25:38 203.0.113.9 GET /extra")

    assert caught.value.reason == "field_count"


def test_header_names_cannot_force_an_ambiguous_shape() -> None:
    """Nested header names that match another shape's keys lose to the top level."""
    record = (
        b'{"@timestamp":"2021-12-10T14:25:38Z","ecs":{"version":"8"},"url":{"original":"/"},'
        b'"http":{"request":{"headers":{"RayID":"1","ClientIP":"x","source_type":"y",'
        b'"httpRequest":"z","log":"w"}}}}'
    )
    router = FormatRouter()

    claims = [k for k in REGISTRY if router.parser(k).looks_like(record)]
    parser, ambiguous = router.choose(record)

    assert len(claims) > 1
    assert (parser.name, ambiguous) == ("ecs", False)
