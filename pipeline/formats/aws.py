"""AWS Application Load Balancer access logs.

CloudFront standard logs are W3C-style and live in :mod:`pipeline.formats.w3c`.
"""

from __future__ import annotations

import re

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    check_size,
    host_of_url,
    make_request,
    optional,
    split_request,
    text,
    to_int,
)

_TOKEN = rb'(?:"[^"\\]*(?:\\.[^"\\]*)*"|[^ "]+)'
_ALB = re.compile(
    rb"(?:http|https|h2|grpcs|ws|wss) \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z"
    rb"(?: " + _TOKEN + rb"){23,80}"
)
_FIELD = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"|([^ "]+)')
_BACKSLASH = re.compile(r"\\(.)")

#: Entries up to ``redirect_url``/``error_reason``, logged since 2018; fewer
#: means the line was cut.
_MIN_FIELDS = 25
# Positions in the documented field order.
_TIME, _CLIENT, _STATUS, _SENT, _REQUEST, _AGENT, _TRACE, _SNI = (
    1,
    3,
    8,
    11,
    12,
    13,
    17,
    18,
)


def address_without_port(value: str) -> str | None:
    """``203.0.113.9`` from ``203.0.113.9:4711`` (IPv6 loggers omit brackets)."""
    value = optional(value) or ""
    if not value or value.startswith("["):
        return value or None
    host, sep, port = value.rpartition(":")
    return host if sep and port.isdigit() else value


class AlbParser(BaseParser):
    """AWS Application Load Balancer access-log entries (``http``, ``https``,
    ``h2``, ``grpcs``, ``ws``, ``wss``), including fields added after the
    documented ones. A line with fewer than 25 fields is taken as truncated.

    The request line keeps an absolute URL (``GET http://host:80/x HTTP/1.1``);
    spaces inside it are kept. User agent, the trace id (``X-Amzn-Trace-Id``)
    and the TLS server name are attacker-reachable. Spec:
    https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html#access-log-entry-syntax

    Example:
        >>> r = AlbParser().parse(ALB_LINE)  # doctest: +SKIP
    """

    name = "alb"

    def looks_like(self, raw: bytes) -> bool:
        return len(raw) <= 1 << 20 and _ALB.fullmatch(raw.rstrip(b"\r\n")) is not None

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        line = raw.rstrip(b"\r\n")
        if _ALB.fullmatch(line) is None:
            raise PoisonRecord(
                "not_alb_log", "line does not match the ALB entry syntax"
            )
        tokens = [
            m.group(1) if m.group(1) is not None else m.group(2)
            for m in _FIELD.finditer(line)
        ]
        if len(tokens) < _MIN_FIELDS:
            raise PoisonRecord(
                "truncated", f"{len(tokens)} fields, ALB logs {_MIN_FIELDS}+"
            )

        def field(i: int) -> str:
            value = text(tokens[i])
            return _BACKSLASH.sub(r"\1", value) if "\\" in value else value

        method, uri, protocol = split_request(field(_REQUEST))
        trace = optional(field(_TRACE))
        return make_request(
            self.name,
            timestamp=self.clock.iso(field(_TIME)),
            peer=address_without_port(field(_CLIENT)),
            headers=[("x-amzn-trace-id", trace)] if trace else [],
            method=method,
            host=host_of_url(uri),
            uri=uri,
            protocol=protocol,
            user_agent=field(_AGENT),
            status=to_int(field(_STATUS), "elb_status_code"),
            bytes_sent=to_int(field(_SENT), "sent_bytes"),
            ecs_fields=[("tls.client.server_name", field(_SNI))],
        )
