"""Parsers generated from an nginx ``log_format`` or Apache ``LogFormat`` directive.

The directive string from config is compiled once into an anchored regular
expression: each variable becomes a group bounded by the literal text after it
(a quoted variable may hold escaped quotes), so matching stays linear in the
line length. Each variable is then given its meaning (peer, time, request line,
a header...) from the web server's documentation:
https://nginx.org/en/docs/http/ngx_http_log_module.html#log_format,
https://nginx.org/en/docs/varindex.html,
https://httpd.apache.org/docs/current/mod/mod_log_config.html#formats
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import ConfigError, PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    Sniff,
    check_size,
    make_request,
    optional,
    split_forwarded_for,
    split_request,
    to_int,
    valid_ip,
)
from pipeline.formats.combined import unescape
from pipeline.formats.settings import FormatSettings


@dataclass(frozen=True)
class Slot:
    """One variable of a format: its meaning and, for headers, the header name."""

    role: str
    arg: str = ""


# Variables that come from the server, not the client: matched, never scanned.
_NGINX_SKIP = re.compile(
    r"(request_time|request_length|upstream_\w+|sent_http_\w+|sent_trailer_\w+|"
    r"connection|connection_requests|pipe|msec_\w+|server_\w+|pid|hostname|"
    r"ssl_\w+|gzip_ratio|remote_port|binary_remote_addr|bytes_received|"
    r"request_id|time_local_\w+|proxy_\w+|realip_remote_port|nginx_version)"
)
_NGINX_ROLES = {
    "remote_addr": Slot("peer"),
    "realip_remote_addr": Slot("peer_original"),
    "remote_user": Slot("user"),
    "time_local": Slot("time_clf"),
    "time_iso8601": Slot("time_iso"),
    "msec": Slot("time_epoch"),
    "request": Slot("request_line"),
    "request_method": Slot("method"),
    "request_uri": Slot("uri"),
    "uri": Slot("path"),
    "document_uri": Slot("path"),
    "args": Slot("query"),
    "query_string": Slot("query"),
    "server_protocol": Slot("protocol"),
    "host": Slot("host"),
    "status": Slot("status"),
    "body_bytes_sent": Slot("bytes"),
    "bytes_sent": Slot("bytes_total"),
    "request_body": Slot("body"),
    "scheme": Slot("skip"),
}
_NGINX_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_NGINX_DIRECTIVE = re.compile(r"\s*log_format\s+(\S+)\s+(.*?);?\s*", re.DOTALL)
_QUOTED_PIECE = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"|(\S+)")

_APACHE_DIRECTIVE = re.compile(
    r'\s*LogFormat\s+"([^"\\]*(?:\\.[^"\\]*)*)"(?:\s+\S+)?\s*', re.DOTALL
)
_APACHE_TOKEN = re.compile(
    r"%([<>]?)(?:!?\d{3}(?:,\d{3})*)?([<>]?)(?:\{([^}]*)\})?(\^t[io]|[a-zA-Z%])"
)
_APACHE_ROLES = {
    "h": Slot("peer"),
    "a": Slot("peer"),
    "u": Slot("user"),
    "t": Slot("time_clf_bracketed"),
    "r": Slot("request_line"),
    "m": Slot("method"),
    "U": Slot("path"),
    "q": Slot("query_with_mark"),
    "H": Slot("protocol"),
    "s": Slot("status"),
    "b": Slot("bytes"),
    "B": Slot("bytes"),
    "O": Slot("bytes_total"),
    "V": Slot("host"),
}

#: Group patterns by what follows a variable.
_QUOTED_VALUE = r'[^"\\]*(?:\\.[^"\\]*)*'


_STRFTIME = {
    "Y": r"\d{4}",
    "y": r"\d\d",
    "m": r"\d\d",
    "d": r"\d\d",
    "e": r"[ \d]\d",
    "H": r"\d\d",
    "I": r"\d\d",
    "M": r"\d\d",
    "S": r"\d\d",
    "j": r"\d{3}",
    "f": r"\d{1,6}",
    "z": r"(?:[+-]\d\d:?\d\d|Z)",
    "Z": r"[A-Za-z]{1,5}",
    "b": r"[A-Za-z]{3}",
    "a": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]{3,9}",
    "A": r"[A-Za-z]{6,9}",
    "p": r"[AP]M",
    "T": r"\d\d:\d\d:\d\d",
    "%": "%",
}


def _strftime_regex(pattern: str) -> str:
    """A regex for what Apache's ``%{pattern}t`` prints."""
    pattern = pattern.removeprefix("begin:").removeprefix("end:")
    if pattern in ("sec", "msec", "usec", "msec_frac", "usec_frac"):
        return r"\d{1,20}"
    out = ""
    for part in re.split(r"(%.)", pattern):
        if len(part) == 2 and part[0] == "%":
            out += _STRFTIME.get(part[1], r"\S+?")
        else:
            out += re.escape(part)
    return out


def _until(literal: str) -> str:
    return f"[^{re.escape(literal[0])}]*"


@dataclass(frozen=True)
class Compiled:
    """A compiled format: the line pattern and the meaning of each group."""

    pattern: re.Pattern[bytes]
    slots: tuple[Slot, ...]
    json_escapes: bool


def _compile(pieces: list[str | Slot], json_escapes: bool, source: str) -> Compiled:
    regex = ""
    slots: list[Slot] = []
    for i, piece in enumerate(pieces):
        if isinstance(piece, str):
            regex += re.escape(piece)
            continue
        after = pieces[i + 1] if i + 1 < len(pieces) else None
        before = pieces[i - 1] if i > 0 else None
        if isinstance(after, Slot):
            raise ConfigError(
                f"log format {source!r}: two variables with nothing between them"
            )
        if piece.role == "time_clf_bracketed":
            regex += r"\[([^\]]{1,64})\]"
        elif piece.role == "time_pattern":
            regex += f"({_strftime_regex(piece.arg)})"
        elif after is None:
            regex += "(.*)"
        elif isinstance(before, str) and before.endswith('"') and after.startswith('"'):
            regex += f"({_QUOTED_VALUE})"
        else:
            regex += f"({_until(after)})"
        slots.append(piece)
    if not slots:
        raise ConfigError(f"log format {source!r} has no variables")
    return Compiled(re.compile(regex.encode(), re.DOTALL), tuple(slots), json_escapes)


def compile_nginx(directive: str) -> Compiled:
    """Compile an nginx ``log_format`` directive, or a bare format string.

    In the directive form (``log_format name [escape=...] '...' '...';``) the
    quoted pieces are joined as nginx does; a bare string is taken verbatim.
    """
    fmt, json_escapes = directive, False
    match = _NGINX_DIRECTIVE.fullmatch(directive)
    if match is not None:
        texts = []
        for piece in _QUOTED_PIECE.finditer(match.group(2)):
            quoted = piece.group(1) if piece.group(1) is not None else piece.group(2)
            bare = piece.group(3) or ""
            if quoted is None and bare.startswith("escape="):
                json_escapes = bare == "escape=json"
                continue
            texts.append(
                re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            )
        fmt = "".join(texts)
    pieces: list[str | Slot] = []
    position = 0
    for var in _NGINX_VAR.finditer(fmt):
        if var.start() > position:
            pieces.append(fmt[position : var.start()])
        pieces.append(_nginx_slot(var.group(1) or var.group(2)))
        position = var.end()
    if position < len(fmt):
        pieces.append(fmt[position:])
    return _compile(pieces, json_escapes, directive[:60])


def _nginx_slot(name: str) -> Slot:
    if name in _NGINX_ROLES:
        return _NGINX_ROLES[name]
    if name.startswith("http_"):
        header = name[5:].replace("_", "-")
        if header == "user-agent":
            return Slot("user_agent")
        if header == "referer":
            return Slot("referer")
        return Slot("header", header)
    if name.startswith("cookie_"):
        return Slot("cookie", name[7:])
    if _NGINX_SKIP.fullmatch(name):
        return Slot("skip")
    return Slot("extra", name)


def compile_apache(directive: str) -> Compiled:
    """Compile an Apache ``LogFormat`` directive (or just its format string)."""
    match = _APACHE_DIRECTIVE.fullmatch(directive)
    fmt = re.sub(r"\\(.)", r"\1", match.group(1)) if match is not None else directive
    pieces: list[str | Slot] = []
    position = 0
    for token in _APACHE_TOKEN.finditer(fmt):
        if token.start() > position:
            pieces.append(fmt[position : token.start()])
        position = token.end()
        arg, letter = token.group(3), token.group(4)
        if letter == "%":
            pieces.append("%")
            continue
        pieces.append(_apache_slot(letter, arg))
    if position < len(fmt):
        pieces.append(fmt[position:])
    merged: list[str | Slot] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    return _compile(merged, False, directive[:60])


def _apache_slot(letter: str, arg: str | None) -> Slot:
    if letter == "i" and arg:
        header = arg.lower()
        if header == "user-agent":
            return Slot("user_agent")
        if header == "referer":
            return Slot("referer")
        return Slot("header", header)
    if letter == "C" and arg:
        return Slot("cookie", arg)
    if letter == "a" and arg == "c":
        return Slot("peer_original")
    if letter == "t" and arg:
        return Slot("time_pattern", arg)
    if letter in _APACHE_ROLES and not (letter == "t" and arg):
        return _APACHE_ROLES[letter]
    return Slot("skip")


class LogFormatParser(BaseParser):
    """Access-log lines in an operator's own nginx or Apache format.

    Configured as ``[formats.nginx] name = "log_format ..."`` or ``[formats.apache]
    name = 'LogFormat "..." nick'``; used only when named (per topic, by header
    or as the default), never guessed.

    Args:
        name: the configured format name.
        compiled: the compiled directive.
        settings: the ``[formats]`` settings.

    Example:
        >>> fmt = compile_nginx('$remote_addr [$time_local] "$request"')
        >>> p = LogFormatParser("edge", fmt)
        >>> p.parse(b'203.0.113.9 [10/Dec/2021:14:25:38 +0000] "GET /a HTTP/1.1"').uri
        '/a'
    """

    sniff: Sniff = "none"

    def __init__(
        self, name: str, compiled: Compiled, settings: FormatSettings | None = None
    ) -> None:
        super().__init__(settings)
        self.name = name
        self.compiled = compiled

    def looks_like(self, raw: bytes) -> bool:
        return (
            len(raw) <= 1 << 20
            and self.compiled.pattern.fullmatch(raw.rstrip(b"\r\n")) is not None
        )

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        match = self.compiled.pattern.fullmatch(raw.rstrip(b"\r\n"))
        if match is None:
            raise PoisonRecord(
                "not_access_log", f"line does not match format {self.name!r}"
            )
        found: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        extra: list[tuple[str, str | None]] = []
        timestamp: float | None = None
        for slot, raw_value in zip(self.compiled.slots, match.groups(), strict=True):
            value = unescape(raw_value)
            if slot.role == "skip" or optional(value) is None:
                continue
            if slot.role == "header":
                headers.append((slot.arg, value))
            elif slot.role == "cookie":
                headers.append(("cookie", f"{slot.arg}={value}"))
            elif slot.role == "extra":
                extra.append((slot.arg, value))
            elif slot.role.startswith("time_"):
                timestamp = self._time(slot, value)
            else:
                found.setdefault(slot.role, value)
        method, uri, protocol = split_request(found.get("request_line"))
        if uri is None:
            path, query = found.get("path"), found.get("query")
            query_mark = found.get("query_with_mark")
            uri = (
                f"{path or ''}?{query}"
                if query
                else (path or "") + (query_mark or "") or None
            )
        peer = found.get("peer_original") or found.get("peer")
        chain = [h for h in headers if h[0] == "x-forwarded-for"]
        return make_request(
            self.name,
            timestamp=timestamp,
            peer=peer if valid_ip(peer) else None,
            headers=headers,
            forwarded_for=split_forwarded_for(chain[0][1]) if chain else None,
            method=found.get("method") or method,
            host=found.get("host"),
            uri=found.get("uri") or uri,
            protocol=found.get("protocol") or protocol,
            user_agent=found.get("user_agent"),
            referer=found.get("referer"),
            body=found.get("body"),
            status=to_int(found.get("status"), "status"),
            bytes_sent=to_int(found.get("bytes") or found.get("bytes_total"), "bytes"),
            extra=extra,
            ecs_fields=[("user.name", found.get("user"))],
        )

    def _time(self, slot: Slot, value: str) -> float | None:
        if slot.role in ("time_clf", "time_clf_bracketed"):
            return self.clock.clf(value)
        if slot.role == "time_iso":
            return self.clock.iso(value)
        if slot.role == "time_epoch":
            return self.clock.epoch(value)
        pattern = slot.arg.removeprefix("begin:").removeprefix("end:")
        if pattern in ("sec", "msec", "usec"):
            return self.clock.epoch(value)
        if pattern.startswith(("msec_frac", "usec_frac")):
            return None
        return self.clock.strptime(value, pattern)
