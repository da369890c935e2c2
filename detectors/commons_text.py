"""The second family: Apache Commons Text interpolation (CVE-2022-42889, "Text4Shell").

``StringSubstitutor.createInterpolator()`` in Commons Text 1.5 to 1.9 resolves
``${script:...}``, ``${dns:...}`` and ``${url:...}`` among its default lookups.
Unlike Log4j it does not substitute inside variable names (the first ``}`` ends
a variable) but it does substitute resolved values again, so
``${base64Decoder:...}`` and ``${urlDecoder:...}`` can unwrap a payload. Prefixes
are case-insensitive. Nothing is ever resolved for real: the three dangerous
lookups are recorded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from urllib.parse import unquote_plus

from detectors import iocs
from detectors.interpreter import Limits
from detectors.model import CVE_COMMONS_TEXT, FAMILY_COMMONS_TEXT, Lookup

_SHAPE = re.compile(r"\$\{\s*(?:script|dns|url|file|base64decoder|urldecoder)\s*:")
_EXEC = re.compile(r"exec\(\s*(['\"])(.*?)\1", re.DOTALL)
_REMOTE = frozenset({"script", "dns", "url"})


# XXX(#3): unlike the Log4j interpreter this one has no differential test against
# the real library (commons-text 1.9); it follows the documented behaviour only.


class _Stop(Exception):
    pass


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
    run = _Run(limits or Limits())
    with contextlib.suppress(_Stop):
        run.subst(text, None, 0)

    return [_lookup(kind, key, decodings) for kind, key in dict.fromkeys(run.calls)]


class _Run:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.calls: list[tuple[str, str]] = []

    def subst(self, s: str, prior: list[str] | None, depth: int) -> str:
        if depth > self.limits.max_depth:
            raise _Stop
        out: list[str] = []
        seg = 0
        pos = 0
        while True:
            self.steps += 1
            if self.steps > self.limits.max_steps:
                raise _Stop
            p = s.find("${", pos)
            if p < 0:
                break
            prev = s[p - 1] if p > seg else (out[-1][-1:] if out else "")
            if prev == "$":
                if p > seg:
                    out.append(s[seg : p - 1])
                    seg = p
                elif out:
                    out[-1] = out[-1][:-1]
                pos = p + 1
                continue
            end = s.find("}", p + 2)
            if end < 0:
                break
            name, default = _split(s[p + 2 : end])
            if prior is None:
                prior = ["".join(out) + s[seg:]]
            if name in prior:
                raise _Stop  # Commons Text throws on a cycle as well
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
            try:
                return base64.b64decode(key, validate=True).decode("latin-1")
            except (binascii.Error, ValueError):
                raise _Stop from None  # IllegalArgumentException in Commons Text
        if prefix == "urldecoder":
            return unquote_plus(key)

        return None


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
