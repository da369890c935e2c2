"""ModSecurity audit log, serial format: one whole audit entry is one record."""

from __future__ import annotations

import itertools
import re

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    check_size,
    make_request,
    split_request,
    text,
)

_BOUNDARY = re.compile(rb"^-{2,3}([0-9A-Za-z]{6,40})-{1,3}([A-Z])--\r?$", re.MULTILINE)
_START = re.compile(rb"\s*-{2,3}[0-9A-Za-z]{6,40}-{1,3}A--\r?\n")
_END = re.compile(rb"-{2,3}[0-9A-Za-z]{6,40}-{1,3}Z--\s*")
_PART_A = re.compile(
    rb"\[([^\]]{10,64})\] (\S+) (\S+) (\d+) (\S+) (\d+)",
)
_HEADER_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}):[ \t]*(.*)")


class ModSecurityParser(BaseParser):
    """ModSecurity 2.x/3.x serial audit-log entries, parts A, B and C.

    Part A gives the time and the TCP peer, part B the request line and every
    request header, part C (or I, the multipart form without files) the body.
    A record must begin with part A and end with part Z; anything else is
    truncated or not an audit entry. Spec:
    https://github.com/owasp-modsecurity/ModSecurity/wiki/ModSecurity-2-Data-Formats#audit-log

    Example:
        >>> entry = b"--a1b2c3d4-A--\\n[...]\\n--a1b2c3d4-Z--\\n"
        >>> ModSecurityParser().looks_like(entry)
        True
    """

    name = "modsec"

    def looks_like(self, raw: bytes) -> bool:
        if _START.match(raw) is None:
            return False
        tail = raw[-64:]
        return _END.search(tail) is not None and tail.rstrip().endswith(b"Z--")

    def parse(self, raw: bytes) -> HttpRequest | None:
        check_size(raw)
        parts = self._parts(raw)
        match = _PART_A.match(parts["A"].strip())
        if match is None:
            raise PoisonRecord("bad_part_a", "audit header (part A) is unreadable")
        when, _unique_id, peer, _peer_port, _server, _server_port = match.groups()
        request_text = text(parts["B"]).replace("\r\n", "\n")
        head, *header_lines = request_text.split("\n")
        headers: list[tuple[str, str]] = []
        for line in header_lines:
            if not line:
                continue
            if line[:1] in (" ", "\t") and headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
                continue
            header = _HEADER_LINE.fullmatch(line)
            if header is None:
                raise PoisonRecord("bad_part_b", "a request header line has no name")
            headers.append((header.group(1).lower(), header.group(2).strip()))
        method, uri, protocol = split_request(head.strip())
        if method is None:
            raise PoisonRecord(
                "bad_part_b", "part B does not start with a request line"
            )
        body = parts.get("C") or parts.get("I")
        return make_request(
            self.name,
            timestamp=self.clock.clf(when),
            peer=text(peer),
            headers=headers,
            method=method,
            uri=uri,
            protocol=protocol,
            body=text(body).rstrip("\r\n") if body else None,
        )

    def _parts(self, raw: bytes) -> dict[str, bytes]:
        found = list(_BOUNDARY.finditer(raw))
        if not found or found[0].group(2) != b"A" or raw[: found[0].start()].strip():
            raise PoisonRecord("not_modsec_audit", "record does not start with part A")
        # A body line shaped like a boundary but with another entry id is body text:
        # the id is random per entry, so a client cannot forge a real boundary.
        entry = found[0].group(1)
        markers = [m for m in found if m.group(1) == entry]
        if markers[-1].group(2) != b"Z" or raw[markers[-1].end() :].strip():
            raise PoisonRecord("truncated", "audit entry has no closing part Z")
        parts: dict[str, bytes] = {}
        for here, after in itertools.pairwise(markers):
            parts.setdefault(
                text(here.group(2)), raw[here.end() : after.start()].strip(b"\r\n")
            )
        if "B" not in parts:
            raise PoisonRecord("no_request_headers", "audit entry has no part B")
        return parts
