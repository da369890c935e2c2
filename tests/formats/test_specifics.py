"""Format quirks: escapes, envelopes, captures, part boundaries, non-request records."""

from __future__ import annotations

import pytest

from pipeline.errors import PoisonRecord
from pipeline.formats import FormatRouter
from pipeline.formats.logformat import compile_apache, compile_nginx
from pipeline.formats.settings import FormatSettings

from .conftest import PAYLOAD

ROUTER = FormatRouter()
CLF = b'203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] "GET / HTTP/1.1" 200 5 "-" '


def test_nginx_default_escapes_are_undone() -> None:
    """nginx writes ``"`` as ``\\x22`` and bytes >= 0x7f as ``\\xHH``."""
    request = ROUTER.parser("combined").parse(
        CLF + rb'"a\x22${jndi:ldap://x}\x22 \xC3\xA9"'
    )

    assert request is not None
    assert request.user_agent == 'a"${jndi:ldap://x}" é'


def test_apache_backslash_escapes_are_undone() -> None:
    request = ROUTER.parser("combined").parse(CLF + rb'"a\"b\\c"')

    assert request is not None
    assert request.user_agent == 'a"b\\c'


def test_nginx_main_forwarded_for_field_becomes_the_chain() -> None:
    request = ROUTER.parser("combined").parse(
        CLF + b'"curl/8" "198.51.100.1, 10.0.0.7"'
    )

    assert request is not None
    assert request.forwarded_for == ("198.51.100.1", "10.0.0.7")


def test_common_log_format_without_referer_and_agent_parses() -> None:
    request = ROUTER.parser("common").parse(
        b"203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "
        b'"GET /apache_pb.gif HTTP/1.0" 200 2326'
    )

    assert request is not None
    assert (request.uri, request.user_agent, request.ecs_fields) == (
        "/apache_pb.gif",
        None,
        (("user.name", "frank"),),
    )


def test_nginx_json_escapes_are_undone() -> None:
    settings = FormatSettings(
        nginx={
            "j": """log_format j escape=json '{"ua":"$http_user_agent","t":"$msec"}';"""
        }
    )
    parser = FormatRouter(settings=settings).parser("j")
    request = parser.parse(
        b'{"ua":"\\u0024{jndi:ldap://x}\\"\\\\","t":"1639146338.123"}'
    )

    assert request is not None
    assert request.user_agent == '${jndi:ldap://x}"\\'
    assert request.timestamp == pytest.approx(1639146338.123)


def test_apache_time_pattern_uses_the_configured_zone() -> None:
    settings = FormatSettings(
        apache={"x": 'LogFormat "%h %{%Y-%m-%d %H:%M:%S}t \\"%r\\"" x'},
        timezone="Europe/Berlin",
    )
    request = (
        FormatRouter(settings=settings)
        .parser("x")
        .parse(b'203.0.113.9 2021-12-10 15:25:38 "GET / HTTP/1.1"')
    )

    assert request is not None
    assert request.timestamp == 1639146338.0


def test_compiled_formats_map_variables_to_fields() -> None:
    nginx = compile_nginx(
        "$remote_addr $http_x_api_version $cookie_sid $upstream_addr $foo"
    )
    apache = compile_apache("%a %{X-Api-Version}i %{sid}C %D %>s")

    assert [s.role for s in nginx.slots] == [
        "peer",
        "header",
        "cookie",
        "skip",
        "extra",
    ]
    assert [s.role for s in apache.slots] == [
        "peer",
        "header",
        "cookie",
        "skip",
        "status",
    ]


def test_iis_plus_stands_for_space_in_headers_but_not_in_the_query() -> None:
    parser = FormatRouter().parser("iis")
    parser.parse(
        b"#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query cs(User-Agent)"
    )
    request = parser.parse(
        b"2021-12-10 14:25:38 203.0.113.9 GET /a q=1+2 Mozilla/5.0+(X11)"
    )

    assert request is not None
    assert (request.uri, request.user_agent) == ("/a?q=1+2", "Mozilla/5.0 (X11)")


def test_zeek_hex_escapes_are_undone() -> None:
    parser = FormatRouter().parser("zeek_tsv")
    parser.parse(b"#fields\tts\tid.orig_h\tuser_agent")
    request = parser.parse(b"1639146338.1\t203.0.113.9\ta\\x09b\\x24{jndi}")

    assert request is not None
    assert request.user_agent == "a\tb${jndi}"


def test_zeek_separator_directive_changes_the_split() -> None:
    parser = FormatRouter().parser("zeek_tsv")
    parser.parse(b"#separator \\x7c")
    parser.parse(b"#fields|ts|id.orig_h|uri")
    request = parser.parse(b"1639146338.1|203.0.113.9|/x")

    assert request is not None
    assert request.uri == "/x"


def test_haproxy_single_capture_group_without_names_is_still_scanned() -> None:
    line = (
        b"203.0.113.9:54321 [10/Dec/2021:14:25:38.123] fe be/s1 0/0/1/3/4 200 512 - - "
        b'---- 1/1/0/0/0 0/0 {#24#7Bjndi:ldap://x#7D} "GET / HTTP/1.1"'
    )
    request = ROUTER.parser("haproxy").parse(line)

    assert request is not None
    assert ("log.extra.capture.0", "${jndi:ldap://x}") in list(request.fields())


def test_haproxy_request_line_cut_by_its_length_limit_is_read() -> None:
    line = (
        b"203.0.113.9:54321 [10/Dec/2021:14:25:38.123] fe be/s1 0/0/1/3/4 200 512 - - "
        b'---- 1/1/0/0/0 0/0 "GET /?q=${jndi:ldap://x}'
    )
    request = ROUTER.parser("haproxy").parse(line)

    assert request is not None
    assert request.uri == "/?q=${jndi:ldap://x}"


def test_envoy_logs_no_peer_so_the_chain_alone_never_names_a_client() -> None:
    line = (
        b'[2021-12-10T14:25:38.123Z] "GET / HTTP/1.1" 200 - 0 512 4 3 "203.0.113.9" '
        b'"curl/8" "id-1" "www.example.com" "10.0.0.5:8080"'
    )
    request = ROUTER.parser("envoy").parse(line)

    assert request is not None
    assert (request.peer_ip, request.client_ip, request.forwarded_for) == (
        None,
        None,
        ("203.0.113.9",),
    )


MODSEC = b"""--5a9c3e71-A--
[10/Dec/2021:14:25:38 +0000] YbNhIn8AAQEAAB4wXgcAAAAB 203.0.113.9 54321 192.0.2.10 80
--5a9c3e71-B--
POST /login HTTP/1.1
Host: www.example.com
X-Long: first
 folded ${jndi:ldap://x}

--5a9c3e71-C--
a=1
--deadbeef-Z--
b=2
--5a9c3e71-Z--
"""


def test_modsec_folded_headers_and_forged_boundaries_in_the_body() -> None:
    """A boundary line with another entry id is body text, not the end of the entry."""
    request = ROUTER.parser("modsec").parse(MODSEC)

    assert request is not None
    assert ("x-long", "first folded ${jndi:ldap://x}") in request.headers
    assert request.body == "a=1\n--deadbeef-Z--\nb=2"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (MODSEC.replace(b"--5a9c3e71-Z--\n", b""), "truncated"),
        (MODSEC.replace(b"--5a9c3e71-B--", b"--5a9c3e71-D--"), "no_request_headers"),
        (b"junk\n" + MODSEC, "not_modsec_audit"),
        (MODSEC.replace(b"[10/Dec/2021:14:25:38 +0000]", b"[garbage]"), "bad_part_a"),
    ],
)
def test_broken_modsec_entries_are_poison(record: bytes, reason: str) -> None:
    with pytest.raises(PoisonRecord) as caught:
        ROUTER.parser("modsec").parse(record)

    assert caught.value.reason == reason


def test_suricata_non_http_events_are_well_formed_non_requests() -> None:
    flow = (
        b'{"timestamp":"2021-12-10T14:25:38.1+0000","event_type":"flow",'
        b'"src_ip":"203.0.113.9","flow":{}}'
    )

    assert ROUTER.parse(flow) is None
    with pytest.raises(PoisonRecord):
        ROUTER.parser("suricata").parse(b'{"event_type":"http","src_ip":"203.0.113.9"}')


def test_envelope_line_is_parsed_with_the_configured_inner_format() -> None:
    settings = FormatSettings(
        inner="edge",
        nginx={"edge": '$remote_addr [$time_local] "$request" "$http_x_api_version"'},
    )
    record = (
        b'{"source_type":"file","timestamp":"2021-12-10T14:25:40Z","message":'
        b'"203.0.113.9 [10/Dec/2021:14:25:38 +0000] \\"GET / HTTP/1.1\\" \\"'
        + PAYLOAD.encode()
        + b'\\""}'
    )
    request = FormatRouter(settings=settings).parser("vector").parse(record)

    assert request is not None
    assert request.format == "vector"
    assert request.timestamp == 1639146338.0
    assert ("http.request.headers.x-api-version", PAYLOAD) in list(request.fields())


def test_envelope_without_a_request_line_is_poison() -> None:
    record = b'{"source_type":"file","message":"kernel: eth0 link up"}'

    with pytest.raises(PoisonRecord):
        ROUTER.parser("vector").parse(record)


def test_azure_front_door_client_ip_is_a_forwarded_hop_not_the_peer() -> None:
    record = (
        b'{"time":"2021-12-10T14:25:38Z","category":"FrontDoorAccessLog","properties":'
        b'{"clientIp":"198.51.100.20","socketIp":"203.0.113.9","requestUri":"https://www.example.com/"}}'
    )
    request = ROUTER.parser("azure").parse(record)

    assert request is not None
    assert (request.peer_ip, request.forwarded_for) == (
        "203.0.113.9",
        ("198.51.100.20",),
    )


def test_ecs_header_lists_and_dotted_keys() -> None:
    record = (
        b'{"@timestamp":"2021-12-10T14:25:38Z","source.ip":"203.0.113.9","url.original":"/",'
        b'"http.request.headers":{"X-Api-Version":["1","' + PAYLOAD.encode() + b'"]}}'
    )
    request = ROUTER.parse(record)

    assert request is not None
    assert request.headers == (("x-api-version", "1"), ("x-api-version", PAYLOAD))


def test_wrong_type_for_a_text_field_is_poison_with_the_field_named() -> None:
    with pytest.raises(PoisonRecord) as caught:
        ROUTER.parser("traefik").parse(
            b'{"RequestPath":{"a":1},"ClientHost":"203.0.113.9"}'
        )

    assert caught.value.reason == "bad_field_type"
    assert "RequestPath" in caught.value.detail
