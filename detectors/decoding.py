"""Transport decodings an application may undo before it logs a value.

Each decoder maps an escape sequence to the character it stands for and leaves
everything else alone. :func:`candidates` applies them in every order that changes
the text (a small breadth-first search), so a value percent-encoded twice and then
HTML-escaped is seen in all its plausible decoded forms, each with the decodings
that led to it, outermost first.

Every escape that can produce one of the characters ``$ { % \\ & # ;`` or an ASCII
letter or digit is listed in :mod:`detectors.prefilter`; that is what lets the
prefilter reject raw lines without decoding them (see its module docstring).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

URL = "url"
UNICODE = "unicode-escape"
HEX = "hex-escape"
JSON = "json-escape"
HTML = "html-entity"
BASE64 = "base64"
FORM = "form"

#: Fields where ``+`` may stand for a space (query strings and form bodies).
FORM_FIELDS = frozenset({"url.original", "http.request.body.content"})

MAX_LAYERS = 6
MAX_CANDIDATES = 12

_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")
_PERCENT_HEX = re.compile(rb"%(?=[0-9A-Fa-f]{2})")
_NOT_UNICODE_ESCAPE = re.compile(r"\\(?!u[0-9A-Fa-f]{4})")
_NOT_HEX_ESCAPE = re.compile(rb"\\(?!x[0-9A-Fa-f]{2})")
_NUMERIC_REF = re.compile(r"&#(?:[xX]([0-9A-Fa-f]+)|([0-9]+));?")
_NAMED_REF = re.compile(r"&[A-Za-z]")
_JSON = re.compile(r"\\([\"\\/bfnrt])")
_ENTITY = re.compile(r"&(?:#|[A-Za-z])")
# XXX(#3): only "Basic"/"basic" and a whole-value token are decoded; other case
# spellings of the scheme and base64 elsewhere (cookies, JWTs) are not, because
# the prefilter would need a costlier scan to stay sound for them.
_BASIC = re.compile(r"[ \t]*[Bb]asic[ \t]+([A-Za-z0-9+/_-]{4,}={0,3})[ \t]*")
# html.unescape maps NUL and the C1 range; the fast path leaves those to it.
_HTML_C0_REMAP = frozenset({0x00, 0x0D})
_JSON_CHARS = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """One decoded form of a value.

    Args:
        text: the value with the decodings undone.
        decodings: the decodings undone, outermost first.

    Example:
        >>> Candidate("${", ("url",)).decodings
        ('url',)
    """

    text: str
    decodings: tuple[str, ...]


# The decoders below hand the per-escape work to C codecs (escape_decode,
# unicode_escape) after neutralising every backslash that is not part of the
# escape being undone: a hostile 64 KB of escapes then costs a few regex passes,
# not one Python call per escape.


def url_decode(text: str) -> str:
    """Undo ``%HH`` (as UTF-8) and IIS-style ``%uHHHH`` escapes.

    Example:
        >>> url_decode("%24%7Bjndi%u003A")
        '${jndi:'
    """
    if "%u" in text or "%U" in text:
        text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    raw = text.encode("utf-8", "surrogatepass")
    if b"\\" in raw:
        raw = raw.replace(b"\\", b"\\\\")
    raw = _PERCENT_HEX.sub(rb"\\x", raw)

    return _escape_decode(raw)


def unicode_decode(text: str) -> str:
    """Undo ``\\uHHHH`` escapes, joining surrogate pairs.

    Example:
        >>> unicode_decode("\\\\u0024\\\\u007b")
        '${'
    """
    neutral = _NOT_UNICODE_ESCAPE.sub(r"\\\\", text)
    raw = neutral.encode("ascii", "backslashreplace")
    decoded = raw.decode("unicode_escape")
    if any("\ud800" <= c <= "\udfff" for c in decoded):
        decoded = decoded.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    return decoded


def hex_decode(text: str) -> str:
    """Undo ``\\xHH`` escapes; the bytes they give are read as UTF-8.

    Example:
        >>> hex_decode("\\\\x24\\\\x7b")
        '${'
    """
    raw = _NOT_HEX_ESCAPE.sub(rb"\\\\", text.encode("utf-8", "surrogatepass"))

    return _escape_decode(raw)


def _escape_decode(raw: bytes) -> str:
    """Decode ``\\xHH`` and ``\\\\`` in ``raw`` (nothing else is left escaped)."""
    # typeshed declares str, but escape_decode returns bytes.
    decoded = cast(bytes, codecs.escape_decode(raw)[0])

    return decoded.decode("utf-8", "replace")


def json_decode(text: str) -> str:
    """Undo the JSON string escapes other than ``\\u`` (``\\"``, ``\\\\``, ``\\/``...).

    Example:
        >>> json_decode('\\\\"a\\\\/b')
        '"a/b'
    """
    return _JSON.sub(lambda m: _JSON_CHARS[m.group(1)], text)


def html_decode(text: str) -> str:
    """Undo HTML/XML character references: decimal, hex (leading zeros too), named.

    Example:
        >>> html_decode("&dollar;&#x0007B;&#106;")
        '${j'
    """
    if "&#" in text:
        text = _NUMERIC_REF.sub(_numeric_ref, text)
    if _NAMED_REF.search(text) is None:
        return text

    return html.unescape(text)


def _numeric_ref(match: re.Match[str]) -> str:
    # Only the characters of the ASCII range are decoded here (they are all an
    # attack needs); anything else goes to html.unescape with its HTML5 rules.
    hex_digits, decimal = match.groups()
    code = int(hex_digits, 16) if hex_digits is not None else int(decimal)
    if 0 < code < 0x80 and code not in _HTML_C0_REMAP:
        return chr(code)
    return html.unescape(match.group(0))


def form_decode(text: str) -> str:
    """Read ``+`` as a space, as form data does."""
    return text.replace("+", " ")


def basic_credentials(value: str) -> str | None:
    """The decoded credentials of an ``Authorization: Basic`` value, else None.

    Example:
        >>> basic_credentials("Basic JHtqbmRpOmxkYXA6Ly9leGFtcGxlLmNvbS9hfQ==")
        '${jndi:ldap://example.com/a}'
    """
    match = _BASIC.fullmatch(value)
    if match is None:
        return None
    decoded = b64decode_loose(match.group(1))

    return None if decoded is None else decoded.decode("utf-8", "replace")


def b64decode_loose(token: str | bytes) -> bytes | None:
    """Decode standard or URL-safe base64 with or without padding; None if invalid."""
    if isinstance(token, str):
        token = token.encode("ascii", "replace")
    token = token.replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    if len(token) % 4 == 1:
        return None
    try:
        return base64.b64decode(token + b"=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


# (name, quick test, decoder); a decoder runs only when its quick test passes.
_DECODERS: tuple[tuple[str, Callable[[str], bool], Callable[[str], str]], ...] = (
    (
        URL,
        lambda t: ("%" in t and _PERCENT.search(t) is not None) or "%u" in t,
        url_decode,
    ),
    (UNICODE, lambda t: "\\u" in t, unicode_decode),
    (HEX, lambda t: "\\x" in t, hex_decode),
    (JSON, lambda t: "\\" in t and _JSON.search(t) is not None, json_decode),
    (HTML, lambda t: "&" in t and _ENTITY.search(t) is not None, html_decode),
)


#: Every decoder by name, for replaying a chain of decodings on another text.
DECODERS: dict[str, Callable[[str], str]] = {
    **{name: decode for name, _applies, decode in _DECODERS},
    FORM: form_decode,
}


def replay(text: str, decodings: tuple[str, ...]) -> str:
    """Apply the named decodings to ``text`` in order (base64 is not replayable)."""
    for name in decodings:
        decoder = DECODERS.get(name)
        if decoder is not None:
            text = decoder(text)

    return text


def candidates(value: str, field: str = "value") -> list[Candidate]:
    """Every decoded form of ``value`` worth evaluating, fewest decodings first.

    The raw value comes first. Form decoding (``+`` as space) is offered last and
    only for query strings and bodies, because ``+`` is also a base64 character in
    exploit-kit paths.

    Example:
        >>> [c.decodings for c in candidates("%2524%257B")]
        [(), ('url',), ('url', 'url')]
    """
    seen = {value}
    found = [Candidate(value, ())]
    credentials = basic_credentials(value) if "asic" in value else None
    if credentials is not None and credentials not in seen:
        seen.add(credentials)
        found.append(Candidate(credentials, (BASE64,)))
    index = 0
    while index < len(found) and len(found) < MAX_CANDIDATES:
        current = found[index]
        index += 1
        if len(current.decodings) >= MAX_LAYERS:
            continue
        for name, applies, decode in _DECODERS:
            if not applies(current.text):
                continue
            decoded = decode(current.text)
            if decoded in seen:
                continue
            seen.add(decoded)
            found.append(Candidate(decoded, (*current.decodings, name)))
            if len(found) >= MAX_CANDIDATES:
                break
    if field in FORM_FIELDS:
        for candidate in list(found):
            if "+" in candidate.text and len(found) < MAX_CANDIDATES + 4:
                decoded = form_decode(candidate.text)
                if decoded not in seen:
                    seen.add(decoded)
                    found.append(Candidate(decoded, (*candidate.decodings, FORM)))

    return found
