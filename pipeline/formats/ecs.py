"""JSON lines with Elastic Common Schema fields, nested or dotted.

Besides the ECS fields, ``http.request.headers`` (an object of header name to
value, or to a list of values) carries request headers when the shipper has them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import check_size, split_forwarded_for, valid_ip

_decoder = msgspec.json.Decoder()


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    """Value at ``dotted`` in ``doc``, whether keys are nested or flat."""
    if dotted in doc:
        return doc[dotted]
    node: Any = doc
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
            continue
        # Mixed forms such as {"http": {"request.method": "GET"}}.
        rest = ".".join(parts[i:])
        return node.get(rest)
    return node


def string(doc: dict[str, Any], dotted: str) -> str | None:
    """A text field; numbers are accepted, other types are malformed."""
    value = lookup(doc, dotted)
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise PoisonRecord("bad_field_type", f"{dotted} is {type(value).__name__}, expected text")


def integer(doc: dict[str, Any], dotted: str) -> int | None:
    value = lookup(doc, dotted)
    if value is None or value == "-":
        return None
    if isinstance(value, bool):
        raise PoisonRecord("bad_field_type", f"{dotted} is a boolean, expected a number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PoisonRecord("bad_field_type", f"{dotted} is not a number") from None


def parse_iso_time(value: Any) -> float | None:
    """Epoch seconds from an ISO 8601 string or an epoch number; None if absent."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000 if value > 1e11 else float(value)
    if not isinstance(value, str):
        raise PoisonRecord("bad_timestamp", f"timestamp is {type(value).__name__}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PoisonRecord("bad_timestamp", "timestamp is not ISO 8601") from None
    if moment.tzinfo is None:
        raise PoisonRecord("bad_timestamp", "timestamp has no time zone")
    return moment.timestamp()


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw``, or :class:`PoisonRecord`."""
    check_size(raw)
    try:
        doc = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise PoisonRecord("not_json", str(exc)[:120]) from None
    except RecursionError:
        raise PoisonRecord("json_too_deep", "nesting exceeds the decoder's limit") from None
    if not isinstance(doc, dict):
        raise PoisonRecord("not_json_object", f"top level is {type(doc).__name__}")
    return doc


def headers_of(value: Any) -> tuple[tuple[str, str], ...]:
    """Header pairs from ``{"Name": "v"}`` or ``{"Name": ["v1", "v2"]}``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise PoisonRecord("bad_field_type", "http.request.headers is not an object")
    pairs = []
    for name, item in value.items():
        values = item if isinstance(item, list) else [item]
        for one in values:
            if not isinstance(one, (str, int, float)) or isinstance(one, bool):
                raise PoisonRecord("bad_field_type", "a header value is not text")
            pairs.append((str(name).lower(), str(one)))
    return tuple(pairs)


#: One whole JSON object on the line, naming an ECS field near its start.
_SHAPE = re.compile(rb'[ \t]*\{(?=[^\n]{0,510}"(?:@timestamp|source))[^\n]*\}[ \t\r]*$', re.MULTILINE)


class EcsParser:
    """Elastic Common Schema JSON, as Filebeat, Elastic Agent and many shippers write it.

    Example:
        >>> EcsParser().parse(b'{"@timestamp": "2021-12-10T14:25:38Z", '
        ...     b'"source": {"ip": "203.0.113.9"}, "url": {"original": "/"}}').uri
        '/'
    """

    name: ClassVar[str] = "ecs"
    line_shape: ClassVar[re.Pattern[bytes]] = _SHAPE

    def looks_like(self, raw: bytes) -> bool:
        head = raw[:512]
        return head.lstrip()[:1] == b"{" and (b'"@timestamp"' in head or b'"source' in head)

    def parse(self, raw: bytes) -> HttpRequest:
        doc = decode_object(raw)
        headers = headers_of(lookup(doc, "http.request.headers"))
        uri = string(doc, "url.original")
        if uri is None:
            path, query = string(doc, "url.path"), string(doc, "url.query")
            uri = f"{path or ''}?{query}" if query else path
        peer = valid_ip(string(doc, "source.ip") or string(doc, "source.address")) or valid_ip(
            string(doc, "client.ip")
        )
        chain: list[str] = []
        for name, value in headers:
            if name == "x-forwarded-for":
                chain.extend(split_forwarded_for(value))
        return HttpRequest(
            format=self.name,
            timestamp=parse_iso_time(lookup(doc, "@timestamp")),
            client_ip=peer,
            peer_ip=peer,
            forwarded_for=tuple(chain),
            method=string(doc, "http.request.method"),
            host=string(doc, "url.domain") or string(doc, "host.name"),
            uri=uri,
            user_agent=string(doc, "user_agent.original"),
            referer=string(doc, "http.request.referrer"),
            headers=headers,
            body=string(doc, "http.request.body.content"),
            status=integer(doc, "http.response.status_code"),
            bytes_sent=integer(doc, "http.response.body.bytes"),
        )
