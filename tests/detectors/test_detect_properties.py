"""Property tests: generated obfuscations are recovered exactly, pass the prefilter."""

from __future__ import annotations

import json
import random

from tests.detectors.detect_gen import obfuscated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import analyze, analyze_fields, find_candidates, may_contain_lookup
from pipeline.formats.combined import CombinedParser
from pipeline.formats.ecs import EcsParser

_FIELDS = {
    (): "user_agent.original",
    ("url",): "url.original",
    ("url", "url"): "url.original",
    ("url", "url", "url"): "url.original",
    ("html-entity",): "http.request.body.content",
    ("unicode-escape",): "http.request.body.content",
    ("hex-escape",): "http.request.headers.x-api-version",
    ("base64",): "http.request.headers.authorization",
}
PREFIX = '192.0.2.1 - - [10/Dec/2021:14:25:38 +0000] "GET / HTTP/1.1" 200 5 "-" '
_SETTINGS = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])


def apache_line(value: str) -> bytes:
    """A combined-log line with ``value`` as the user agent, quoted as Apache does."""
    quoted = value.replace("\\", "\\\\").replace('"', '\\"')
    return (f'{PREFIX}"{quoted}"').encode()


def nginx_line(value: str) -> bytes:
    """The line as nginx's escape=default writes it: \\xHH for quote, backslash, etc."""
    out = []
    for byte in value.encode("utf-8"):
        if byte in b'"\\' or byte < 0x20 or byte > 0x7E:
            out.append(f"\\x{byte:02X}")
        else:
            out.append(chr(byte))
    quoted = "".join(out)
    return (f'{PREFIX}"{quoted}"').encode()


def json_line(field: str, value: str, ascii_only: bool) -> bytes:
    return json.dumps(
        {"source.ip": "192.0.2.1", field: value}, ensure_ascii=ascii_only
    ).encode()


@_SETTINGS
@given(st.randoms(use_true_random=False))
def test_generated_obfuscation_is_recovered_with_the_exact_url(
    rng: random.Random,
) -> None:
    case = obfuscated(rng)
    verdict = analyze(case.value, _FIELDS[case.decodings])

    assert verdict.malicious, case
    urls = [lookup.url for lookup in verdict.lookups]
    assert case.url in urls, (case, urls)
    lookup = verdict.lookups[urls.index(case.url)]
    assert lookup.decodings == case.decodings
    assert set(case.techniques) <= set(lookup.techniques), case


@_SETTINGS
@given(st.randoms(use_true_random=False))
def test_generated_payload_in_any_log_encoding_passes_the_prefilter(
    rng: random.Random,
) -> None:
    case = obfuscated(rng)
    field = _FIELDS[case.decodings]
    lines = [
        apache_line(case.value),
        nginx_line(case.value),
        json_line(field, case.value, True),
        json_line(field, case.value, False),
    ]

    for line in lines:
        assert may_contain_lookup(line), line
    padded = [b"GET /index.html HTTP/1.1", *lines, b"GET /favicon.ico HTTP/1.1"]
    assert find_candidates(b"\n".join(padded)) == [1, 2, 3, 4]


# Pieces of escapes and lookups: random strings over them exercise every decoder.
_PIECES = st.sampled_from(
    [
        "$",
        "{",
        "}",
        "%",
        "2",
        "4",
        "5",
        "7",
        "B",
        "b",
        "u",
        "0",
        "x",
        "\\",
        "&",
        "#",
        ";",
        "3",
        "6",
        "1",
        "dollar",
        "lbrace",
        "amp",
        "jndi:",
        "ldap://example.com/a",
        "::-",
        "${",
        "%24",
        "%7B",
        "%25",
        "%u0024",
        "\\u0024",
        "\\x24",
        "&#36;",
        "&#x7b;",
        "&dollar;",
        "lower:",
        "j",
        "n",
        "d",
        "i",
        ":",
        "-",
        "/",
        "Basic ",
        "JHtqbmRp",
    ]
)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, min_size=1, max_size=24).map("".join))
def test_prefilter_never_rejects_a_value_the_engine_flags(value: str) -> None:
    verdict = analyze(value, "http.request.body.content")

    if verdict.malicious or verdict.inert:
        assert may_contain_lookup(value.encode("utf-8")), value


@settings(max_examples=500)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=12).map("".join))
def test_find_candidates_agrees_with_may_contain_lookup_line_by_line(text: str) -> None:
    lines = [line.encode("utf-8", "surrogatepass") for line in text.split("\n")] + [
        b"plain line",
        b"${jndi:x}",
    ]
    buffer = b"\n".join(lines)

    assert find_candidates(buffer) == [
        i for i, line in enumerate(lines) if may_contain_lookup(line)
    ]


@_SETTINGS
@given(st.randoms(use_true_random=False))
def test_parsed_generated_record_is_flagged_and_its_raw_line_passes_the_prefilter(
    rng: random.Random,
) -> None:
    case = obfuscated(rng)
    ecs = json.dumps(
        {
            "@timestamp": "2021-12-10T14:25:38Z",
            "source": {"ip": "192.0.2.1"},
            "url": {"original": "/"},
            "user_agent": {"original": case.value},
        }
    ).encode()
    records = [
        (apache_line(case.value), CombinedParser()),
        (nginx_line(case.value), CombinedParser()),
        (ecs, EcsParser()),
    ]

    for raw, parser in records:
        verdict = analyze_fields(parser.parse(raw).fields())
        assert verdict.malicious, (raw, case)
        assert case.url in [x.url for f in verdict.fields for x in f.lookups]
        assert may_contain_lookup(raw)
