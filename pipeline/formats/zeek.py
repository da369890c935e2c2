"""Zeek ASCII (TSV) logs, ``http.log`` first: the layout comes from ``#fields``.

Header lines (``#separator``, ``#set_separator``, ``#empty_field``,
``#unset_field``, ``#path``, ``#open``, ``#fields``, ``#types``, ``#close``) and
comment lines (``##...``) arrive as their own records; ``parse`` returns None
for them and they set how the following records of the stream on the same
parser instance are split. Before any header the layout from settings
(``zeek_fields``) or the stock ``http.log`` layout applies, so a worker that
starts mid-stream can parse. Other Zeek logs that carry request text (the
Log4j package's ``notice.log`` puts the header in ``sub``) parse too: fields
without an HTTP meaning are scanned as ``log.extra.<field>``.

XXX(#8): as for W3C logs, the layout is state of one parser instance; streams
that interleave Zeek logs of different layouts on one topic need one topic per
log path (the usual Zeek-to-Kafka setup) or ``zeek_fields`` in config.
"""

from __future__ import annotations

import re

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import BaseParser, check_size, make_request, text, to_int
from pipeline.formats.jsonformats import proxied_headers
from pipeline.formats.settings import FormatSettings

#: Stock ``http.log`` columns (Zeek 4+ ``base/protocols/http/main.zeek``).
HTTP_LOG_FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "trans_depth",
    "method",
    "host",
    "uri",
    "referrer",
    "version",
    "user_agent",
    "origin",
    "request_body_len",
    "response_body_len",
    "status_code",
    "status_msg",
    "info_code",
    "info_msg",
    "tags",
    "username",
    "password",
    "proxied",
    "orig_fuids",
    "orig_filenames",
    "orig_mime_types",
    "resp_fuids",
    "resp_filenames",
    "resp_mime_types",
]

_NOT_SCANNED = frozenset(
    [
        "ts",
        "uid",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
        "trans_depth",
        "request_body_len",
        "response_body_len",
        "status_msg",
        "info_code",
        "info_msg",
        "tags",
        "orig_fuids",
        "orig_mime_types",
        "resp_fuids",
        "resp_filenames",
        "resp_mime_types",
        "src",
        "dst",
        "p",
        "n",
        "fuid",
        "file_mime_type",
        "proto",
        "note",
        "actions",
        "email_dest",
        "suppress_for",
        "peer_descr",
        "remote_location.country_code",
        "remote_location.region",
        "remote_location.city",
        "remote_location.latitude",
        "remote_location.longitude",
    ]
)
_OWN = frozenset(
    [
        "id.orig_h",
        "method",
        "host",
        "uri",
        "referrer",
        "version",
        "user_agent",
        "origin",
        "status_code",
        "username",
        "proxied",
        "cookie",
        "post_body",
    ]
)
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_LINE = re.compile(rb"\d{9,10}(?:\.\d{1,9})?\t")
_ZEEK_HEADER = re.compile(
    rb"#(?:separator |(?:set_separator|empty_field|unset_field|path|open|fields"
    rb"|types|close)\t)"
)
_HEADER = re.compile(rb"#[a-z_]{1,20}[\t ][^\r\n]*|#[^\r\n]*")


def _unescape(value: bytes) -> str:
    if b"\\x" not in value:
        return text(value)
    return text(_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), value))


class ZeekTsvParser(BaseParser):
    """Zeek TSV logs under their ``#fields`` header.

    Args:
        settings: ``zeek_fields`` fixes the layout before a ``#fields`` line.

    Example:
        >>> ZeekTsvParser().parse(b"#separator \\\\x09") is None
        True
    """

    name = "zeek_tsv"

    def __init__(self, settings: FormatSettings | None = None) -> None:
        super().__init__(settings)
        self.fields: tuple[str, ...] = tuple(
            self.settings.zeek_fields or HTTP_LOG_FIELDS
        )
        self.separator = b"\t"
        self.set_separator = ","
        self.empty = "(empty)"
        self.unset = "-"

    def looks_like(self, raw: bytes) -> bool:
        if raw[:1] == b"#":
            return _ZEEK_HEADER.match(raw) is not None
        line = raw.rstrip(b"\r\n")
        return (
            line.count(self.separator) == len(self.fields) - 1
            and _LINE.match(line) is not None
        )

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        line = raw.rstrip(b"\r\n")
        if line[:1] == b"#":
            self._header(line)
            return None
        values = line.split(self.separator)
        if len(values) != len(self.fields):
            raise PoisonRecord(
                "field_count",
                f"{len(values)} fields, the layout has {len(self.fields)}",
            )
        row: dict[str, str] = {}
        for name, value in zip(self.fields, values, strict=True):
            decoded = _unescape(value)
            if decoded not in (self.unset, self.empty):
                row[name] = decoded
        return self._request(row)

    def _header(self, line: bytes) -> None:
        if _HEADER.fullmatch(line) is None or b"\x00" in line:
            raise PoisonRecord("bad_directive", "unreadable Zeek header line")
        if line.startswith(b"#separator "):
            separator = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), line[11:])
            if len(separator) != 1:
                raise PoisonRecord("bad_directive", "#separator is not one byte")
            self.separator = separator
            return
        key, _, rest = line[1:].partition(self.separator)
        value = _unescape(rest)
        if key == b"fields":
            names = value.split(_unescape(self.separator))
            if not names or len(names) > 300:
                raise PoisonRecord("bad_directive", "#fields lists no usable names")
            self.fields = tuple(names)
        elif key == b"set_separator":
            self.set_separator = value or ","
        elif key == b"empty_field":
            self.empty = value
        elif key == b"unset_field":
            self.unset = value

    def _request(self, row: dict[str, str]) -> HttpRequest:
        headers: list[tuple[str, str]] = []
        for name in ("origin", "cookie"):
            if name in row:
                headers.append((name, row[name]))
        if "proxied" in row:
            headers.extend(proxied_headers(row["proxied"].split(self.set_separator)))
        return make_request(
            self.name,
            timestamp=self.clock.epoch(row.get("ts")),
            peer=row.get("id.orig_h") or row.get("src"),
            headers=headers,
            method=row.get("method"),
            host=row.get("host"),
            uri=row.get("uri"),
            protocol=row.get("version"),
            user_agent=row.get("user_agent"),
            referer=row.get("referrer"),
            body=row.get("post_body"),
            status=to_int(row.get("status_code"), "status_code"),
            bytes_sent=to_int(row.get("response_body_len"), "response_body_len"),
            extra=[
                (k, v)
                for k, v in row.items()
                if k not in _OWN and k not in _NOT_SCANNED
            ],
            ecs_fields=[("user.name", row.get("username"))],
        )
