"""Client address, forwarding headers, request lines: the helpers every parser uses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.formats.base import (
    TrustedProxies,
    forwarded_chain,
    host_of_url,
    make_request,
    split_forwarded,
    split_forwarded_for,
    split_request,
    valid_ip,
)

PROXIES = TrustedProxies(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        (" 203.0.113.9 ", "203.0.113.9"),
        ("203.0.113.9:4711", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("unknown", None),
        ("_hidden", None),
        ("www.example.com", None),
        ("[2001:db8::1", None),
        ("", None),
        (None, None),
        ("1" * 500, None),
    ],
)
def test_valid_ip_canonicalizes_what_logs_carry(
    value: str | None, expected: str | None
) -> None:
    assert valid_ip(value) == expected


def test_untrusted_peer_is_the_client_whatever_the_chain_says() -> None:
    assert PROXIES.client("203.0.113.9", ["198.51.100.1"]) == "203.0.113.9"


def test_without_configured_proxies_the_peer_is_the_client() -> None:
    assert TrustedProxies().client("10.0.0.5", ["203.0.113.9"]) == "10.0.0.5"


def test_trusted_peer_yields_the_right_most_untrusted_hop() -> None:
    chain = ["198.51.100.1", "203.0.113.9", "10.0.0.7", "10.0.0.6"]

    assert PROXIES.client("10.0.0.5", chain) == "203.0.113.9"


def test_spoofed_left_hops_are_ignored() -> None:
    """The client may prepend any address; only the hop our proxy saw counts."""
    assert PROXIES.client("10.0.0.5", ["192.0.2.66", "203.0.113.9"]) == "203.0.113.9"


@pytest.mark.parametrize("hop", ["unknown", "_hidden", "garbage", "", "999.1.1.1"])
def test_unusable_right_most_untrusted_hop_gives_no_client(hop: str) -> None:
    """Naming the proxy instead would block the operator's own address."""
    assert PROXIES.client("10.0.0.5", ["203.0.113.9", hop, "10.0.0.7"]) is None


def test_ipv6_hops_with_brackets_and_ports() -> None:
    chain = ["[2001:db8::1]:4711", "[2001:db8:ffff::2]:443"]

    assert PROXIES.client("2001:db8:ffff::3", chain) == "2001:db8::1"


def test_ipv4_mapped_peer_is_matched_as_ipv4() -> None:
    assert PROXIES.client("::ffff:10.0.0.5", ["203.0.113.9"]) == "203.0.113.9"


def test_chain_of_only_trusted_hops_yields_the_left_most() -> None:
    assert PROXIES.client("10.0.0.5", ["10.0.0.9", "10.0.0.8"]) == "10.0.0.9"


def test_trusted_peer_that_names_no_client_gives_no_client() -> None:
    # Naming the proxy would put the operator's own infrastructure on the list.
    assert PROXIES.client("10.0.0.5", []) is None


def test_garbage_peer_gives_no_client() -> None:
    assert PROXIES.client("not-an-ip", ["203.0.113.9"]) is None


def test_forwarded_header_hops_are_unquoted() -> None:
    value = (
        'for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711", '
        'for=unknown, for=_hidden;host="a,b"'
    )

    assert split_forwarded(value) == [
        "192.0.2.60",
        "[2001:db8:cafe::17]:4711",
        "unknown",
        "_hidden",
    ]


def test_forwarded_for_hops_are_split_and_trimmed() -> None:
    assert split_forwarded_for(" 203.0.113.9 ,198.51.100.1,, ") == [
        "203.0.113.9",
        "198.51.100.1",
    ]


def test_x_forwarded_for_wins_over_forwarded_and_repeats_concatenate() -> None:
    headers = [
        ("forwarded", "for=192.0.2.1"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "198.51.100.1, 10.0.0.7"),
    ]

    assert forwarded_chain(headers) == ("203.0.113.9", "198.51.100.1", "10.0.0.7")
    assert forwarded_chain(headers[:1]) == ("192.0.2.1",)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /a HTTP/1.1", ("GET", "/a", "HTTP/1.1")),
        ("GET /a b HTTP/1.1", ("GET", "/a b", "HTTP/1.1")),
        ("GET /a", ("GET", "/a", None)),
        ("\x16\x03\x01\x02", (None, "\x16\x03\x01\x02", None)),
        ("-", (None, None, None)),
        ("", (None, None, None)),
    ],
)
def test_request_lines_split_or_stay_whole(
    line: str, expected: tuple[str | None, ...]
) -> None:
    assert split_request(line) == expected


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://www.example.com:80/x", "www.example.com"),
        ("https://user@www.example.com/", "www.example.com"),
        ("http://[2001:db8::1]:8080/", "[2001:db8::1]"),
        ("/relative", None),
        (None, None),
    ],
)
def test_host_of_url(url: str | None, host: str | None) -> None:
    assert host_of_url(url) == host


def test_headers_with_their_own_field_are_yielded_once() -> None:
    request = make_request(
        "t",
        headers=[("user-agent", "ua"), ("referer", "r"), ("host", "h"), ("x-api", "x")],
    )

    assert list(request.fields()) == [
        ("user_agent.original", "ua"),
        ("http.request.referrer", "r"),
        ("url.domain", "h"),
        ("http.request.headers.x-api", "x"),
    ]
    assert request.client_ip is None


def _reference(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


@given(
    st.one_of(
        st.ip_addresses().map(str),
        st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,4}){2,4}\Z"),
        st.text(alphabet="0123456789.:abcdef", max_size=20),
    )
)
def test_valid_ip_agrees_with_the_standard_library(value: str) -> None:
    """The IPv4 fast path never accepts what ipaddress rejects, nor the reverse."""
    if value.count(":") == 1 or value.startswith("["):
        return
    assert valid_ip(value) == _reference(value.strip())
