"""Tor exit relays from a list on disk, in any of the three public formats."""

from __future__ import annotations

import calendar
import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pipeline import log
from pipeline.errors import DataFileError

_log = log.get("enrich.tor")

#: Bytes read from a list at most; the real lists are a few hundred KiB, Onionoo
#: details a few tens of MiB.
MAX_LIST_BYTES = 256 * 1024 * 1024


def _normalise(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)

    return str(addr)


def _host_of(or_address: str) -> str | None:
    """``1.2.3.4:9001`` or ``[2001:db8::1]:9001`` -> the address part."""
    if or_address.startswith("["):
        return _normalise(or_address)
    host, _, _port = or_address.rpartition(":")
    return _normalise(host or or_address)


def _parse_epoch(text: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _Parsed:
    addresses: frozenset[str]
    published: float | None
    fmt: str


def _parse_onionoo(data: bytes, path: Path) -> _Parsed:
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise DataFileError(
            f"Tor list {path} looks like JSON but is not valid JSON"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("relays"), list):
        raise DataFileError(
            f"Tor list {path} is JSON without an Onionoo 'relays' array"
        )
    found: set[str] = set()
    for relay in doc["relays"]:
        if not isinstance(relay, dict):
            continue
        for addr in relay.get("exit_addresses") or ():
            norm = _normalise(str(addr))
            if norm:
                found.add(norm)
        # exit_addresses lists only addresses that differ from the OR address; an
        # Exit-flagged relay also exits from its OR address.
        if "Exit" in (relay.get("flags") or ()):
            for or_addr in relay.get("or_addresses") or ():
                norm = _host_of(str(or_addr))
                if norm:
                    found.add(norm)
    published = doc.get("relays_published")

    return _Parsed(
        frozenset(found),
        _parse_epoch(published) if isinstance(published, str) else None,
        "onionoo",
    )


def _parse_exit_addresses(text: str) -> _Parsed:
    found: set[str] = set()
    latest: float | None = None
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ExitAddress":
            norm = _normalise(rest.split(" ", 1)[0])
            if norm:
                found.add(norm)
        elif word == "Published":
            stamp = _parse_epoch(rest)
            if stamp is not None and (latest is None or stamp > latest):
                latest = stamp

    return _Parsed(frozenset(found), latest, "exit-addresses")


def _parse_bulk(text: str, path: Path) -> _Parsed:
    found: set[str] = set()
    bad = 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        norm = _normalise(line)
        if norm is None:
            bad += 1
            if bad > 10 and bad > len(found):
                raise DataFileError(
                    f"Tor list {path} is not a bulk exit list "
                    f"(line {line[:40]!r} is no address)"
                )
            continue
        found.add(norm)

    return _Parsed(frozenset(found), None, "bulk")


def parse_exit_list(
    data: bytes, path: Path
) -> tuple[frozenset[str], float | None, str]:
    """Addresses, publication time (if the format has one) and format of a list.

    Raises:
        DataFileError: not UTF-8, not one of the three formats, or no address.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFileError(f"Tor list {path} is not UTF-8 text") from None
    head = text.lstrip()[:512]
    if head.startswith("{"):
        parsed = _parse_onionoo(data, path)
    elif head.startswith("<"):
        raise DataFileError(f"Tor list {path} is an HTML page, not an exit list")
    elif "ExitAddress " in text or head.startswith("ExitNode "):
        parsed = _parse_exit_addresses(text)
    else:
        parsed = _parse_bulk(text, path)
    if not parsed.addresses:
        raise DataFileError(f"Tor list {path} holds no exit address")

    return parsed.addresses, parsed.published, parsed.fmt


class _Snapshot:
    __slots__ = ("addresses", "fmt", "published", "stamp")

    def __init__(
        self,
        addresses: frozenset[str],
        published: float,
        fmt: str,
        stamp: tuple[int, int, int],
    ) -> None:
        self.addresses = addresses
        self.published = published
        self.fmt = fmt
        self.stamp = stamp


def _load(path: Path) -> _Snapshot:
    if path.exists() and not path.is_file():
        raise DataFileError(f"Tor list {path} is not a regular file")
    try:
        st = path.stat()
        with path.open("rb") as fh:
            data = fh.read(MAX_LIST_BYTES + 1)
    except FileNotFoundError:
        raise DataFileError(f"Tor list {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"cannot read Tor list {path}: {exc.strerror}") from None
    if len(data) > MAX_LIST_BYTES:
        raise DataFileError(f"Tor list {path} is larger than {MAX_LIST_BYTES} bytes")
    addresses, published, fmt = parse_exit_list(data, path)
    _log.info("tor_list_loaded", path=str(path), format=fmt, exits=len(addresses))

    return _Snapshot(
        addresses,
        published if published is not None else st.st_mtime,
        fmt,
        (st.st_ino, st.st_mtime_ns, st.st_size),
    )


class TorExitList:
    """Membership test for Tor exit addresses, swapped whole when the file changes.

    Reads the bulk exit list (one address per line), the ``exit-addresses``
    records (``ExitAddress`` lines) and Onionoo ``details`` JSON, IPv4 and IPv6.

    Args:
        path: the list on disk, as ``l4s data update tor`` writes it.

    Example:
        >>> exits = TorExitList.from_file(Path("tor-exits.txt"))
        >>> "203.0.113.5" in exits
        False
    """

    def __init__(self, path: Path, snapshot: _Snapshot) -> None:
        self._path = path
        self._snap = snapshot

    @classmethod
    def from_file(cls, path: Path) -> TorExitList:
        """Load a list in any of the three formats.

        Raises:
            DataFileError: the file is missing, unreadable or not an exit list.
        """
        path = Path(path)
        return cls(path, _load(path))

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, str):
            return False
        addresses = self._snap.addresses
        if ip in addresses:
            return True
        if ":" not in ip:
            return False
        norm = _normalise(ip)
        return norm is not None and norm in addresses

    def __len__(self) -> int:
        return len(self._snap.addresses)

    @property
    def format(self) -> str:
        """``bulk``, ``exit-addresses`` or ``onionoo``."""
        return self._snap.fmt

    def age_seconds(self) -> float:
        """Seconds since the list was published (or, without a date, written)."""
        return max(0.0, time.time() - self._snap.published)

    def reload_if_changed(self) -> bool:
        """Load the file again if it was replaced; keep the current list on error."""
        try:
            st = os.stat(self._path)
        except OSError:
            _log.warning("tor_list_missing", path=str(self._path))
            return False
        if (st.st_ino, st.st_mtime_ns, st.st_size) == self._snap.stamp:
            return False
        try:
            fresh = _load(self._path)
        except DataFileError as exc:
            _log.warning("tor_list_reload_failed", error=str(exc))
            return False
        self._snap = fresh

        return True
