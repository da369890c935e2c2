"""Special-purpose address ranges (IANA registries), labelled instead of looked up."""

from __future__ import annotations

import ipaddress
from typing import Final

# Sources: IANA IPv4 Special-Purpose Address Registry and IANA IPv6 Special-Purpose
# Address Registry (RFC 6890 and the RFCs each row names), plus RFC 5771 and
# RFC 4291 for multicast. Order matters only where ranges nest: the first match wins,
# so the narrow rows come before the wide ones that contain them.
_V4_ROWS: Final = (
    ("0.0.0.0/8", "this-network"),  # RFC 791
    ("10.0.0.0/8", "private"),  # RFC 1918
    ("100.64.0.0/10", "cgnat"),  # RFC 6598 shared address space
    ("127.0.0.0/8", "loopback"),  # RFC 1122
    ("169.254.0.0/16", "link-local"),  # RFC 3927
    ("172.16.0.0/12", "private"),  # RFC 1918
    ("192.0.0.0/24", "ietf-protocol"),  # RFC 6890
    ("192.0.2.0/24", "documentation"),  # RFC 5737 TEST-NET-1
    ("192.31.196.0/24", "as112"),  # RFC 7535
    ("192.52.193.0/24", "amt"),  # RFC 7450
    ("192.88.99.0/24", "6to4-relay"),  # RFC 7526 (deprecated anycast)
    ("192.168.0.0/16", "private"),  # RFC 1918
    ("192.175.48.0/24", "as112"),  # RFC 7534
    ("198.18.0.0/15", "benchmarking"),  # RFC 2544
    ("198.51.100.0/24", "documentation"),  # RFC 5737 TEST-NET-2
    ("203.0.113.0/24", "documentation"),  # RFC 5737 TEST-NET-3
    ("224.0.0.0/4", "multicast"),  # RFC 5771
    ("255.255.255.255/32", "broadcast"),  # RFC 919
    ("240.0.0.0/4", "reserved"),  # RFC 1112
)
_V6_ROWS: Final = (
    ("::/128", "unspecified"),  # RFC 4291
    ("::1/128", "loopback"),  # RFC 4291
    ("64:ff9b:1::/48", "nat64"),  # RFC 8215 local-use translation
    ("100::/64", "discard"),  # RFC 6666
    ("2001:2::/48", "benchmarking"),  # RFC 5180
    ("2001:db8::/32", "documentation"),  # RFC 3849
    ("2001:10::/28", "orchid"),  # RFC 4843 (deprecated)
    ("2001:20::/28", "orchid"),  # RFC 7343
    ("2001::/23", "ietf-protocol"),  # RFC 2928 (Teredo 2001::/32 is inside)
    ("3fff::/20", "documentation"),  # RFC 9637
    ("5f00::/16", "srv6-sid"),  # RFC 9602
    ("fc00::/7", "private"),  # RFC 4193 unique-local
    ("fe80::/10", "link-local"),  # RFC 4291
    ("ff00::/8", "multicast"),  # RFC 4291
)


def _table(rows: tuple[tuple[str, str], ...]) -> tuple[tuple[int, int, str], ...]:
    out = []
    for cidr, label in rows:
        net = ipaddress.ip_network(cidr)
        out.append((int(net.network_address), int(net.broadcast_address), label))

    return tuple(out)


_V4: Final = _table(_V4_ROWS)
_V6: Final = _table(_V6_ROWS)
_MAPPED_LO: Final = 0xFFFF << 32  # ::ffff:0:0/96
_MAPPED_HI: Final = _MAPPED_LO | 0xFFFFFFFF
_NAT64_LO: Final = int(ipaddress.IPv6Address("64:ff9b::"))  # RFC 6052 well-known
_NAT64_HI: Final = _NAT64_LO | 0xFFFFFFFF


def special_v4(value: int) -> str | None:
    """The special-purpose label of an IPv4 address given as an int, or None."""
    for lo, hi, label in _V4:
        if lo <= value <= hi:
            return label

    return None


def special_v6(value: int) -> str | None:
    """The special-purpose label of an IPv6 address given as an int, or None.

    IPv4-mapped and NAT64 well-known-prefix addresses are not labelled here; the
    caller unwraps them with :func:`embedded_v4` and looks up the IPv4 address.
    """
    for lo, hi, label in _V6:
        if lo <= value <= hi:
            return label
    if value >> 125 != 0b001:  # outside 2000::/3, the global unicast block
        if _MAPPED_LO <= value <= _MAPPED_HI or _NAT64_LO <= value <= _NAT64_HI:
            return None
        return "reserved"

    return None


def embedded_v4(value: int) -> int | None:
    """The IPv4 address inside an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address.

    6to4 (2002::/16, RFC 3056) carries the IPv4 address in bits 16–47; without
    unwrapping it, ``2002:a00:1::1`` would hide the private 10.0.0.1.
    """
    if _MAPPED_LO <= value <= _MAPPED_HI or _NAT64_LO <= value <= _NAT64_HI:
        return value & 0xFFFFFFFF
    if value >> 112 == 0x2002:
        return (value >> 80) & 0xFFFFFFFF

    return None


def ranges() -> tuple[tuple[str, str], ...]:
    """Every special-purpose range as ``(prefix, label)``, IPv4 rows first."""
    return _V4_ROWS + _V6_ROWS
