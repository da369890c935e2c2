"""nginx and Apache access logs: common, combined, and combined with extra fields.

Quoted fields may hold Apache's ``\\"`` and ``\\\\`` escapes or nginx's ``\\xHH``
escapes (its default ``escape=default``); both are undone so the detector sees
the bytes the client sent.
"""

from __future__ import annotations

import re

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    check_size,
    make_request,
    optional,
    split_forwarded_for,
    split_request,
    text,
    to_int,
    valid_ip,
)
from pipeline.formats.settings import FormatSettings
from pipeline.formats.times import Clock

QUOTED = rb'"([^"\\]*(?:\\.[^"\\]*)*)"'
_QUOTED_NC = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_LINE = re.compile(
    rb"(\S+) (\S+) (\S+) \[([^\]]{1,64})\] " + QUOTED + rb" (\d{3}|-) (\d+|-)"
    rb"(?: "
    + QUOTED
    + rb" "
    + QUOTED
    + rb")?((?: +(?:"
    + _QUOTED_NC
    + rb"|[^\s\"]+))*) *",
    re.DOTALL,
)
_Q_LINE = rb'"[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"'
#: The same structure as ``_LINE``, confined to one line (no newline anywhere),
#: so the detect stage can test a whole block of lines in one regex pass.
LINE_SHAPE = re.compile(
    rb"[^\s]+ [^\s]+ [^\s]+ \[[^\]\n]{1,64}\] " + _Q_LINE + rb" (?:\d{3}|-) (?:\d+|-)"
    rb"(?: " + _Q_LINE + rb" " + _Q_LINE + rb")?(?: +(?:" + _Q_LINE + rb'|[^\s"]+))* *\r?$',
    re.MULTILINE,
)
_EXTRA = re.compile(QUOTED + rb"|(\S+)")
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"b": b"\b", b"f": b"\f"}


def _one_escape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code[:1] == b"x" and len(code) == 3:
        return bytes((int(code[1:], 16),))
    if code[:1] == b"u" and len(code) == 5:
        return chr(int(code[1:], 16)).encode("utf-8", "replace")
    return _SIMPLE_ESCAPES.get(code, code)


def unescape(value: bytes) -> str:
    """Undo access-log escapes: ``\\xHH`` (nginx, Apache), ``\\"``, ``\\\\``,
    ``\\n``-style and JSON ``\\uXXXX`` (nginx ``escape=json``)."""
    if b"\\" not in value:
        return text(value)
    return text(_ESCAPE.sub(_one_escape, value))


def parse_clf_time(value: str) -> float | None:
    """Epoch seconds from ``10/Oct/2000:13:55:36 -0700``, with the default policy."""
    return Clock(FormatSettings()).clf(value)


class CombinedParser(BaseParser):
    """Common and combined log format, with any extra fields after them.

    Covers Apache ``common``/``combined``, nginx ``combined`` and ``main`` (which
    adds ``"$http_x_forwarded_for"``), Traefik's CLF, and other combined-plus-extra
    layouts. The first extra field (nginx ``main``'s) is taken as the
    X-Forwarded-For chain when every hop in it is an address; extras are kept as
    ``log.extra.1``, ``log.extra.2``... so payloads in them are still scanned.

    Example:
        >>> r = CombinedParser().parse(b'203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] '
        ...     b'"GET / HTTP/1.1" 200 5 "-" "curl/8"')
        >>> (r.client_ip, r.user_agent, r.status)
        ('203.0.113.9', 'curl/8', 200)
    """

    name = "combined"
    line_shape = LINE_SHAPE

    def looks_like(self, raw: bytes) -> bool:
        return len(raw) <= 1 << 20 and _LINE.fullmatch(raw.rstrip(b"\r\n")) is not None

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        line = raw.rstrip(b"\r\n")
        match = _LINE.fullmatch(line)
        if match is None:
            if _LINE.fullmatch(line + b'"') is not None:
                raise PoisonRecord("truncated", "line ends inside a quoted field")
            raise PoisonRecord(
                "not_access_log", "line does not match common/combined format"
            )
        host, _ident, user, when, request, status, size, referer, agent, rest = (
            match.groups()
        )
        method, uri, protocol = split_request(unescape(request))
        extra = [
            unescape(m.group(1) if m.group(1) is not None else m.group(2))
            for m in _EXTRA.finditer(rest.strip())
        ]
        chain = split_forwarded_for(extra[0]) if extra and extra[0] != "-" else []
        if not chain or any(valid_ip(hop) is None for hop in chain):
            chain = []
        return make_request(
            self.name,
            timestamp=self.clock.clf(when),
            peer=text(host),
            forwarded_for=chain,
            method=method,
            uri=uri,
            protocol=protocol,
            user_agent=optional(unescape(agent)) if agent is not None else None,
            referer=optional(unescape(referer)) if referer is not None else None,
            status=to_int(text(status), "status"),
            bytes_sent=to_int(text(size), "bytes"),
            extra=[(str(i), value) for i, value in enumerate(extra, 1)],
            ecs_fields=[("user.name", unescape(user))],
        )
