"""What every log-format parser provides, and helpers they share."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import ClassVar, Protocol

from pipeline.errors import PoisonRecord
from pipeline.events import HttpRequest

#: Longest record l4s parses; longer ones are dead-lettered, not truncated.
MAX_RECORD_BYTES = 1 << 20


class Parser(Protocol):
    """Turns one raw record into an :class:`HttpRequest`.

    Example:
        >>> request = REGISTRY["combined"]().parse(line)  # doctest: +SKIP
    """

    name: ClassVar[str]

    def parse(self, raw: bytes) -> HttpRequest:
        """Parse fully. Raises :class:`PoisonRecord` with a reason code."""
        ...

    def looks_like(self, raw: bytes) -> bool:
        """A cheap test used by auto-detection; False on doubt."""
        ...


def text(raw: bytes) -> str:
    """Decode record bytes; invalid UTF-8 becomes U+FFFD rather than an error."""
    return raw.decode("utf-8", "replace")


def check_size(raw: bytes) -> None:
    """Refuse records too large to be a log line."""
    if len(raw) > MAX_RECORD_BYTES:
        raise PoisonRecord("too_large", f"{len(raw)} bytes, limit {MAX_RECORD_BYTES}")


def valid_ip(value: str | None) -> str | None:
    """The address in canonical form, or None when ``value`` is not an IP."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class TrustedProxies:
    """Decides the client address from the TCP peer and a forwarded-for chain.

    The chain is believed only hop by hop from the right while each hop is a
    configured proxy: the client is the right-most address that is not one.
    A header from an untrusted peer is ignored, so it can never choose the
    address that reaches the blocklist.

    Args:
        networks: addresses or prefixes of the operator's own proxies.

    Example:
        >>> TrustedProxies(["10.0.0.0/8"]).client("10.0.0.5", ["203.0.113.9"])
        '203.0.113.9'
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusted(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in net for net in self._networks)

    def client(self, peer: str | None, chain: Iterable[str]) -> str | None:
        if peer is None or not self._networks or not self.trusted(peer):
            return peer
        current = peer
        for hop in reversed(list(chain)):
            address = valid_ip(hop)
            if address is None:
                # Garbage in the chain: stop at the last address we could trust.
                return current
            current = address
            if not self.trusted(address):
                return address
        return current


def split_forwarded_for(value: str) -> list[str]:
    """The hops of an X-Forwarded-For value, left to right."""
    return [hop.strip() for hop in value.split(",") if hop.strip()]


def split_forwarded(value: str) -> list[str]:
    """The ``for=`` hops of an RFC 7239 Forwarded header, left to right."""
    hops = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.lower() == "for" and val:
                hops.append(val.strip().strip('"'))
    return hops
