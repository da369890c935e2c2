"""Country, city and ASN of a source address from MaxMind-format (``.mmdb``) files."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import maxminddb
import msgspec
from maxminddb.reader import Reader as PureReader

from enrichers.special import embedded_v4, special_v4, special_v6
from pipeline import log
from pipeline.errors import DataFileError, EnricherUnavailable, PoisonRecord

_log = log.get("enrich.geo")


class GeoRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the databases say about one address, the same shape for every flavour.

    Args:
        country_iso: ISO 3166-1 alpha-2 code of the country the address is used in.
        country_name: English country name, when the database carries names.
        continent: two-letter continent code (``AF AN AS EU NA OC SA``).
        registered_country: ISO code of the country the block is registered in.
        city: English city name (City flavours only).
        latitude: approximate latitude (City flavours only).
        longitude: approximate longitude (City flavours only).
        asn: autonomous system number of the announcing network.
        as_org: organisation name of that autonomous system.
        network: the prefix the answer came from, e.g. ``198.51.100.0/24``.
        special: label of a special-purpose range (``private``, ``loopback``,
            ``cgnat``, ``documentation``, ...); such addresses are not looked up.

    Example:
        >>> GeoRecord(country_iso="DE", asn=24940).country_iso
        'DE'
    """

    country_iso: str | None = None
    country_name: str | None = None
    continent: str | None = None
    registered_country: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    as_org: str | None = None
    network: str | None = None
    special: str | None = None


Mapper = Callable[[Mapping[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Flavour:
    """A database layout l4s knows: its name, what it carries and how to read it."""

    name: str
    geo: bool
    asn: bool
    mapper: Mapper


def _name(node: Any) -> str | None:
    if isinstance(node, Mapping):
        names = node.get("names")
        if isinstance(names, Mapping):
            value = names.get("en")
            return value if isinstance(value, str) else None

    return None


def _code(node: Any, key: str) -> str | None:
    if isinstance(node, Mapping):
        value = node.get(key)
        return value if isinstance(value, str) else None

    return None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _asn(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        digits = value[2:] if value[:2].upper() == "AS" else value
        return int(digits) if digits.isdigit() else None

    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def map_nested(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Map the MaxMind schema (GeoLite2/GeoIP2, DB-IP Lite) to GeoRecord fields."""
    out: dict[str, Any] = {}
    country = rec.get("country")
    if country is not None:
        out["country_iso"] = _code(country, "iso_code")
        out["country_name"] = _name(country)
    continent = rec.get("continent")
    if continent is not None:
        out["continent"] = _code(continent, "code")
    registered = rec.get("registered_country")
    if registered is not None:
        out["registered_country"] = _code(registered, "iso_code")
    city = rec.get("city")
    if city is not None:
        out["city"] = _name(city)
    location = rec.get("location")
    if isinstance(location, Mapping):
        out["latitude"] = _float(location.get("latitude"))
        out["longitude"] = _float(location.get("longitude"))
    if "autonomous_system_number" in rec:
        out["asn"] = _asn(rec["autonomous_system_number"])
        out["as_org"] = _text(rec.get("autonomous_system_organization"))

    return out


def map_flat(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Map flat layouts (IPinfo Lite, ip-location-db) to GeoRecord fields."""
    out: dict[str, Any] = {}
    if "country_code" in rec:
        out["country_iso"] = _text(rec["country_code"])
        # IPinfo calls the country *name* ``country``; ip-location-db has no name.
        out["country_name"] = _text(rec.get("country"))
    if "continent_code" in rec:
        out["continent"] = _text(rec["continent_code"])
    if "city" in rec:
        out["city"] = _text(rec["city"])
    if "latitude" in rec:
        out["latitude"] = _float(rec.get("latitude"))
        out["longitude"] = _float(rec.get("longitude"))
    if "asn" in rec:
        out["asn"] = _asn(rec["asn"])
        out["as_org"] = _text(rec.get("as_name"))
    elif "autonomous_system_number" in rec:
        out["asn"] = _asn(rec["autonomous_system_number"])
        out["as_org"] = _text(rec.get("autonomous_system_organization"))

    return out


# database_type (lower case) -> flavour. MaxMind and DB-IP use the nested schema;
# DB-IP's ASN file calls itself "DBIP-ASN-Lite (compat=GeoLite2-ASN)".
_BY_TYPE: Final = (
    ("geolite2-asn", Flavour("GeoLite2 ASN", geo=False, asn=True, mapper=map_nested)),
    ("geoip2-isp", Flavour("GeoIP2 ISP", geo=False, asn=True, mapper=map_nested)),
    ("geolite2-city", Flavour("GeoLite2 City", geo=True, asn=False, mapper=map_nested)),
    ("geoip2-city", Flavour("GeoIP2 City", geo=True, asn=False, mapper=map_nested)),
    ("geoip2-enterprise", Flavour("GeoIP2 Enterprise", True, True, map_nested)),
    ("geolite2-country", Flavour("GeoLite2 Country", True, False, map_nested)),
    ("geoip2-country", Flavour("GeoIP2 Country", True, False, map_nested)),
    ("dbip-asn", Flavour("DB-IP ASN Lite", geo=False, asn=True, mapper=map_nested)),
    ("dbip-city", Flavour("DB-IP City Lite", geo=True, asn=False, mapper=map_nested)),
    ("dbip-location", Flavour("DB-IP City Lite", True, False, map_nested)),
    ("dbip-country", Flavour("DB-IP Country Lite", True, False, map_nested)),
    ("ipinfo", Flavour("IPinfo Lite", geo=True, asn=True, mapper=map_flat)),
)
_IP_LOCATION_DB: Final = {
    "country": Flavour("ip-location-db country", True, False, map_flat),
    "city": Flavour("ip-location-db city", True, False, map_flat),
    "asn": Flavour("ip-location-db asn", geo=False, asn=True, mapper=map_flat),
}


def _flavour_from_record(rec: Any) -> Flavour | None:
    if not isinstance(rec, Mapping):
        return None
    if isinstance(rec.get("country"), Mapping) or isinstance(
        rec.get("continent"), Mapping
    ):
        return Flavour("MaxMind-compatible geo", geo=True, asn=False, mapper=map_nested)
    if "as_name" in rec or isinstance(rec.get("asn"), str):
        return Flavour(
            "IPinfo-compatible", geo="country_code" in rec, asn=True, mapper=map_flat
        )
    if "country_code" in rec:
        return Flavour("flat country", geo=True, asn=False, mapper=map_flat)
    if "autonomous_system_number" in rec:
        return Flavour("MaxMind-compatible ASN", geo=False, asn=True, mapper=map_nested)

    return None


def _first_record(path: Path) -> Any:
    with PureReader(str(path), maxminddb.MODE_MMAP) as reader:
        for _network, record in reader:
            return record

    return None


def detect_flavour(path: Path, database_type: str) -> Flavour:
    """Tell the layout of an opened database from its metadata, else its records.

    Raises:
        DataFileError: neither the type nor the first record is one l4s reads.
    """
    kind = database_type.strip().lower()
    for prefix, flavour in _BY_TYPE:
        if kind.startswith(prefix) or (prefix == "ipinfo" and "ipinfo" in kind):
            return flavour
    # ip-location-db writes "country", "asn" or "city", then e.g. " ipvAll".
    first = kind.split(" ", 1)[0]
    if first in _IP_LOCATION_DB:
        return _IP_LOCATION_DB[first]
    found = _flavour_from_record(_first_record(path))
    if found is None:
        raise DataFileError(
            f"{path} is a {database_type!r} database, a layout l4s does not read "
            "(expected GeoLite2/GeoIP2, DB-IP Lite, IPinfo Lite or ip-location-db)"
        )

    return found


@dataclass(frozen=True, slots=True)
class OpenDb:
    """One opened database with the facts l4s needs about it."""

    path: Path
    reader: Any
    flavour: Flavour
    build_epoch: int
    stamp: tuple[int, int, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def open_db(path: Path, role: str) -> OpenDb:
    """Open ``path`` once with the C extension and check it can serve ``role``.

    ``role`` is ``geoip`` (needs country data) or ``asn`` (needs AS numbers).

    Raises:
        DataFileError: missing, unreadable, not an mmdb, an unknown layout, or a
            layout that does not carry what the role needs.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        # A FIFO or device would block the reader (or never end).
        raise DataFileError(f"{role} database {path} is not a regular file")
    try:
        stamp = _stamp(path)
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except FileNotFoundError:
        raise DataFileError(f"{role} database {path} does not exist") from None
    except PermissionError:
        raise DataFileError(f"{role} database {path} is not readable") from None
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise DataFileError(
            f"{role} database {path} is not a valid mmdb file: {exc}"
        ) from None
    meta = reader.metadata()
    try:
        flavour = detect_flavour(path, str(meta.database_type))
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise DataFileError(f"{role} database {path} cannot be read: {exc}") from None
    if role == "geoip" and not flavour.geo:
        raise DataFileError(
            f"{path} is a {flavour.name} database without country data; "
            "give it as the ASN database"
        )
    if role == "asn" and not flavour.asn:
        raise DataFileError(f"{path} is a {flavour.name} database without AS numbers")
    _log.info(
        "geoip_db_loaded",
        role=role,
        path=str(path),
        flavour=flavour.name,
        database_type=meta.database_type,
        built=time.strftime("%Y-%m-%d", time.gmtime(meta.build_epoch)),
    )

    return OpenDb(path, reader, flavour, int(meta.build_epoch), stamp)


def _parse(ip: str) -> tuple[int, int]:
    """``(version, value)`` of a textual address; PoisonRecord if it is none."""
    try:
        if ":" in ip:
            text = ip.split("%", 1)[0]  # a zone id names a local interface only
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, ValueError, TypeError):
        raise PoisonRecord(
            "bad_source_ip", "source address is not an IP address"
        ) from None


class _State:
    """Readers and caches of one generation; replaced whole on reload."""

    __slots__ = ("asn", "by_addr", "by_prefix", "geo")

    def __init__(self, geo: OpenDb | None, asn: OpenDb | None) -> None:
        self.geo = geo
        self.asn = asn
        self.by_addr: dict[str, GeoRecord] = {}
        self.by_prefix: dict[tuple[int, int, int], GeoRecord] = {}


class GeoIndex:
    """Geo and ASN lookups over one or two mmdb files, with a bounded cache.

    Any flavour may serve either role as long as it carries the data: IPinfo Lite
    alone answers both country and ASN. Answers are cached by address, and one
    record is built per network prefix the databases answered with (the reader's
    prefix length), so a /24 full of scanners costs one record.

    Args:
        geoip_db: a Country or City database (GeoLite2/GeoIP2, DB-IP Lite,
            IPinfo Lite, ip-location-db country/city).
        asn_db: an ASN database (GeoLite2 ASN, DB-IP ASN Lite, ip-location-db asn);
            its AS answer wins over one the geo database carries.
        cache_size: most addresses (and prefixes) kept; the oldest go first.
        lookup_documentation: look documentation ranges (RFC 5737, RFC 3849) up
            like public ones; for demos and tests whose databases use them as
            stand-ins for public addresses. Without an answer they stay labelled.

    Example:
        >>> index = GeoIndex(Path("GeoLite2-City.mmdb"), Path("GeoLite2-ASN.mmdb"))
        >>> index.lookup("198.51.100.7").special
        'documentation'
    """

    def __init__(
        self,
        geoip_db: Path | None = None,
        asn_db: Path | None = None,
        *,
        cache_size: int = 65536,
        lookup_documentation: bool = False,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._paths = (
            Path(geoip_db) if geoip_db else None,
            Path(asn_db) if asn_db else None,
        )
        self._cache_size = cache_size
        self._lookup_documentation = lookup_documentation
        self._state = _State(
            open_db(self._paths[0], "geoip") if self._paths[0] else None,
            open_db(self._paths[1], "asn") if self._paths[1] else None,
        )
        self.hits = 0
        self.misses = 0

    def lookup(self, ip: str) -> GeoRecord:
        """Everything the databases know about ``ip`` (labelled if special-purpose).

        Raises:
            PoisonRecord: ``ip`` is not an IPv4 or IPv6 address.
            EnricherUnavailable: a database file was overwritten in place (not
                renamed over) and can no longer be read; reload picks up a fix.
        """
        state = self._state
        cached = state.by_addr.get(ip)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        record = self._resolve(state, ip)
        if len(state.by_addr) >= self._cache_size:
            # Insertion order makes this FIFO: cheap, and hot sources come back
            # within seconds, long before their entry is the oldest.
            del state.by_addr[next(iter(state.by_addr))]
        state.by_addr[ip] = record

        return record

    def _resolve(self, state: _State, ip: str) -> GeoRecord:
        version, value = _parse(ip)
        if version == 6:
            inner = embedded_v4(value)
            if inner is not None:
                version, value = 4, inner
                ip = socket.inet_ntop(socket.AF_INET, inner.to_bytes(4, "big"))
        label = special_v4(value) if version == 4 else special_v6(value)
        if label is not None and not (
            label == "documentation" and self._lookup_documentation
        ):
            return GeoRecord(special=label)
        if state.geo is None and state.asn is None:
            return GeoRecord(special=label)
        record = self._from_databases(state, ip, version, value)
        if label is not None and record.network is None:
            return GeoRecord(special=label)

        return record

    def _from_databases(
        self, state: _State, ip: str, version: int, value: int
    ) -> GeoRecord:
        bits = 32 if version == 4 else 128
        answers: list[tuple[OpenDb, Any]] = []
        plen = 0
        for db in (state.geo, state.asn):
            if db is None:
                continue
            try:
                rec, db_plen = db.reader.get_with_prefix_len(ip)
            except maxminddb.InvalidDatabaseError as exc:
                # The file was overwritten in place under the memory map instead
                # of being renamed over (as ``l4s data update`` does).
                raise EnricherUnavailable(
                    f"{db.path} changed under the reader: {exc}"
                ) from None
            except ValueError:
                # An IPv6 address asked of an IPv4-only database: no answer.
                rec, db_plen = None, 0
            answers.append((db, rec))
            plen = max(plen, int(db_plen))
        key = (version, value >> (bits - plen) if plen else 0, plen)
        shared = state.by_prefix.get(key)
        if shared is not None:
            return shared
        fields: dict[str, Any] = {}
        for db, rec in answers:
            if isinstance(rec, Mapping):
                mapped = db.flavour.mapper(rec)
                if db is state.asn:
                    fields.update(
                        {k: v for k, v in mapped.items() if k in ("asn", "as_org")}
                    )
                else:
                    fields.update(mapped)
        if plen and any(rec is not None for _, rec in answers):
            base = value >> (bits - plen) << (bits - plen)
            net_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
            fields["network"] = str(net_type((base, plen)))
        record = GeoRecord(**{k: v for k, v in fields.items() if v is not None})
        if len(state.by_prefix) >= self._cache_size:
            del state.by_prefix[next(iter(state.by_prefix))]
        state.by_prefix[key] = record

        return record

    def reload_if_changed(self) -> bool:
        """Reopen any database whose file was replaced; swap all at once.

        A replacement that cannot be opened is logged and the current databases
        stay in service. Returns True when new databases were swapped in.
        """
        state = self._state
        current = (state.geo, state.asn)
        changed = False
        for path, db in zip(self._paths, current, strict=True):
            if path is None or db is None:
                continue
            try:
                if _stamp(path) != db.stamp:
                    changed = True
            except OSError:
                _log.warning("geoip_db_missing", path=str(path))
        if not changed:
            return False
        try:
            fresh = _State(
                open_db(self._paths[0], "geoip") if self._paths[0] else None,
                open_db(self._paths[1], "asn") if self._paths[1] else None,
            )
        except DataFileError as exc:
            _log.warning("geoip_reload_failed", error=str(exc))
            return False
        # One attribute store: a concurrent lookup sees the old or the new
        # generation, never half of each. The old readers close when collected.
        self._state = fresh

        return True

    def ages(self) -> dict[str, float]:
        """Seconds since each database was built (for ``l4s_data_age_seconds``)."""
        now = time.time()
        state = self._state
        out: dict[str, float] = {}
        if state.geo is not None:
            out["geoip"] = now - state.geo.build_epoch
        if state.asn is not None:
            out["asn"] = now - state.asn.build_epoch

        return out

    def flavours(self) -> dict[str, str]:
        """The flavour name of each loaded database, by role."""
        state = self._state
        return {
            role: db.flavour.name
            for role, db in (("geoip", state.geo), ("asn", state.asn))
            if db is not None
        }
