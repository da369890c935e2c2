"""GeoIndex over every database flavour, special ranges, cache and reload."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from enrichers.geo import GeoIndex, GeoRecord
from pipeline.errors import DataFileError, PoisonRecord
from tests.enrichers import mmdb_factory

GEO_FLAVOURS = [
    ("geolite2-country", "GeoLite2 Country"),
    ("geoip2-country", "GeoIP2 Country"),
    ("geolite2-city", "GeoLite2 City"),
    ("geoip2-city", "GeoIP2 City"),
    ("dbip-country", "DB-IP Country Lite"),
    ("dbip-city", "DB-IP City Lite"),
    ("ipinfo-lite", "IPinfo Lite"),
    ("ip-location-country", "ip-location-db country"),
]
ASN_FLAVOURS = [
    ("geolite2-asn", "GeoLite2 ASN"),
    ("dbip-asn", "DB-IP ASN Lite"),
    ("ip-location-asn", "ip-location-db asn"),
]


@pytest.mark.parametrize(("key", "flavour"), GEO_FLAVOURS)
def test_every_geo_flavour_gives_the_country(
    dbs: dict[str, Path], key: str, flavour: str
) -> None:
    index = GeoIndex(dbs[key], lookup_documentation=True)

    record = index.lookup("203.0.113.77")

    assert index.flavours() == {"geoip": flavour}
    assert record.country_iso == "US"
    assert record.network == "203.0.113.0/25"
    assert index.lookup("2001:db8:1::9").country_iso == "NL"


@pytest.mark.parametrize(("key", "flavour"), ASN_FLAVOURS)
def test_every_asn_flavour_gives_number_and_organisation(
    dbs: dict[str, Path], key: str, flavour: str
) -> None:
    index = GeoIndex(asn_db=dbs[key], lookup_documentation=True)

    record = index.lookup("198.51.100.20")

    assert index.flavours() == {"asn": flavour}
    assert (record.asn, record.as_org) == (64500, "Example Hosting")


def test_city_flavour_fills_city_coordinates_continent_and_names(
    dbs: dict[str, Path],
) -> None:
    index = GeoIndex(
        dbs["geolite2-city"], dbs["geolite2-asn"], lookup_documentation=True
    )

    record = index.lookup("198.51.100.7")

    assert record == GeoRecord(
        country_iso="DE",
        country_name="Germany",
        continent="EU",
        registered_country="DE",
        city="Berlin",
        latitude=52.5244,
        longitude=13.4105,
        asn=64500,
        as_org="Example Hosting",
        network="198.51.100.0/24",
    )


def test_ipinfo_lite_alone_answers_country_and_asn(dbs: dict[str, Path]) -> None:
    index = GeoIndex(dbs["ipinfo-lite"], lookup_documentation=True)

    record = index.lookup("198.51.100.7")

    assert (record.country_iso, record.country_name, record.continent) == (
        "DE",
        "Germany",
        "EU",
    )
    assert (record.asn, record.as_org) == (64500, "Example Hosting")


def test_dedicated_asn_database_wins_over_the_geo_databases_asn(
    dbs: dict[str, Path], tmp_path: Path
) -> None:
    other = mmdb_factory.write(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        [
            (
                "198.51.100.0/25",
                {
                    "autonomous_system_number": 64511,
                    "autonomous_system_organization": "Other",
                },
            )
        ],
    )
    index = GeoIndex(dbs["ipinfo-lite"], other, lookup_documentation=True)

    record = index.lookup("198.51.100.7")

    assert (record.asn, record.as_org, record.country_iso) == (64511, "Other", "DE")
    # The two answers overlap on the narrower prefix, so that is the network.
    assert record.network == "198.51.100.0/25"


@pytest.mark.parametrize(
    ("ip", "label"),
    [
        ("10.1.2.3", "private"),
        ("172.31.255.1", "private"),
        ("192.168.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.10.10", "link-local"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.10", "documentation"),
        ("203.0.113.10", "documentation"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("0.1.2.3", "this-network"),
        ("198.18.0.1", "benchmarking"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1%eth0", "link-local"),
        ("fd00::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::c0a8:1", "private"),
    ],
)
def test_special_purpose_ranges_are_labelled_not_looked_up(
    dbs: dict[str, Path], ip: str, label: str
) -> None:
    index = GeoIndex(dbs["geolite2-city"])

    assert index.lookup(ip) == GeoRecord(special=label)


def test_edges_next_to_special_ranges_are_public() -> None:
    index = GeoIndex()

    for ip in (
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.0",
        "11.0.0.0",
        "2606:4700::1",
    ):
        assert index.lookup(ip).special is None, ip


def test_ipv4_mapped_address_is_looked_up_as_ipv4(dbs: dict[str, Path]) -> None:
    index = GeoIndex(dbs["geolite2-country"], lookup_documentation=True)

    assert index.lookup("::ffff:198.51.100.9").country_iso == "DE"


def test_ipv6_address_against_ipv4_only_database_has_no_answer(
    dbs: dict[str, Path],
) -> None:
    index = GeoIndex(dbs["ipv4-only"], lookup_documentation=True)

    assert index.lookup("2001:db8:1::1") == GeoRecord(special="documentation")
    assert index.lookup("2606:4700::1") == GeoRecord()
    assert index.lookup("198.51.100.1").country_iso == "DE"


@pytest.mark.parametrize(
    "bad", ["", "not-an-ip", "999.1.1.1", "1.2.3", "::g", "1.2.3.4 "]
)
def test_malformed_address_is_a_poison_record(bad: str) -> None:
    with pytest.raises(PoisonRecord) as info:
        GeoIndex().lookup(bad)

    assert info.value.reason == "bad_source_ip"


def test_missing_database_is_one_clear_data_file_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"does not exist"):
        GeoIndex(tmp_path / "nope.mmdb")


def test_a_file_that_is_not_an_mmdb_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"this is not a maxmind database" * 10)

    with pytest.raises(DataFileError, match=r"not a valid mmdb"):
        GeoIndex(junk)


def test_unknown_layout_is_refused(dbs: dict[str, Path]) -> None:
    with pytest.raises(DataFileError, match=r"layout l4s does not read"):
        GeoIndex(dbs["unknown"])


def test_asn_database_given_as_geo_database_is_refused(dbs: dict[str, Path]) -> None:
    with pytest.raises(DataFileError, match=r"without country data"):
        GeoIndex(dbs["geolite2-asn"])


def test_country_database_given_as_asn_database_is_refused(
    dbs: dict[str, Path],
) -> None:
    with pytest.raises(DataFileError, match=r"without AS numbers"):
        GeoIndex(asn_db=dbs["geolite2-country"])


def test_repeated_lookups_hit_the_cache_and_prefixes_share_one_record(
    dbs: dict[str, Path],
) -> None:
    index = GeoIndex(dbs["geolite2-city"], lookup_documentation=True)

    first = index.lookup("198.51.100.1")
    again = index.lookup("198.51.100.1")
    neighbour = index.lookup("198.51.100.2")

    assert again is first
    assert neighbour is first  # same /24, one record
    assert (index.hits, index.misses) == (1, 2)


def test_cache_stays_within_its_bound(dbs: dict[str, Path]) -> None:
    index = GeoIndex(dbs["geolite2-city"], cache_size=4, lookup_documentation=True)

    for i in range(50):
        index.lookup(f"198.51.100.{i}")

    assert len(index._state.by_addr) <= 4
    assert index.lookup("198.51.100.49").country_iso == "DE"


def test_replaced_file_is_picked_up_atomically(
    dbs: dict[str, Path], tmp_path: Path
) -> None:
    live = tmp_path / "geo.mmdb"
    shutil.copyfile(dbs["geolite2-country"], live)
    index = GeoIndex(live, lookup_documentation=True)
    assert index.lookup("198.51.100.1").country_iso == "DE"
    assert index.reload_if_changed() is False

    staged = tmp_path / "geo.mmdb.new"
    mmdb_factory.write(
        staged, "GeoLite2-Country", [("198.51.100.0/24", {"country": mmdb_factory.USA})]
    )
    os.replace(staged, live)

    assert index.reload_if_changed() is True
    assert index.lookup("198.51.100.1").country_iso == "US"


def test_broken_replacement_keeps_the_current_database(
    dbs: dict[str, Path], tmp_path: Path
) -> None:
    live = tmp_path / "geo.mmdb"
    shutil.copyfile(dbs["geolite2-country"], live)
    index = GeoIndex(live, lookup_documentation=True)
    staged = tmp_path / "geo.mmdb.new"
    staged.write_bytes(b"truncated download")
    os.replace(staged, live)

    assert index.reload_if_changed() is False
    assert index.lookup("198.51.100.1").country_iso == "DE"


def test_ages_count_from_the_build_epoch(dbs: dict[str, Path]) -> None:
    index = GeoIndex(dbs["geolite2-city"], dbs["geolite2-asn"])

    ages = index.ages()

    assert set(ages) == {"geoip", "asn"}
    # The factory stamps build_epoch with the time it wrote the file.
    assert all(0 <= age < 3600 for age in ages.values())
    time.sleep(0.01)
    assert index.ages()["geoip"] > ages["geoip"]


def test_without_databases_public_addresses_get_an_empty_record() -> None:
    assert GeoIndex().lookup("8.8.8.8") == GeoRecord()
