"""Reverse-proxy access logs: HAProxy's HTTP log and Envoy's default format."""

from __future__ import annotations

import re

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.aws import address_without_port
from pipeline.formats.base import (
    BaseParser,
    check_size,
    make_request,
    split_request,
    text,
    to_int,
)

_HAPROXY = re.compile(
    rb"(?:[^\[\r\n]{0,200}\[\d{1,10}\]: )?"  # optional syslog header, "haproxy[pid]: "
    rb"(\S{1,64}) \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d(?:\.\d{1,6})?)\] "
    rb"\S+ \S+ [-+\d/]+ (-1|\d{1,3}) \+?(\d+|-) (\S+) \S+ \S{4} [\d/]+ [\d/]+"
    rb"(?: \{([^}\r\n]*)\})?(?: \{([^}\r\n]*)\})? \"([^\"\r\n]*)\"?"
)
_HASH = re.compile(rb"#([0-9A-Fa-f]{2})")


def _unhash(value: bytes) -> str:
    """Undo HAProxy's ``#XX`` encoding of quotes, braces and non-printables."""
    if b"#" not in value:
        return text(value)
    return text(_HASH.sub(lambda m: bytes((int(m.group(1), 16),)), value))


class HaproxyParser(BaseParser):
    """HAProxy ``option httplog`` lines, with or without the syslog header, and
    with the ``{...}`` captured request (and response) headers.

    Captured headers are named from ``haproxy_request_headers`` (the ``capture
    request header`` lines of the config, in order); unnamed ones are scanned
    as ``log.extra.capture.N``. With no names configured and one brace group,
    the group may hold request or response captures: it is scanned unnamed.
    The accept date has no offset: the ``timezone`` setting applies. A request
    line cut by HAProxy's length limit (no closing quote) is still read. Spec:
    https://docs.haproxy.org/2.8/configuration.html#8.2.3 (HTTP log format)
    and #8.8 (capturing HTTP headers).

    Example:
        >>> HaproxyParser().looks_like(b"10.0.1.2:33317 [06/Feb/2009:12:14:14.655] "
        ...     b'http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 '
        ...     b'"GET /index.html HTTP/1.1"')
        True
    """

    name = "haproxy"

    def looks_like(self, raw: bytes) -> bool:
        return (
            len(raw) <= 1 << 20 and _HAPROXY.fullmatch(raw.rstrip(b"\r\n")) is not None
        )

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        match = _HAPROXY.fullmatch(raw.rstrip(b"\r\n"))
        if match is None:
            raise PoisonRecord(
                "not_haproxy_log", "line does not match the HAProxy HTTP log"
            )
        client, when, status, size, cookie, first, second, request = match.groups()
        names = [n.lower() for n in self.settings.haproxy_request_headers]
        headers: list[tuple[str, str]] = []
        if cookie != b"-":
            headers.append(("cookie", _unhash(cookie)))
        extra: list[tuple[str, str | None]] = []
        captures = first if names or second is not None else None
        if first is not None and captures is None:
            extra.extend(
                (f"capture.{i}", _unhash(v)) for i, v in enumerate(first.split(b"|"))
            )
        if captures is not None:
            for i, value in enumerate(captures.split(b"|")):
                if i < len(names):
                    headers.append((names[i], _unhash(value)))
                else:
                    extra.append((f"capture.{i}", _unhash(value)))
        method, uri, protocol = split_request(_unhash(request))
        return make_request(
            self.name,
            timestamp=self.clock.clf(when),
            peer=address_without_port(text(client)),
            headers=[(n, v) for n, v in headers if v],
            method=method,
            uri=uri,
            protocol=protocol,
            status=None if status == b"-1" else to_int(text(status), "status"),
            bytes_sent=to_int(text(size), "bytes_read"),
            extra=extra,
        )


_ENVOY = re.compile(
    rb"\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)\] "
    rb'"([^"\r\n]*)" (\d{1,3}|-) (\S+) (\d+|-) (\d+|-) (\d+|-) (\S+) '
    rb'"([^"\r\n]*)" "([^"\r\n]*)" "([^"\r\n]*)" "([^"\r\n]*)" "([^"\r\n]*)"'
    rb"((?: [^\r\n]*)?)"
)


class EnvoyParser(BaseParser):
    """Envoy's default access-log format (also Istio's, whose extra trailing
    fields are kept and scanned as ``log.extra.trailer``).

    The default format logs no downstream address: ``peer_ip`` is None and the
    X-Forwarded-For value becomes the forwarded chain, so the trusted-proxy rule
    never takes a client address from it alone. Spec:
    https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string
    """

    name = "envoy"

    # XXX(#8): Envoy does not escape quotes inside values, so a client that puts
    # a '"' in its User-Agent gets its line dead-lettered instead of scanned;
    # a lazy-quote regex would read it but costs super-linear time on hostile
    # lines. Operators who need this should log JSON (json_format) instead.

    def looks_like(self, raw: bytes) -> bool:
        return len(raw) <= 1 << 20 and _ENVOY.fullmatch(raw.rstrip(b"\r\n")) is not None

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        match = _ENVOY.fullmatch(raw.rstrip(b"\r\n"))
        if match is None:
            raise PoisonRecord(
                "not_envoy_log", "line does not match Envoy's default format"
            )
        when, request, status, _flags, _received, sent, _ms, _upstream_ms = (
            match.groups()[:8]
        )
        xff, agent, request_id, authority, _upstream, trailer = match.groups()[8:]
        method, uri, protocol = split_request(text(request))
        headers = [
            (name, text(value))
            for name, value in (
                ("x-forwarded-for", xff),
                ("x-request-id", request_id),
                ("host", authority),
            )
            if value not in (b"", b"-")
        ]
        return make_request(
            self.name,
            timestamp=self.clock.iso(text(when)),
            headers=headers,
            method=method,
            uri=uri,
            protocol=protocol,
            user_agent=text(agent),
            status=to_int(text(status), "response_code"),
            bytes_sent=to_int(text(sent), "bytes_sent"),
            extra=[("trailer", text(trailer).strip())],
        )
