"""The second family: Apache Commons Text interpolation (CVE-2022-42889, "Text4Shell").

``StringSubstitutor.createInterpolator()`` in Commons Text 1.5 to 1.9 resolves
``${script:...}``, ``${dns:...}`` and ``${url:...}`` among its default lookups.
Unlike Log4j it does not substitute inside variable names (the first ``}`` ends
a variable) but it does substitute resolved values again, so
``${base64Decoder:...}`` and ``${urlDecoder:...}`` can unwrap a payload. Prefixes
are case-insensitive. An escaped ``$${`` loses its escape only when the variable
is complete, and scanning then goes on inside it. Nothing is ever resolved for
real: the three dangerous lookups are recorded. The differential tests hold this
against commons-text 1.9 itself.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from detectors import iocs
from detectors.interpreter import Limits
from detectors.model import (
    CVE_COMMONS_TEXT,
    FAMILY_COMMONS_TEXT,
    LIMIT_DEPTH,
    LIMIT_STEPS,
    Lookup,
)

_SHAPE = re.compile(r"\$\{\s*(?:script|dns|url|file|base64decoder|urldecoder)\s*:")
_EXEC = re.compile(r"exec\(\s*(['\"])(.*?)\1", re.DOTALL)
_REMOTE = frozenset({"script", "dns", "url"})
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class TextEvaluation:
    """What Commons Text would do with a string.

    Args:
        calls: ``(prefix, key)`` of each script/dns/url lookup, in order.
        output: the replaced text, or None when evaluation stopped.
        stopped: ``recursion``, ``illegal-argument`` or a work bound, else None.

    Example:
        >>> evaluate("${urlDecoder:%zz}").stopped
        'illegal-argument'
    """

    calls: list[tuple[str, str]] = field(default_factory=list)
    output: str | None = None
    stopped: str | None = None


def evaluate(text: str, limits: Limits | None = None) -> TextEvaluation:
    """Run ``StringSubstitutor.replace`` of Commons Text 1.9 over ``text``.

    Example:
        >>> evaluate("${url:UTF-8:http://example.com/}").calls
        [('url', 'UTF-8:http://example.com/')]
    """
    run = _Run(limits or Limits())
    result = TextEvaluation(calls=run.calls)
    try:
        result.output = run.subst(text, None, 0)
    except _Stop as stop:
        result.stopped = stop.reason

    return result


def shaped(text: str) -> bool:
    """True when ``text`` holds a Commons Text lookup prefix an attacker would use."""
    return "${" in text and _SHAPE.search(text.lower()) is not None


def lookups(
    text: str, decodings: tuple[str, ...], limits: Limits | None = None
) -> list[Lookup]:
    """The script/dns/url lookups Commons Text would make for ``text``.

    Example:
        >>> [x.host for x in lookups("${dns:address|example.com}", ())]
        ['example.com']
    """
    if not shaped(text):
        return []
    calls = evaluate(text, limits).calls

    return [_lookup(kind, key, decodings) for kind, key in dict.fromkeys(calls)]


class _Run:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.calls: list[tuple[str, str]] = []

    def subst(self, s: str, prior: list[str] | None, depth: int) -> str:
        if depth > self.limits.max_depth:
            raise _Stop(LIMIT_DEPTH)
        out: list[str] = []
        seg = 0
        pos = 0
        while True:
            self.steps += 1
            if self.steps > self.limits.max_steps:
                raise _Stop(LIMIT_STEPS)
            p = s.find("${", pos)
            if p < 0:
                break
            prev = s[p - 1] if p > seg else _last_char(out)
            end = s.find("}", p + 2)
            if end < 0:
                break
            if prev == "$":
                # Unlike Log4j, Commons Text drops the escape only when the
                # variable is complete, then scans on from inside its name.
                if p > seg:
                    out.append(s[seg : p - 1])
                    seg = p
                else:
                    _drop_last_char(out)
                pos = p + 2
                continue
            name, default = _split(s[p + 2 : end])
            if prior is None:
                prior = ["".join(out) + s[seg:]]
            if name in prior:
                raise _Stop("recursion")  # Commons Text throws on a cycle too
            prior.append(name)
            value = self.resolve(name)
            if value is None:
                value = default
            if value is not None:
                value = self.subst(value, prior, depth + 1)
                out.append(s[seg:p])
                out.append(value)
                seg = end + 1
            prior.pop()
            pos = end + 1
        if not out:
            return s
        out.append(s[seg:])

        return "".join(out)

    def resolve(self, name: str) -> str | None:
        colon = name.find(":")
        if colon < 0:
            return None
        prefix = name[:colon].lower()
        key = name[colon + 1 :]
        if prefix in _REMOTE:
            self.calls.append((prefix, key))
            return None
        if prefix == "base64decoder":
            # java.util.Base64's basic decoder: padding optional, nothing else
            # tolerated; Commons Text turns its errors into "unresolved".
            if len(key) % 4 == 1:
                return None
            padded = key if "=" in key else key + "=" * (-len(key) % 4)
            try:
                return base64.b64decode(padded, validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                return None
        if prefix == "urldecoder":
            # java.net.URLDecoder throws on a % without two hex digits, and
            # Commons Text lets that escape.
            if _BAD_PERCENT.search(key):
                raise _Stop("illegal-argument")
            return unquote_plus(key, errors="replace")

        return None


def _last_char(chunks: list[str]) -> str:
    for chunk in reversed(chunks):
        if chunk:
            return chunk[-1]

    return ""


def _drop_last_char(chunks: list[str]) -> None:
    for i in range(len(chunks) - 1, -1, -1):
        if chunks[i]:
            chunks[i] = chunks[i][:-1]
            return


def _split(expr: str) -> tuple[str, str | None]:
    """Split at the first ``:-`` that comes before any nested ``${``."""
    cut = expr.find(":-")
    if cut < 0:
        return expr, None
    nested = expr.find("${")
    if 0 <= nested < cut:
        return expr, None

    return expr[:cut], expr[cut + 2 :]


def _lookup(kind: str, key: str, decodings: tuple[str, ...]) -> Lookup:
    host = ""
    port: int | None = None
    path = ""
    commands: tuple[str, ...] = ()
    if kind == "dns":
        host = key.rsplit("|", maxsplit=1)[-1].strip()
    elif kind == "url":
        _charset, _, url = key.partition(":")
        target = iocs.split_target(url)
        host, port, path = target.host, target.port, target.path
    else:
        commands = tuple(m.group(2) for m in _EXEC.finditer(key))
    techniques = {"commons-text"}
    if commands:
        techniques.add("exploit-kit-command")
    oob = iocs.oob_service(host) if host else None
    if oob is not None:
        techniques.add("oob-service")

    return Lookup(
        family=FAMILY_COMMONS_TEXT,
        url=f"{kind}:{key}",
        scheme=kind,
        host=host,
        port=port,
        path=path,
        decodings=decodings,
        techniques=tuple(sorted(techniques)),
        cves=(CVE_COMMONS_TEXT,),
        exfil=(),
        oob=oob,
        commands=commands,
    )
