"""Verdict types the detection engine returns, and its technique vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

FAMILY_LOG4SHELL = "log4shell"
FAMILY_COMMONS_TEXT = "commons-text"

CVE_LOG4SHELL = "CVE-2021-44228"
CVE_BYPASS = "CVE-2021-45046"
CVE_RECURSION = "CVE-2021-45105"
CVE_COMMONS_TEXT = "CVE-2022-42889"

LIMIT_LENGTH = "length"
LIMIT_DEPTH = "depth"
LIMIT_STEPS = "steps"

#: Every technique tag the engine can emit, with what it means. Tags become
#: Prometheus label values, so this set is closed: nothing else is ever emitted.
TECHNIQUES: dict[str, str] = {
    # how the lookup was written
    "plain": "a jndi lookup written out with no obfuscation at all",
    "nested": "a lookup name built from other lookups (${${...}...})",
    "lower": "the ${lower:...} lookup",
    "upper": "the ${upper:...} lookup",
    "unicode-case": "lower/upper mapping a non-ASCII letter to ASCII (dotless i ...)",
    "default-value": "the ${key:-value} default syntax supplied text",
    "empty-key": "a lookup with an empty or separator-only key (${::-j}, ${:-j})",
    "unknown-lookup": "a prefix Log4j does not know (${k8s:..}, ${foo:..})",
    "env-lookup": "${env:...}",
    "sys-lookup": "${sys:...}",
    "java-lookup": "${java:...}",
    "date-lookup": "${date:...}",
    "context-lookup": "${ctx:...}, ${main:...}, ${map:...}, ${sd:...}, ${marker:...}, "
    "${bundle:...}, ${jvmrunargs:...}, ${log4j:...}, ${event:...} or ${hostName}",
    "prefix-case": "the lookup prefix in mixed or upper case (${JnDi:...})",
    "escape": "the $${ escape, undone by a later evaluation",
    "rescan": "reached only because Log4j substitutes a message again after a pass",
    "recursion": "a self-referencing default that makes Log4j loop (CVE-2021-45105)",
    # what the target looks like
    "exfiltration": "the target carries a victim value (env var, property, host name)",
    "host-fragment": "a host#name authority (the CVE-2021-45046 allow-list bypass)",
    "ipv6": "an IPv6 literal host",
    "ip-literal": "an IPv4 literal host",
    "uncommon-scheme": "a JNDI scheme other than ldap, ldaps, rmi and dns",
    "exploit-kit-command": "a command in an exploit-kit path (/Basic/Command/...)",
    "oob-service": "the host belongs to a public out-of-band testing service",
    # transport encodings undone before evaluation
    "url-encoded": "percent-encoding, once",
    "url-encoded-repeated": "percent-encoding applied two or more times",
    "unicode-escape": "\\uXXXX escapes (and %uXXXX)",
    "hex-escape": "\\xHH escapes",
    "json-escape": "JSON string escapes other than \\u",
    "html-entity": "HTML/XML character references (&#36;, &#x24;, &dollar;)",
    "base64": "base64 (Authorization: Basic credentials)",
    "form-encoded": "+ for space in form data",
    # second family
    "commons-text": "a Commons Text lookup (${script:..}, ${dns:..}, ${url:..})",
    # engine limits
    "limit-hit": "a work bound stopped evaluation before the end of the value",
}


@dataclass(frozen=True, slots=True)
class Lookup:
    """One remote lookup the evaluated value reaches.

    Args:
        family: ``log4shell`` (a ``jndi:`` lookup) or ``commons-text`` (CVE-2022-42889).
        url: the evaluated target, e.g. ``ldap://198.51.100.7:1389/a``; victim values
            the target carries appear as ``${env:NAME}``.
        scheme: lower-case scheme (``ldap``, ``rmi``, ``dns``; for Commons Text
            ``script``, ``dns`` or ``url``).
        host: callback host, ``""`` when none; IPv6 without brackets.
        port: port when given.
        path: everything after the authority.
        decodings: transport decodings undone, outermost first.
        techniques: tags from :data:`TECHNIQUES`.
        cves: CVE identifiers the form exercises.
        exfil: victim values targeted (``env:AWS_SECRET_ACCESS_KEY``, ``hostName``).
        oob: name of the out-of-band testing service the host belongs to.
        commands: shell commands decoded from exploit-kit paths.

    Example:
        >>> Lookup("log4shell", "ldap://example.com/a", "ldap", "example.com", None,
        ...        "/a", (), ("plain",), ("CVE-2021-44228",), (), None, ()).host
        'example.com'
    """

    family: str
    url: str
    scheme: str
    host: str
    port: int | None
    path: str
    decodings: tuple[str, ...]
    techniques: tuple[str, ...]
    cves: tuple[str, ...]
    exfil: tuple[str, ...]
    oob: str | None
    commands: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FieldVerdict:
    """What one field of a request evaluates to.

    Args:
        field: ECS name of the field (``user_agent.original``).
        malicious: the evaluated form reaches a remote lookup.
        inert: attack-shaped, but cannot evaluate to a remote lookup.
        lookups: the remote lookups reached.
        techniques: union of the lookups' techniques (and the inert shape's).
        limit_hit: ``length``, ``depth`` or ``steps`` when a work bound stopped
            evaluation, else None.

    Example:
        >>> FieldVerdict("url.original", False, False, (), (), None).malicious
        False
    """

    field: str
    malicious: bool
    inert: bool
    lookups: tuple[Lookup, ...]
    techniques: tuple[str, ...]
    limit_hit: str | None


@dataclass(frozen=True, slots=True)
class RecordVerdict:
    """What a whole request evaluates to.

    Args:
        malicious: any field reaches a remote lookup.
        inert: no field is malicious but some field is attack-shaped.
        fields: only the fields with a malicious or inert verdict.
        techniques: union over those fields, sorted.
        limit_hit: the first work bound hit in any field, else None.

    Example:
        >>> RecordVerdict(False, False, (), (), None).fields
        ()
    """

    malicious: bool
    inert: bool
    fields: tuple[FieldVerdict, ...]
    techniques: tuple[str, ...]
    limit_hit: str | None
