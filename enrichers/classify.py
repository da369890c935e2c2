"""What kind of network a source sits in: hosting, ISP, research, scanner, Tor, CDN."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from enrichers.geo import GeoRecord
from pipeline.errors import DataFileError

_T = TypeVar("_T")
Kind = Literal["hosting", "isp", "education", "scanner", "cdn"]
#: Kinds the classifier checks by AS number and name, first match wins.
_CHECK_ORDER: Final = ("scanner", "education", "cdn", "hosting", "isp")
#: Kinds that are neither hosting nor research: an attack from one of these most
#: likely comes from a compromised machine (an ISP customer, a company, a hospital).
_COMPROMISE_KINDS: Final = frozenset({"isp", "unknown"})


class SourceKind(msgspec.Struct, frozen=True):
    """The network kind of a source and whether it is research/testing.

    Args:
        kind: ``hosting``, ``isp``, ``education``, ``scanner``, ``tor``, ``cdn``,
            ``unknown`` or ``special`` (a special-purpose range).
        research: an internet-measurement project, security company, university or
            a payload calling an out-of-band testing service.
        reason: one short line saying why, e.g. ``AS14061 DigitalOcean``.

    Example:
        >>> SourceKind("hosting", False, "AS14061 DigitalOcean").kind
        'hosting'
    """

    kind: str
    research: bool
    reason: str


class NetworkEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One reviewed row of ``networks.toml``."""

    name: str
    kind: Kind
    source: str
    research: bool = False
    asns: list[int] = []
    org: list[str] = []
    rdns: list[str] = []


class OobEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One reviewed row of ``oob_domains.toml``."""

    suffix: str
    service: str
    source: str


class _NetworksFile(msgspec.Struct, forbid_unknown_fields=True):
    network: list[NetworkEntry]


class _OobFile(msgspec.Struct, forbid_unknown_fields=True):
    domain: list[OobEntry]


def _read_toml(path: Path | resources.abc.Traversable, what: str) -> object:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise DataFileError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise DataFileError(f"cannot read {what} file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(f"{what} file {path} is not valid TOML: {exc}") from None


def _convert(data: object, kind: type[_T], path: object, what: str) -> _T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise DataFileError(f"{what} file {path}: {exc}") from None


def _suffix_match(host: str, suffixes: dict[str, str]) -> str | None:
    """Value of the longest label-boundary suffix of ``host`` in ``suffixes``."""
    host = host.strip().rstrip(".").lower()
    while host:
        found = suffixes.get(host)
        if found is not None:
            return found
        _, dot, host = host.partition(".")
        if not dot:
            break

    return None


class NetworkClassifier:
    """Classify a source network from reviewed data files, never from code.

    Args:
        networks: entries of ``networks.toml`` (AS numbers, name patterns, reverse
            name suffixes per kind, each with its source).
        oob: entries of ``oob_domains.toml`` (out-of-band testing services).

    Example:
        >>> c = NetworkClassifier.default()
        >>> c.classify(GeoRecord(asn=14061, as_org="DigitalOcean, LLC"), tor=False).kind
        'hosting'
    """

    def __init__(
        self, networks: Iterable[NetworkEntry], oob: Iterable[OobEntry]
    ) -> None:
        self._by_asn: dict[int, NetworkEntry] = {}
        self._by_rdns: dict[str, NetworkEntry] = {}
        self._patterns: list[tuple[re.Pattern[str], NetworkEntry]] = []
        by_kind: dict[str, list[NetworkEntry]] = {kind: [] for kind in _CHECK_ORDER}
        for entry in networks:
            if not entry.source.strip():
                raise DataFileError(f"network entry {entry.name!r} names no source")
            by_kind[entry.kind].append(entry)
            for asn in entry.asns:
                other = self._by_asn.get(asn)
                if other is not None:
                    raise DataFileError(
                        f"AS{asn} is listed twice: {other.name!r} and {entry.name!r}"
                    )
                self._by_asn[asn] = entry
            for suffix in entry.rdns:
                self._by_rdns[suffix.lower().strip(".")] = entry
        for kind in _CHECK_ORDER:
            for entry in by_kind[kind]:
                for pattern in entry.org:
                    try:
                        self._patterns.append(
                            (re.compile(pattern, re.IGNORECASE), entry)
                        )
                    except re.error as exc:
                        raise DataFileError(
                            f"network entry {entry.name!r}: "
                            f"bad pattern {pattern!r}: {exc}"
                        ) from None
        self._oob = {e.suffix.lower().strip("."): e.service for e in oob}
        self._org_cache: dict[str, NetworkEntry | None] = {}

    @classmethod
    def from_files(cls, networks: Path, oob_domains: Path) -> NetworkClassifier:
        """Load both data files.

        Raises:
            DataFileError: a file is missing, not TOML, or an entry is invalid.
        """
        return cls._load(networks, oob_domains)

    @classmethod
    def default(cls) -> NetworkClassifier:
        """The reviewed data files shipped in ``enrichers/data/``."""
        data = resources.files("enrichers") / "data"
        return cls._load(data / "networks.toml", data / "oob_domains.toml")

    @classmethod
    def _load(
        cls,
        networks: Path | resources.abc.Traversable,
        oob: Path | resources.abc.Traversable,
    ) -> NetworkClassifier:
        nets = _convert(
            _read_toml(networks, "networks"), _NetworksFile, networks, "networks"
        )
        doms = _convert(_read_toml(oob, "OOB domains"), _OobFile, oob, "OOB domains")

        return cls(nets.network, doms.domain)

    def oob_service(self, host: str) -> str | None:
        """The testing service a callback host belongs to, or None."""
        return _suffix_match(host, self._oob)

    def _by_org(self, org: str) -> NetworkEntry | None:
        if org in self._org_cache:
            return self._org_cache[org]
        found = next((entry for rx, entry in self._patterns if rx.search(org)), None)
        if len(self._org_cache) > 65536:
            self._org_cache.clear()
        self._org_cache[org] = found

        return found

    def _network(
        self, geo: GeoRecord, hostname: str | None
    ) -> tuple[NetworkEntry, str] | None:
        candidates: list[tuple[NetworkEntry, str]] = []
        if geo.asn is not None and geo.asn in self._by_asn:
            candidates.append((self._by_asn[geo.asn], f"AS{geo.asn}"))
        if hostname:
            suffix_entry = self._rdns_entry(hostname)
            if suffix_entry is not None:
                candidates.append(
                    (suffix_entry, f"reverse name {hostname.rstrip('.').lower()}")
                )
        if geo.as_org:
            org_entry = self._by_org(geo.as_org)
            if org_entry is not None:
                candidates.append((org_entry, f"organisation {geo.as_org!r}"))
        if not candidates:
            return None
        # A scanner's reverse name wins over the hosting AS it rents from.
        rank = {kind: i for i, kind in enumerate(_CHECK_ORDER)}

        return min(candidates, key=lambda c: rank[c[0].kind])

    def _rdns_entry(self, hostname: str) -> NetworkEntry | None:
        host = hostname.strip().rstrip(".").lower()
        while host:
            found = self._by_rdns.get(host)
            if found is not None:
                return found
            _, dot, host = host.partition(".")
            if not dot:
                break

        return None

    def classify(
        self,
        geo: GeoRecord,
        *,
        tor: bool,
        oob_domains: Iterable[str] = (),
        oob_services: Iterable[str] = (),
        hostname: str | None = None,
    ) -> SourceKind:
        """The kind of network ``geo`` describes, and whether it is research/testing.

        Args:
            geo: the lookup answer for the source address.
            tor: the address is a Tor exit.
            oob_domains: callback hosts seen in this source's payloads; those of a
                listed testing service mark the source research/testing. They are
                compared as text, never resolved.
            oob_services: testing-service names the detector already assigned.
            hostname: a forward-confirmed reverse name of the source, if reverse
                DNS is enabled; scanner names in it count.
        """
        if geo.special:
            return SourceKind(
                "special", False, f"special-purpose range ({geo.special})"
            )
        services = {s for s in oob_services if s}
        for host in oob_domains:
            service = self.oob_service(host)
            if service:
                services.add(service)
        testing = (
            f"out-of-band testing callback ({', '.join(sorted(services))})"
            if services
            else ""
        )
        if tor:
            reason = "Tor exit" + (f"; {testing}" if testing else "")
            return SourceKind("tor", bool(services), reason)
        found = self._network(geo, hostname)
        if found is None:
            where = (
                f"AS{geo.asn} {geo.as_org or ''}".strip() if geo.asn else "no AS data"
            )
            reason = f"{where} not in the network lists" + (
                f"; {testing}" if testing else ""
            )
            return SourceKind("unknown", bool(services), reason)
        entry, why = found
        reason = f"{entry.name} ({why})" + (f"; {testing}" if testing else "")

        return SourceKind(entry.kind, entry.research or bool(services), reason)


def possibly_compromised(kind: SourceKind, geo: GeoRecord) -> bool:
    """True for an attacking source that is neither hosting nor research.

    An attack from an ISP customer, a manufacturer or a hospital most likely comes
    from a compromised machine: the case a CERT wants to notify. Without any AS
    data nothing can be said, so the flag stays off.
    """
    if kind.research or kind.kind not in _COMPROMISE_KINDS:
        return False

    return geo.asn is not None or bool(geo.as_org)
