"""Build small .mmdb files of every flavour l4s reads, in documentation ranges."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

EUROPE = {
    "code": "EU",
    "geoname_id": 6255148,
    "names": {"en": "Europe", "de": "Europa"},
}
GERMANY = {
    "geoname_id": 2921044,
    "iso_code": "DE",
    "names": {"en": "Germany", "de": "Deutschland"},
}
NETHERLANDS = {"geoname_id": 2750405, "iso_code": "NL", "names": {"en": "Netherlands"}}
NORTH_AMERICA = {"code": "NA", "geoname_id": 6255149, "names": {"en": "North America"}}
USA = {"geoname_id": 6252001, "iso_code": "US", "names": {"en": "United States"}}

# Networks used by every flavour: two IPv4 blocks and one IPv6 block.
NET_A = "198.51.100.0/24"
NET_B = "203.0.113.0/25"
NET_V6 = "2001:db8:1::/48"


def write(
    path: Path,
    database_type: str,
    rows: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    ip_version: int = 6,
) -> Path:
    """Write ``rows`` of ``(cidr, record)`` to ``path`` with the given metadata type."""
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description=f"l4s test {database_type}",
    )
    for cidr, record in rows:
        writer.insert_network(IPSet([cidr]), dict(record))
    writer.to_db_file(str(path))

    return path


def maxmind_country(path: Path, database_type: str = "GeoLite2-Country") -> Path:
    return write(
        path,
        database_type,
        [
            (
                NET_A,
                {
                    "continent": EUROPE,
                    "country": GERMANY,
                    "registered_country": NETHERLANDS,
                },
            ),
            (
                NET_B,
                {"continent": NORTH_AMERICA, "country": USA, "registered_country": USA},
            ),
            (
                NET_V6,
                {
                    "continent": EUROPE,
                    "country": NETHERLANDS,
                    "registered_country": NETHERLANDS,
                },
            ),
        ],
    )


def maxmind_city(path: Path, database_type: str = "GeoLite2-City") -> Path:
    berlin = {"geoname_id": 2950159, "names": {"en": "Berlin", "de": "Berlin"}}
    return write(
        path,
        database_type,
        [
            (
                NET_A,
                {
                    "city": berlin,
                    "continent": EUROPE,
                    "country": GERMANY,
                    "location": {
                        "accuracy_radius": 100,
                        "latitude": 52.5244,
                        "longitude": 13.4105,
                    },
                    "registered_country": GERMANY,
                },
            ),
            (NET_B, {"continent": NORTH_AMERICA, "country": USA}),
            (NET_V6, {"continent": EUROPE, "country": NETHERLANDS}),
        ],
    )


def maxmind_asn(path: Path, database_type: str = "GeoLite2-ASN") -> Path:
    return write(
        path,
        database_type,
        [
            (
                NET_A,
                {
                    "autonomous_system_number": 64500,
                    "autonomous_system_organization": "Example Hosting",
                },
            ),
            (
                NET_B,
                {
                    "autonomous_system_number": 64501,
                    "autonomous_system_organization": "Example Broadband",
                },
            ),
            (
                NET_V6,
                {
                    "autonomous_system_number": 64502,
                    "autonomous_system_organization": "Example Six",
                },
            ),
        ],
    )


def ipinfo_lite(path: Path, database_type: str = "ipinfo lite.mmdb") -> Path:
    def row(
        cc: str, name: str, cont: str, cont_name: str, asn: str, org: str
    ) -> dict[str, Any]:
        return {
            "country": name,
            "country_code": cc,
            "continent": cont_name,
            "continent_code": cont,
            "asn": asn,
            "as_name": org,
            "as_domain": "example.com",
        }

    return write(
        path,
        database_type,
        [
            (NET_A, row("DE", "Germany", "EU", "Europe", "AS64500", "Example Hosting")),
            (
                NET_B,
                row(
                    "US",
                    "United States",
                    "NA",
                    "North America",
                    "AS64501",
                    "Example Broadband",
                ),
            ),
            (
                NET_V6,
                row("NL", "Netherlands", "EU", "Europe", "AS64502", "Example Six"),
            ),
        ],
    )


def ip_location_country(path: Path) -> Path:
    return write(
        path,
        "country",
        [
            (NET_A, {"country_code": "DE"}),
            (NET_B, {"country_code": "US"}),
            (NET_V6, {"country_code": "NL"}),
        ],
    )


def ip_location_asn(path: Path) -> Path:
    return write(
        path,
        "asn",
        [
            (
                NET_A,
                {
                    "autonomous_system_number": 64500,
                    "autonomous_system_organization": "Example Hosting",
                },
            ),
            (
                NET_B,
                {
                    "autonomous_system_number": 64501,
                    "autonomous_system_organization": "Example Broadband",
                },
            ),
        ],
    )


def ipv4_only_country(path: Path) -> Path:
    return write(
        path,
        "GeoLite2-Country",
        [(NET_A, {"continent": EUROPE, "country": GERMANY})],
        ip_version=4,
    )


def unknown_layout(path: Path) -> Path:
    return write(path, "Acme-Weather", [(NET_A, {"temperature": 21})])
