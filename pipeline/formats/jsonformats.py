"""The JSON shapes SOCs ship: shippers, CDNs, cloud balancers, proxies and sensors.

Each class is a :class:`JsonMapping` plus the marker keys that identify the
shape cheaply; field names follow each vendor's published schema (cited per
class).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import forwarded_chain, valid_ip
from pipeline.formats.jsonmap import JsonMapping, JsonParser, as_text, lookup, text_of


class EcsParser(JsonParser):
    """Elastic Common Schema JSON, as Filebeat and Elastic Agent write it.

    Reads the ECS fields of the nginx and apache modules (``source.address``,
    ``url.original``, ``user_agent.original``, ``http.request.referrer``...),
    ``http.request.headers`` when a shipper adds them, and, for events shipped
    before an ingest pipeline ran, the raw line in ``message`` or
    ``event.original``. Spec: https://www.elastic.co/guide/en/ecs/current/

    Example:
        >>> EcsParser().parse(b'{"@timestamp": "2021-12-10T14:25:38Z", '
        ...     b'"source": {"ip": "203.0.113.9"}, "url": {"original": "/"}}').uri
        '/'
    """

    name = "ecs"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["@timestamp"],
        peer=["source.ip", "source.address", "client.ip", "client.address"],
        forwarded_for=["nginx.access.remote_ip_list", "apache.access.remote_ip_list"],
        method=["http.request.method"],
        host=["url.domain", "destination.domain"],
        uri=["url.original"],
        path=["url.path"],
        query=["url.query"],
        protocol=["http.version"],
        user_agent=["user_agent.original"],
        referer=["http.request.referrer"],
        body=["http.request.body.content"],
        status=["http.response.status_code"],
        bytes_sent=["http.response.body.bytes"],
        headers=["http.request.headers"],
        ecs={"user.name": ["user.name"]},
        message=["message", "event.original"],
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("ecs",),
        ("ecs.version",),
        ("@timestamp", "url"),
        ("@timestamp", "url.original"),
        ("@timestamp", "source"),
        ("@timestamp", "source.ip"),
    )


class VectorParser(JsonParser):
    """Vector events: a file/syslog/kafka envelope with the raw line in ``message``,
    or the fields of ``parse_nginx_log``/``parse_apache_log``/``parse_common_log``.

    Spec: https://vector.dev/docs/reference/vrl/functions/#parse_nginx_log and
    #parse_apache_log (``client``/``host``, ``user``, ``timestamp``, ``request`` or
    ``method``+``path``+``protocol``, ``status``, ``size``, ``referer``/
    ``referrer``, ``agent``). The envelope's ``host`` is the shipping machine,
    so the request host is never read from it.
    """

    name = "vector"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["timestamp"],
        peer=["client", "host"],
        forwarded_for=["http_x_forwarded_for", "x_forwarded_for"],
        header_fields={"x-forwarded-for": ["http_x_forwarded_for", "x_forwarded_for"]},
        method=["method"],
        uri=["path"],
        request_line=["request"],
        protocol=["protocol"],
        user_agent=["agent"],
        referer=["referer", "referrer"],
        status=["status"],
        bytes_sent=["size"],
        ecs={"user.name": ["user"]},
        message=["message"],
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("source_type",),
        ("agent", "request", "status", "client"),
    )


class FluentBitParser(JsonParser):
    """Fluent Bit records: the raw line in ``log`` (tail, Docker), or the fields
    of its stock ``apache2``/``nginx`` parsers (``remote``/``host``, ``user``,
    ``method``, ``path``, ``code``, ``size``, ``referer``, ``agent``).

    The event time is the output's time key (``@timestamp`` for the Kafka output,
    ``date`` for others; epoch or ISO). Spec:
    https://docs.fluentbit.io/manual/pipeline/parsers/configuring-parser and
    https://github.com/fluent/fluent-bit/blob/master/conf/parsers.conf
    """

    name = "fluentbit"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["@timestamp", "date", "time", "timestamp"],
        peer=["remote", "host"],
        forwarded_for=["http_x_forwarded_for"],
        header_fields={"x-forwarded-for": ["http_x_forwarded_for"]},
        method=["method"],
        uri=["path"],
        user_agent=["agent"],
        referer=["referer"],
        status=["code"],
        bytes_sent=["size"],
        ecs={"user.name": ["user"]},
        message=["log"],
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("log=str",),
        ("code", "path", "method", "agent"),
    )


class CloudflareParser(JsonParser):
    """Cloudflare Logpush ``http_requests`` JSON, with ``RequestHeaders`` and
    ``Cookies`` when the job's custom fields include them.

    ``ClientIP`` is the visitor's address as Cloudflare's edge saw it, so it is
    the peer. ``EdgeStartTimestamp`` may be RFC 3339, Unix seconds or Unix nanos
    (the job's ``timestamp_format``). Spec:
    https://developers.cloudflare.com/logs/reference/log-fields/zone/http_requests/
    """

    name = "cloudflare"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["EdgeStartTimestamp", "EdgeEndTimestamp"],
        peer=["ClientIP"],
        method=["ClientRequestMethod"],
        host=["ClientRequestHost"],
        uri=["ClientRequestURI"],
        path=["ClientRequestPath"],
        protocol=["ClientRequestProtocol"],
        user_agent=["ClientRequestUserAgent"],
        referer=["ClientRequestReferer"],
        status=["EdgeResponseStatus"],
        bytes_sent=["EdgeResponseBytes"],
        headers=["RequestHeaders"],
        header_fields={"x-requested-with": ["ClientXRequestedWith"]},
        cookies=["Cookies"],
        ecs={"tls.client.server_name": ["ClientSSLServerName"]},
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("ClientRequestURI",),
        ("ClientRequestHost",),
        ("RayID", "ClientIP"),
    )


class GcpLoadBalancerParser(JsonParser):
    """Google Cloud HTTP(S) load balancer request logs (a Cloud Logging LogEntry).

    The ``httpRequest`` object carries the request; ``remoteIp`` is the client
    as the balancer's front end saw it. Spec:
    https://cloud.google.com/load-balancing/docs/https/https-logging-monitoring
    and https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry#HttpRequest
    """

    name = "gcp_lb"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["timestamp", "receiveTimestamp"],
        peer=["httpRequest.remoteIp"],
        method=["httpRequest.requestMethod"],
        uri=["httpRequest.requestUrl"],
        protocol=["httpRequest.protocol"],
        user_agent=["httpRequest.userAgent"],
        referer=["httpRequest.referer"],
        status=["httpRequest.status"],
        bytes_sent=["httpRequest.responseSize"],
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (("httpRequest",),)


class AzureParser(JsonParser):
    """Azure Front Door (``FrontDoorAccessLog``, Standard/Premium and classic) and
    Application Gateway (``ApplicationGatewayAccessLog``) diagnostic records.

    Front Door's ``clientIp`` may come from the client's X-Forwarded-For, so it
    is recorded as the forwarded chain and ``socketIp`` (the TCP peer) as the
    peer; Application Gateway's ``clientIP`` is its TCP peer. Spec:
    https://learn.microsoft.com/azure/frontdoor/monitor-front-door#access-log and
    https://learn.microsoft.com/azure/application-gateway/monitor-application-gateway-reference#access-log-category
    """

    name = "azure"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["time", "timeStamp", "TimeGenerated"],
        peer=["properties.socketIp", "properties.clientIP", "properties.clientIp"],
        method=["properties.httpMethod"],
        host=["properties.hostName", "properties.host", "properties.originalHost"],
        uri=["properties.originalRequestUriWithArgs", "properties.requestUri"],
        query=["properties.requestQuery"],
        protocol=["properties.httpVersion", "properties.requestProtocol"],
        user_agent=["properties.userAgent"],
        referer=["properties.referer", "properties.referrer"],
        status=["properties.httpStatusCode", "properties.httpStatus"],
        bytes_sent=["properties.responseBytes", "properties.sentBytes"],
        ecs={"tls.client.server_name": ["properties.sni"]},
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("properties", "category~FrontDoorAccessLog"),
        ("properties", "category~FrontdoorAccessLog"),
        ("properties", "category~ApplicationGatewayAccess"),
    )

    def from_document(self, doc: dict[str, Any]) -> HttpRequest | None:
        request = self.mapped(doc, self.mapping)
        socket = text_of(doc, ["properties.socketIp"])
        client = text_of(doc, ["properties.clientIp"])
        if request is None or not socket or not client or valid_ip(client) is None:
            return request
        return msgspec.structs.replace(request, forwarded_for=(client,))


class TraefikParser(JsonParser):
    """Traefik JSON access log, with request headers kept as ``request_<Name>``.

    Spec: https://doc.traefik.io/traefik/observability/access-logs/ (fields
    ``ClientHost``, ``RequestMethod``, ``RequestHost``, ``RequestPath``,
    ``RequestProtocol``, ``DownstreamStatus``, ``DownstreamContentSize``,
    ``StartUTC``, headers with ``fields.headers.defaultmode = keep``).
    """

    name = "traefik"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["StartUTC", "time", "StartLocal"],
        peer=["ClientHost", "ClientAddr"],
        method=["RequestMethod"],
        host=["RequestHost"],
        uri=["RequestPath"],
        protocol=["RequestProtocol"],
        status=["DownstreamStatus", "OriginStatus"],
        bytes_sent=["DownstreamContentSize"],
        header_prefixes=["request_"],
        ecs={"user.name": ["ClientUsername"]},
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("RequestPath", "ClientAddr"),
        ("RequestPath", "ClientHost"),
    )


class ZeekJsonParser(JsonParser):
    """Zeek ``http.log`` as JSON, with dotted (``id.orig_h``) or underscore
    (``id_orig_h``, json-streaming-logs) keys.

    Carries the request line, Host, User-Agent, Referer, Origin, the Basic-auth
    user name and password, and in ``proxied`` the forwarding headers Zeek saw
    (``X-FORWARDED-FOR -> 203.0.113.9``). Spec:
    https://docs.zeek.org/en/master/scripts/base/protocols/http/main.zeek.html
    """

    name = "zeek_json"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["ts"],
        peer=["id.orig_h", "id_orig_h"],
        method=["method"],
        host=["host"],
        uri=["uri"],
        protocol=["version"],
        user_agent=["user_agent"],
        referer=["referrer"],
        body=["post_body"],
        status=["status_code"],
        bytes_sent=["response_body_len"],
        header_fields={"origin": ["origin"], "cookie": ["cookie"]},
        ecs={"user.name": ["username"]},
        extra={"password": ["password"]},
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("id.orig_h", "trans_depth"),
        ("id_orig_h", "trans_depth"),
    )

    def from_document(self, doc: dict[str, Any]) -> HttpRequest | None:
        request = self.mapped(doc, self.mapping)
        proxied = lookup(doc, "proxied")
        if request is None or not proxied:
            return request
        if not isinstance(proxied, list):
            raise PoisonRecord("bad_field_type", "proxied is not a list")

        pairs = proxied_headers(as_text(p, "proxied") or "" for p in proxied)
        return rebuild_with_headers(request, pairs)


def proxied_headers(values: Any) -> list[tuple[str, str]]:
    """Header pairs from Zeek's ``proxied`` entries (``NAME -> value``)."""
    pairs = []
    for entry in values:
        name, sep, value = entry.partition(" -> ")
        if sep:
            pairs.append((name.strip().lower(), value.strip()))
    return pairs


def rebuild_with_headers(
    request: HttpRequest, pairs: list[tuple[str, str]]
) -> HttpRequest:
    """``request`` with more headers, and the forwarded chain they imply."""
    headers = (*request.headers, *pairs)
    chain = request.forwarded_for or forwarded_chain(headers)
    return msgspec.structs.replace(request, headers=headers, forwarded_for=tuple(chain))


class SuricataParser(JsonParser):
    """Suricata EVE JSON ``http`` events, with ``request_headers`` when
    ``dump-all-headers`` is on and the printable body when enabled.

    Other EVE event types (flow, dns, tls, stats...) in the same stream are
    well-formed non-request records: ``parse`` returns None for them. ``xff``
    is present when ``xff.mode`` is ``extra-data``. Spec:
    https://docs.suricata.io/en/latest/output/eve/eve-json-format.html#event-type-http
    """

    name = "suricata"
    mapping: ClassVar[JsonMapping] = JsonMapping(
        timestamp=["timestamp"],
        peer=["src_ip"],
        forwarded_for=["http.xff"],
        method=["http.http_method"],
        host=["http.hostname"],
        uri=["http.url"],
        protocol=["http.protocol"],
        user_agent=["http.http_user_agent"],
        referer=["http.http_refer"],
        body=["http.http_request_body_printable"],
        status=["http.status"],
        bytes_sent=["http.length"],
        headers=["http.request_headers"],
        header_fields={
            "content-type": ["http.http_content_type"],
            "x-forwarded-for": ["http.xff"],
        },
    )
    shape: ClassVar[tuple[tuple[str, ...], ...]] = (("event_type", "src_ip"),)

    def from_document(self, doc: dict[str, Any]) -> HttpRequest | None:
        event_type = doc.get("event_type")
        if not isinstance(event_type, str):
            raise PoisonRecord("not_eve_event", "no event_type")
        if not isinstance(doc.get("http"), dict):
            if event_type == "http":
                raise PoisonRecord(
                    "bad_field_type", "http event without an http object"
                )
            return None
        return self.mapped(doc, self.mapping)


#: The JSON formats offered to auto-detection, in registry order.
JSON_FORMATS: tuple[type[JsonParser], ...] = (
    EcsParser,
    VectorParser,
    FluentBitParser,
    CloudflareParser,
    GcpLoadBalancerParser,
    AzureParser,
    TraefikParser,
    ZeekJsonParser,
    SuricataParser,
)
