"""W3C extended logs driven by their ``#Fields:`` directive: IIS and CloudFront.

Directive lines (``#Software:``, ``#Version:``, ``#Date:``, ``#Fields:``,
``#Remark:``) arrive as their own records. ``parse`` returns None for them and
a ``#Fields:`` line sets the layout of the records that follow on the same
parser instance; until one is seen, the layout from settings (or the product's
default layout) applies, so a worker that starts mid-stream can parse.

XXX(#8): the layout is state of one parser instance, so records of two files
with different ``#Fields:`` interleaved on one topic are read with whichever
layout came last; a line that then has the wrong field count is dead-lettered,
one with the same count is misread. Keying the layout by source needs the
stage to pass the record's origin; fix the layout per topic in config meanwhile.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    check_size,
    excerpt,
    make_request,
    optional,
    split_forwarded_for,
    text,
    to_int,
)
from pipeline.formats.settings import FormatSettings

#: IIS's default field selection (W3C logging, IIS 8.5+ defaults).
IIS_DEFAULT_FIELDS = [
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
]

#: CloudFront standard log fields, in the documented order.
CLOUDFRONT_FIELDS = [
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
]

# Server-side fields: not attacker-reachable, not scanned.
_SERVER_SIDE = frozenset(
    [
        "s-ip",
        "s-port",
        "s-sitename",
        "s-computername",
        "sc-substatus",
        "sc-win32-status",
        "time-taken",
        "sc-bytes",
        "cs-bytes",
        "x-edge-location",
        "x-edge-result-type",
        "x-edge-request-id",
        "x-edge-response-result-type",
        "ssl-protocol",
        "ssl-cipher",
        "fle-status",
        "fle-encrypted-fields",
        "c-port",
        "time-to-first-byte",
        "x-edge-detailed-result-type",
        "sc-content-type",
        "sc-content-len",
        "sc-range-start",
        "sc-range-end",
        "cs-protocol",
        "s-dns",
    ]
)
_DIRECTIVE = re.compile(rb"#[A-Za-z][A-Za-z-]{0,30}:[^\x00-\x08\x0a-\x1f]*")
_HEADER = re.compile(r"cs\((.{1,64})\)")


class W3cParser(BaseParser):
    """W3C extended log lines under a ``#Fields:`` layout.

    Args:
        settings: ``w3c_fields`` fixes the layout before a ``#Fields:`` line.
    """

    separator: ClassVar[bytes] = b" "
    plus_is_space: ClassVar[bool] = True
    default_fields: ClassVar[tuple[str, ...]] = tuple(IIS_DEFAULT_FIELDS)
    line_shape: ClassVar[re.Pattern[bytes]] = re.compile(rb"")
    #: Fields of this product that do not come from the client.
    ignored: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, settings: FormatSettings | None = None) -> None:
        super().__init__(settings)
        self.fields: tuple[str, ...] = tuple(self._configured() or self.default_fields)

    def _configured(self) -> list[str]:
        return self.settings.w3c_fields

    def looks_like(self, raw: bytes) -> bool:
        if raw[:1] == b"#":
            return self.claims_directive(raw)
        line = raw.rstrip(b"\r\n")
        return (
            line.count(self.separator) == len(self.fields) - 1
            and self.line_shape.match(line) is not None
        )

    def claims_directive(self, raw: bytes) -> bool:
        """Whether this parser takes the directive line ``raw`` in auto mode."""
        return False

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        line = raw.rstrip(b"\r\n")
        if line[:1] == b"#":
            self._directive(line)
            return None
        values = line.split(self.separator)
        if len(values) != len(self.fields):
            raise PoisonRecord(
                "field_count",
                f"{len(values)} fields, the layout has {len(self.fields)}",
            )
        return self._request(dict(zip(self.fields, map(text, values), strict=True)))

    def _directive(self, line: bytes) -> None:
        if _DIRECTIVE.fullmatch(line) is None:
            raise PoisonRecord("bad_directive", "a # line that is not a W3C directive")
        if line[:8].lower() == b"#fields:":
            names = text(line[8:]).split()
            if not names or len(names) > 200 or any(len(n) > 80 for n in names):
                raise PoisonRecord("bad_directive", "#Fields: lists no usable names")
            self.fields = tuple(names)

    def _request(self, row: dict[str, str]) -> HttpRequest:
        headers: list[tuple[str, str]] = []
        extra: list[tuple[str, str | None]] = []
        chain: list[str] = []
        for name, value in row.items():
            if optional(value) is None:
                continue
            key = name.lower()
            if key in self.ignored:
                continue
            header = _HEADER.fullmatch(key)
            if header is not None:
                headers.append((header.group(1), self._space(value)))
            elif key == "x-host-header":
                headers.append(("host", value))
            elif key == "x-forwarded-for":
                chain = split_forwarded_for(value)
                headers.append(("x-forwarded-for", value))
            elif key not in _KNOWN and key not in _SERVER_SIDE:
                extra.append((name, value))
        stem, query = (
            optional(row.get("cs-uri-stem")),
            optional(row.get("cs-uri-query")),
        )
        uri = f"{stem or ''}?{query}" if query else stem
        host = optional(row.get("cs-host"))
        if host is not None:
            headers.append(("host", host))
        return make_request(
            self.name,
            timestamp=self._time(row),
            peer=row.get("c-ip"),
            headers=headers,
            forwarded_for=chain,
            method=row.get("cs-method"),
            uri=uri,
            protocol=row.get("cs-version") or row.get("cs-protocol-version"),
            status=to_int(row.get("sc-status"), "sc-status"),
            bytes_sent=to_int(row.get("sc-bytes"), "sc-bytes"),
            extra=extra,
            ecs_fields=[("user.name", row.get("cs-username"))],
        )

    def _space(self, value: str) -> str:
        return value.replace("+", " ") if self.plus_is_space else value

    def _time(self, row: dict[str, str]) -> float | None:
        date, clock = row.get("date", "-"), row.get("time", "-")
        if "date" not in row and "time" not in row:
            return None
        if not re.fullmatch(r"\d{4}-\d\d-\d\d", date) or not re.fullmatch(
            r"\d\d:\d\d:\d\d(\.\d{1,6})?", clock
        ):
            self.clock.bad(
                f"W3C date/time unreadable: {excerpt(date)} {excerpt(clock)}"
            )
            return None
        return self.clock.parts(date, clock)


_KNOWN = frozenset(
    [
        "date",
        "time",
        "c-ip",
        "cs-method",
        "cs-uri-stem",
        "cs-uri-query",
        "cs-version",
        "cs-protocol-version",
        "cs-host",
        "sc-status",
        "sc-bytes",
        "cs-username",
    ]
)


class IisParser(W3cParser):
    """IIS W3C extended log; ``+`` in header fields stands for a space.

    Spec: https://learn.microsoft.com/previous-versions/iis/6.0-sdk/ms525807(v=vs.90)
    and https://www.w3.org/TR/WD-logfile.html

    Example:
        >>> IisParser().parse(b"#Fields: date time c-ip cs-method cs-uri-stem") is None
        True
    """

    name = "iis"
    line_shape: ClassVar[re.Pattern[bytes]] = re.compile(
        rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^\t\r\n]*\Z"
    )

    def claims_directive(self, raw: bytes) -> bool:
        head = raw[:40].lower()
        if head.startswith(b"#fields:"):
            return b"x-edge-location" not in raw
        return head.startswith((b"#software:", b"#date:", b"#remark:", b"#start-date:"))


class CloudFrontParser(W3cParser):
    """Amazon CloudFront standard (access) logs: tab-separated W3C fields.

    Values are logged URL-encoded by CloudFront; they are passed on as logged
    and the detector undoes the encoding. ``x-host-header`` is the Host the
    viewer sent; ``cs(Host)`` (the distribution's own name) is not scanned.
    Spec: https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html
    """

    name = "cloudfront"
    separator: ClassVar[bytes] = b"\t"
    plus_is_space: ClassVar[bool] = False
    # cs(Host) is the distribution's own domain name, not what the client sent.
    ignored: ClassVar[frozenset[str]] = frozenset({"cs(host)"})
    default_fields: ClassVar[tuple[str, ...]] = tuple(CLOUDFRONT_FIELDS)
    line_shape: ClassVar[re.Pattern[bytes]] = re.compile(
        rb"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\t[^\r\n]*\Z"
    )

    def _configured(self) -> list[str]:
        return self.settings.cloudfront_fields

    def claims_directive(self, raw: bytes) -> bool:
        head = raw[:40].lower()
        if head.startswith(b"#fields:"):
            return b"x-edge-location" in raw
        return head.startswith(b"#version:")
