"""What every log-format parser provides, and helpers they share."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.settings import FormatSettings
from pipeline.formats.times import Clock

#: Longest record l4s parses; longer ones are dead-lettered, not truncated.
MAX_RECORD_BYTES = 1 << 20

#: How auto-detection treats a parser: ``line`` and ``json`` parsers are tried on
#: records of that shape; ``none`` parsers are used only when named.
Sniff = Literal["line", "json", "none"]


class Parser(Protocol):
    """Turns one raw record into an :class:`HttpRequest`.

    ``parse`` returns None for a well-formed record that is not a request: a
    directive or comment line (W3C ``#Fields:``, Zeek ``#fields``) which may
    change how the following records of the stream are read. Everything that is
    not well-formed raises :class:`PoisonRecord`, never another exception.

    Example:
        >>> request = REGISTRY["combined"]().parse(line)  # doctest: +SKIP
    """

    def __init__(self, settings: FormatSettings | None = None) -> None: ...

    @property
    def name(self) -> str:
        """Registry key (or configured name) that ``HttpRequest.format`` carries."""
        ...

    @property
    def sniff(self) -> Sniff:
        """Which records auto-detection offers to ``looks_like``."""
        ...

    def parse(self, raw: bytes) -> HttpRequest | None:
        """Parse fully. Raises :class:`PoisonRecord` with a reason code."""
        ...

    def looks_like(self, raw: bytes) -> bool:
        """A cheap test used by auto-detection and the prefilter; False on doubt."""
        ...


class BaseParser:
    """Shared state of the built-in parsers: settings and the time policy.

    Args:
        settings: the ``[formats]`` settings; defaults when None.
    """

    name: str = ""
    sniff: Sniff = "line"

    def __init__(self, settings: FormatSettings | None = None) -> None:
        self.settings = settings or FormatSettings()
        self.clock = Clock(self.settings)


def text(raw: bytes) -> str:
    """Decode record bytes; invalid UTF-8 becomes U+FFFD rather than an error."""
    return raw.decode("utf-8", "replace")


def check_size(raw: bytes) -> None:
    """Refuse records too large to be a log line."""
    if len(raw) > MAX_RECORD_BYTES:
        raise PoisonRecord("too_large", f"{len(raw)} bytes, limit {MAX_RECORD_BYTES}")


def excerpt(value: bytes | str, limit: int = 24) -> str:
    """A short, printable excerpt of attacker-controlled input for a detail text."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    cut = "".join(c if c.isprintable() else "?" for c in value[:limit])
    return repr(cut) + ("…" if len(value) > limit else "")


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
#: Canonical dotted IPv4 (no leading zeros): the common case, without ipaddress.
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def valid_ip(value: str | None) -> str | None:
    """The address in canonical form, or None when ``value`` is not an IP.

    Accepts what logs and forwarding headers carry: ``203.0.113.9:4711``,
    ``[2001:db8::1]:4711``, ``"[2001:db8::1]"``, bare IPv6; IPv4-mapped IPv6
    becomes IPv4. RFC 7239 obfuscated identifiers (``unknown``, ``_hidden``) and
    host names are not addresses.
    """
    if not value:
        return None
    value = value.strip().strip('"').strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        value = value[1:end]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    if not value or len(value) > 64:
        return None
    if _IPV4.fullmatch(value) is not None:
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


class TrustedProxies:
    """Decides the client address from the TCP peer and a forwarded-for chain.

    The chain is believed only hop by hop from the right while each hop is a
    configured proxy: the client is the right-most address that is not one.
    A header from an untrusted peer is ignored, so it can never choose the
    address that reaches the blocklist. When a trusted peer names no client (no
    chain) or the right-most untrusted hop is not an address (``unknown``,
    ``_hidden``, garbage), the client cannot be known and the answer is None:
    naming the proxy instead would block the operator's own infrastructure.

    Args:
        networks: addresses or prefixes of the operator's own proxies.

    Example:
        >>> TrustedProxies(["10.0.0.0/8"]).client("10.0.0.5", ["203.0.113.9"])
        '203.0.113.9'
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusted(self, address: str) -> bool:
        """True when ``address`` is inside a configured proxy network."""
        canonical = valid_ip(address)
        if canonical is None:
            return False
        ip = ipaddress.ip_address(canonical)
        return any(ip.version == net.version and ip in net for net in self._networks)

    def client(self, peer: str | None, chain: Sequence[str]) -> str | None:
        """The client address for a request from ``peer`` carrying ``chain``."""
        address = valid_ip(peer)
        if address is None or not self._networks or not self.trusted(address):
            return address
        if not chain:
            return None
        for hop in reversed(chain):
            address = valid_ip(hop)
            if address is None:
                return None
            if not self.trusted(address):
                return address

        # Every hop is one of ours: the request started inside the trusted network.
        return address


def split_forwarded_for(value: str) -> list[str]:
    """The hops of an X-Forwarded-For value, left to right."""
    return [hop.strip() for hop in value.split(",") if hop.strip()]


_FORWARDED_PAIR = re.compile(
    r'\s*([^=;,\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*([;,]?)'
)


def split_forwarded(value: str) -> list[str]:
    """The ``for=`` hops of an RFC 7239 Forwarded header, left to right.

    Quoted values (``for="[2001:db8::1]:4711"``) are unquoted; an element with
    no ``for=`` adds no hop.
    """
    hops = []
    for match in _FORWARDED_PAIR.finditer(value):
        key, val = match.group(1), match.group(2)
        if key.lower() != "for" or not val:
            continue
        if val.startswith('"'):
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        hops.append(val)
    return hops


def forwarded_chain(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The forwarded-for chain from request headers.

    X-Forwarded-For wins when present (repeated headers concatenate, in order);
    otherwise RFC 7239 ``Forwarded`` ``for=`` values.
    """
    xff: list[str] = []
    forwarded: list[str] = []
    for name, value in headers:
        if name == "x-forwarded-for":
            xff.extend(split_forwarded_for(value))
        elif name == "forwarded":
            forwarded.extend(split_forwarded(value))
    return tuple(xff or forwarded)


def optional(value: str | None) -> str | None:
    """None for the empty and ``-`` placeholders logs use for "not set"."""
    if value is None or value in ("", "-"):
        return None
    return value


def to_int(value: str | int | None, field: str) -> int | None:
    """An integer log field; ``-`` and empty are None, other junk is malformed."""
    if value is None or isinstance(value, int):
        return value
    if value in ("", "-"):
        return None
    if len(value) > 20 or not value.lstrip("+-").isdigit():
        raise PoisonRecord("bad_field", f"{field} is not a number: {excerpt(value)}")
    return int(value)


def split_request(request: str | None) -> tuple[str | None, str | None, str | None]:
    """Method, target and protocol of a request line.

    Garbage request lines (TLS on a plain port, scanners) are valid log lines:
    the whole string is kept as the target so it is still scanned. A target with
    spaces (some balancers log them unencoded) stays whole.
    """
    if not request or request == "-":
        return None, None, None
    parts = request.split(" ")
    method_ok = parts[0].isascii() and parts[0].isalpha()
    if len(parts) >= 3 and method_ok and parts[-1].startswith("HTTP/"):
        return parts[0], " ".join(parts[1:-1]), parts[-1]
    if len(parts) == 2 and method_ok:
        return parts[0], parts[1], None
    return None, request, None


def host_of_url(url: str | None) -> str | None:
    """The host of an absolute URL (``http://host:80/x``), else None."""
    if not url:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.isalpha():
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if authority.startswith("["):
        return authority.partition("]")[0] + "]" if "]" in authority else None
    return authority.partition(":")[0] or None


def make_request(
    format: str,
    *,
    timestamp: float | None = None,
    peer: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    forwarded_for: Sequence[str] | None = None,
    method: str | None = None,
    host: str | None = None,
    uri: str | None = None,
    protocol: str | None = None,
    user_agent: str | None = None,
    referer: str | None = None,
    body: str | None = None,
    status: int | None = None,
    bytes_sent: int | None = None,
    extra: Iterable[tuple[str, str | None]] = (),
    ecs_fields: Iterable[tuple[str, str | None]] = (),
) -> HttpRequest:
    """The normalized request, with what headers imply filled in.

    ``client_ip`` is the peer; the stage applies the trusted-proxy rule. The
    chain comes from the headers unless the format logged it apart. User agent,
    referer and host fall back to their headers.
    """
    header_map = {name: value for name, value in reversed(headers)}
    if forwarded_for is None:
        forwarded_for = forwarded_chain(headers)
    address = valid_ip(peer)
    return HttpRequest(
        format=format,
        timestamp=timestamp,
        client_ip=address,
        peer_ip=address,
        forwarded_for=tuple(forwarded_for),
        method=optional(method),
        host=optional(host) or optional(header_map.get("host")),
        uri=optional(uri),
        protocol=optional(protocol),
        user_agent=optional(user_agent) or optional(header_map.get("user-agent")),
        referer=optional(referer) or optional(header_map.get("referer")),
        headers=tuple(headers),
        body=optional(body),
        status=status,
        bytes_sent=bytes_sent,
        extra=tuple((k, v) for k, v in extra if v and v != "-"),
        ecs_fields=tuple((k, v) for k, v in ecs_fields if v and v != "-"),
    )
