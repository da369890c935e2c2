"""Optional enrichers: external reputation (local server) and forward-confirmed rDNS."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from enrichers.rdns import ForwardConfirmedReverseDns, NoReverseDns
from enrichers.reputation import AbuseIpDbReputation, NoReputation
from pipeline.errors import EnricherUnavailable
from tests.enrichers.conftest import LocalServer, Route

ANSWER = b'{"data": {"ipAddress": "192.0.2.7", "abuseConfidenceScore": 87}}'


def test_reputation_is_read_sent_with_the_key_and_cached(
    http_server: LocalServer,
) -> None:
    http_server.routes["/api/v2/check"] = Route(body=ANSWER)
    rep = AbuseIpDbReputation("k-1", base_url=http_server.url, backoff=0.01)

    assert rep.score("192.0.2.7") == 87.0
    assert rep.score("192.0.2.7") == 87.0

    assert len(http_server.requests) == 1
    path, headers = http_server.requests[0]
    assert path == "/api/v2/check?ipAddress=192.0.2.7&maxAgeInDays=90"
    assert headers["key"] == "k-1"


def test_reputation_beyond_the_rate_budget_is_skipped(http_server: LocalServer) -> None:
    http_server.routes["/api/v2/check"] = Route(body=ANSWER)
    rep = AbuseIpDbReputation("k", base_url=http_server.url, per_minute=2)

    scores = [rep.score(f"192.0.2.{i}") for i in range(1, 5)]

    assert scores == [87.0, 87.0, None, None]
    assert (rep.requests, rep.rate_limited) == (2, 2)


def test_reputation_failure_retries_then_degrades(http_server: LocalServer) -> None:
    http_server.routes["/api/v2/check"] = Route(status=500, body=b"oops")
    rep = AbuseIpDbReputation("k", base_url=http_server.url, attempts=3, backoff=0.01)

    with pytest.raises(EnricherUnavailable, match="HTTP 500"):
        rep.score("192.0.2.7")

    assert len(http_server.requests) == 3


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(status=401, body=b"{}"), "HTTP 401"),
        (Route(body=b"not json"), "without a score"),
        (Route(body=b'{"data": {"abuseConfidenceScore": "high"}}'), "non-numeric"),
    ],
)
def test_reputation_bad_answers_are_unavailable(
    http_server: LocalServer, route: Route, message: str
) -> None:
    http_server.routes["/api/v2/check"] = route
    rep = AbuseIpDbReputation("k", base_url=http_server.url, attempts=1)

    with pytest.raises(EnricherUnavailable, match=message):
        rep.score("192.0.2.7")


def test_reputation_offline_is_unavailable() -> None:
    rep = AbuseIpDbReputation("k", base_url="http://127.0.0.1:9", attempts=1, timeout=2)

    with pytest.raises(EnricherUnavailable, match="reputation service failed"):
        rep.score("192.0.2.7")


def test_defaults_do_no_lookups() -> None:
    assert NoReputation().score("192.0.2.7") is None
    assert NoReverseDns().name_of("192.0.2.7") is None


def _fakes(ptr: dict[str, str], forward: dict[str, list[str]]) -> dict[str, Any]:
    calls: list[str] = []

    def gethostbyaddr(ip: str) -> tuple[str, list[str], list[str]]:
        calls.append(ip)
        if ip not in ptr:
            raise socket.herror(1, "Unknown host")
        return ptr[ip], [], [ip]

    def getaddrinfo(name: str, port: object) -> list[tuple[Any, ...]]:
        calls.append(name)
        if name not in forward:
            raise socket.gaierror(-2, "Name or service not known")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in forward[name]
        ]

    return {"gethostbyaddr": gethostbyaddr, "getaddrinfo": getaddrinfo, "calls": calls}


def test_confirmed_reverse_name_is_returned_and_cached() -> None:
    fakes = _fakes(
        {"192.0.2.9": "Scan-1.Example.TEST."}, {"Scan-1.Example.TEST.": ["192.0.2.9"]}
    )
    calls = fakes.pop("calls")
    rdns = ForwardConfirmedReverseDns(**fakes)

    assert rdns.name_of("192.0.2.9") == "scan-1.example.test"
    assert rdns.name_of("192.0.2.9") == "scan-1.example.test"
    assert calls == ["192.0.2.9", "Scan-1.Example.TEST."]
    rdns.close()


def test_reverse_name_that_does_not_resolve_back_is_ignored() -> None:
    fakes = _fakes(
        {"192.0.2.9": "census1.shodan.test"}, {"census1.shodan.test": ["198.51.100.1"]}
    )
    fakes.pop("calls")
    rdns = ForwardConfirmedReverseDns(**fakes)

    assert rdns.name_of("192.0.2.9") is None
    assert rdns.name_of("192.0.2.10") is None
    rdns.close()


def test_slow_resolver_times_out_to_none() -> None:
    release = threading.Event()

    def slow(ip: str) -> tuple[str, list[str], list[str]]:
        release.wait(5)
        return "x.example.test", [], [ip]

    rdns = ForwardConfirmedReverseDns(timeout=0.05, gethostbyaddr=slow)

    assert rdns.name_of("192.0.2.9") is None
    release.set()
    rdns.close()
