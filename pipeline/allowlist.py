"""Addresses l4s never publishes: special ranges, the operator's own, an allowlist.

The allowlist file holds one address, prefix or host name per line, an optional
expiry (``2026-12-31`` or ``2026-12-31T18:00:00Z``) and an optional ``#`` comment::

    198.51.100.0/24                     # partner CDN
    203.0.113.7   2026-12-31            # pen test until the end of the year
    updates.example.com                 # egress: never list this name

It is re-read when it changes; a broken edit keeps the previous list in force.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from enrichers.special import embedded_v4, ranges, special_v4, special_v6
from pipeline import log
from pipeline.config import BlocklistSettings
from pipeline.errors import DataFileError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_log = log.get("allowlist")
_NAME = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$"
)

#: Reason codes for an address that is never published.
SPECIAL, NEVER_BLOCK, ALLOWLIST = "special", "never-block", "allowlist"


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One line of the allowlist file: a network or a host name, maybe expiring."""

    network: Network | None
    name: str | None
    expires: float | None
    line: int

    def live(self, now: float) -> bool:
        return self.expires is None or now < self.expires


def special_label(address: str, documentation_as_public: bool = False) -> str | None:
    """The special-purpose label of an address (IPv4 inside IPv6 unwrapped), or None."""
    ip = ipaddress.ip_address(address)
    value = int(ip)
    if ip.version == 6:
        inner = embedded_v4(value)
        label = special_v6(value) if inner is None else special_v4(inner)
    else:
        label = special_v4(value)
    if label == "documentation" and documentation_as_public:
        return None

    return label


def network_of(text: str) -> Network:
    """The network an entry key names: a prefix, or one address as /32 or /128."""
    return ipaddress.ip_network(text, strict=False)


def parse(text: str, origin: str) -> list[AllowEntry]:
    """Parse allowlist text; :class:`DataFileError` names the first bad line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise DataFileError(
                f"allowlist {origin} line {number}: expected ADDRESS [EXPIRY]"
            )
        entries.append(_entry(parts, origin, number))

    return entries


def _entry(parts: list[str], origin: str, number: int) -> AllowEntry:
    target = parts[0]
    expires = None
    if len(parts) == 2:
        try:
            when = datetime.fromisoformat(parts[1].replace("Z", "+00:00"))
        except ValueError:
            raise DataFileError(
                f"allowlist {origin} line {number}: {parts[1]!r} is not a date or an "
                "ISO 8601 time"
            ) from None
        expires = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    try:
        return AllowEntry(
            ipaddress.ip_network(target, strict=False), None, expires, number
        )
    except ValueError:
        pass
    name = target.lower().rstrip(".")
    if not _NAME.match(name) or name.replace(".", "").isdigit():
        raise DataFileError(
            f"allowlist {origin} line {number}: {target!r} is not an address, "
            "prefix or host name"
        )

    return AllowEntry(None, name, expires, number)


class Allowlist:
    """Decides whether an address, prefix or host may ever be published.

    Args:
        entries: allowlist lines (see :func:`parse`).
        never_block: the operator's own ranges, never published.
        documentation_as_public: treat the documentation ranges as public.
        path: the file the entries came from; :meth:`maybe_reload` re-reads it.

    Example:
        >>> entries = parse("198.51.100.0/24", "inline")
        >>> allow = Allowlist(entries, documentation_as_public=True)
        >>> allow.withheld("198.51.100.9", now=0), allow.withheld("10.0.0.1", now=0)
        ('allowlist', 'special')
    """

    def __init__(
        self,
        entries: Iterable[AllowEntry] = (),
        never_block: Iterable[str] = (),
        documentation_as_public: bool = False,
        path: Path | None = None,
    ) -> None:
        self.entries = tuple(entries)
        self.never_block = tuple(
            ipaddress.ip_network(n, strict=False) for n in never_block
        )
        self.documentation_as_public = documentation_as_public
        self.path = path
        self._stamp = self._file_stamp()
        self._special = tuple(
            (ipaddress.ip_network(cidr), label)
            for cidr, label in ranges()
            if not (label == "documentation" and documentation_as_public)
        )

    @classmethod
    def from_settings(cls, settings: BlocklistSettings) -> Allowlist:
        """The configured allowlist; a missing or broken file stops the start."""
        entries: list[AllowEntry] = []
        if settings.allowlist is not None:
            entries = _read(settings.allowlist)
        return cls(
            entries,
            settings.never_block,
            settings.documentation_as_public,
            settings.allowlist,
        )

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def maybe_reload(self) -> bool:
        """Re-read the file if it changed; True when the entries changed.

        A file that vanished or no longer parses keeps the current entries in
        force (and says so in the log): a half-written edit never unblocks or
        blocks anything by itself.
        """
        if self.path is None:
            return False
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            entries = _read(self.path)
        except DataFileError as exc:
            _log.warning("allowlist_reload_failed", path=str(self.path), error=str(exc))
            return False
        changed = entries != list(self.entries)
        self.entries = tuple(entries)
        _log.info("allowlist_reloaded", path=str(self.path), entries=len(entries))

        return changed

    def withheld(self, address: str, now: float) -> str | None:
        """Why ``address`` must not be published, or None when it may be."""
        if special_label(address, self.documentation_as_public) is not None:
            return SPECIAL
        ip = ipaddress.ip_address(address)
        if any(ip in net for net in self.never_block):
            return NEVER_BLOCK
        for entry in self.entries:
            if entry.network is not None and ip in entry.network and entry.live(now):
                return ALLOWLIST

        return None

    def withheld_network(self, network: Network, now: float) -> str | None:
        """Why no entry may cover ``network`` (it overlaps a protected one), or None."""
        for protected, _ in self._special:
            if protected.version == network.version and network.overlaps(protected):
                return SPECIAL
        for protected in self.never_block:
            if protected.version == network.version and network.overlaps(protected):
                return NEVER_BLOCK
        for entry in self.entries:
            net = entry.network
            if (
                net is not None
                and net.version == network.version
                and network.overlaps(net)
                and entry.live(now)
            ):
                return ALLOWLIST

        return None

    def withheld_host(self, host: str, now: float) -> str | None:
        """Why a callback host (address or name) must not be listed, or None."""
        try:
            return self.withheld(host, now)
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        for entry in self.entries:
            if entry.name is None or not entry.live(now):
                continue
            if name == entry.name or name.endswith("." + entry.name):
                return ALLOWLIST

        return None


def _read(path: Path) -> list[AllowEntry]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise DataFileError(f"allowlist {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"cannot read allowlist {path}: {exc}") from None

    return parse(text, str(path))
