"""nginx and Apache access logs: common, combined, and combined with extra fields.

Quoted fields may hold Apache's ``\\"`` and ``\\\\`` escapes or nginx's ``\\xHH``
escapes (its default ``escape=default``); both are undone so the detector sees
the bytes the client sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import check_size, text, valid_ip

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]{1,64})\] " + _QUOTED.encode() + rb" (\d{3}|-) (\d+|-)"
    rb"(?: " + _QUOTED.encode() + rb" " + _QUOTED.encode() + rb")?(.*)",
    re.DOTALL,
)
_EXTRA = re.compile(_QUOTED.encode() + rb"|(\S+)")
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SHAPE = re.compile(rb"\S+ \S+ \S+ \[[^\]]{1,64}\] \"")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r"}


def _unescape(value: bytes) -> str:
    if b"\\" not in value:
        return text(value)

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x" and len(code) == 3:
            return bytes((int(code[1:], 16),))
        return _SIMPLE_ESCAPES.get(code, code)

    return text(_ESCAPE.sub(one, value))


def parse_clf_time(value: str) -> float:
    """Epoch seconds from ``10/Oct/2000:13:55:36 -0700``."""
    try:
        day, month, rest = value.split("/", 2)
        year, hh, mm, ss_zone = rest.split(":", 3)
        ss, _, zone = ss_zone.partition(" ")
        offset = timedelta(0)
        if zone:
            sign = -1 if zone[0] == "-" else 1
            offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        moment = datetime(
            int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset)
        )
        # OverflowError: a time whose UTC form leaves the years 1 to 9999.
        return moment.astimezone(UTC).timestamp()
    except (ValueError, KeyError, IndexError, OverflowError) as exc:
        raise PoisonRecord("bad_timestamp", f"unreadable access-log time: {exc}") from None


class CombinedParser:
    """Common and combined log format, with any extra fields after them.

    Extra quoted or bare fields after the user agent are kept as
    ``log.extra.1``, ``log.extra.2``... so payloads in them are still scanned.

    Example:
        >>> r = CombinedParser().parse(b'203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] '
        ...     b'"GET / HTTP/1.1" 200 5 "-" "curl/8"')
        >>> (r.client_ip, r.user_agent, r.status)
        ('203.0.113.9', 'curl/8', 200)
    """

    name: ClassVar[str] = "combined"

    def looks_like(self, raw: bytes) -> bool:
        return _SHAPE.match(raw) is not None

    def parse(self, raw: bytes) -> HttpRequest:
        check_size(raw)
        match = _LINE.fullmatch(raw.rstrip(b"\r\n"))
        if match is None:
            raise PoisonRecord("not_access_log", "line does not match common/combined format")
        host, _ident, _user, when, request, status, size, referer, agent, rest = match.groups()
        request_text = _unescape(request)
        method, uri, protocol = _split_request(request_text)
        address = host.decode("ascii", "replace")
        extra = tuple(
            (str(i), _unescape(m.group(1) if m.group(1) is not None else m.group(2)))
            for i, m in enumerate(_EXTRA.finditer(rest.strip()), 1)
        )
        return HttpRequest(
            format=self.name,
            timestamp=parse_clf_time(when.decode("ascii", "replace")),
            client_ip=valid_ip(address),
            peer_ip=valid_ip(address),
            method=method,
            uri=uri,
            protocol=protocol,
            user_agent=_optional(agent),
            referer=_optional(referer),
            status=int(status) if status != b"-" else None,
            bytes_sent=int(size) if size != b"-" else None,
            extra=tuple((k, v) for k, v in extra if v and v != "-"),
        )


def _optional(value: bytes | None) -> str | None:
    if value is None or value in (b"", b"-"):
        return None
    return _unescape(value)


def _split_request(request: str) -> tuple[str | None, str | None, str | None]:
    # Garbage request lines (TLS on a plain port, scanners) are valid log lines:
    # keep the whole string as the URI so it is still scanned.
    parts = request.split(" ")
    if len(parts) == 3 and parts[0].isalpha():
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and parts[0].isalpha():
        return parts[0], parts[1], None
    return None, (request if request and request != "-" else None), None
