"""ECS field fragments for enriched events."""

from __future__ import annotations

import msgspec

from enrichers.classify import SourceKind
from enrichers.ecs import ecs_fields
from enrichers.geo import GeoRecord
from enrichers.threat import Rating


def test_full_enrichment_maps_to_ecs_and_l4s_fields() -> None:
    geo = GeoRecord(
        country_iso="DE",
        country_name="Germany",
        continent="EU",
        city="Berlin",
        latitude=52.52,
        longitude=13.41,
        asn=64500,
        as_org="Example Hosting",
        network="198.51.100.0/24",
    )
    kind = SourceKind("hosting", False, "Example (AS64500)")
    rating = Rating("Dangerous", 63.0, ("3 working JNDI lookups", "attacked on 3 days"))

    fields = ecs_fields(geo, kind, rating, tor=False, compromised=False)

    assert fields == {
        "source": {
            "geo": {
                "country_iso_code": "DE",
                "country_name": "Germany",
                "continent_code": "EU",
                "continent_name": "Europe",
                "city_name": "Berlin",
                "location": {"lat": 52.52, "lon": 13.41},
            },
            "as": {"number": 64500, "organization": {"name": "Example Hosting"}},
        },
        "l4s": {
            "threat": {
                "level": "Dangerous",
                "score": 63.0,
                "reasons": ["3 working JNDI lookups", "attacked on 3 days"],
            },
            "source": {
                "kind": "hosting",
                "research": False,
                "kind_reason": "Example (AS64500)",
                "possibly_compromised": False,
                "network": "198.51.100.0/24",
            },
            "tor": False,
        },
    }
    assert msgspec.json.decode(msgspec.json.encode(fields)) == fields


def test_missing_values_are_left_out_not_null() -> None:
    fields = ecs_fields(GeoRecord(country_iso="NL"), tor=True)

    assert fields == {
        "source": {"geo": {"country_iso_code": "NL"}},
        "l4s": {"tor": True},
    }


def test_special_range_is_reported_under_l4s() -> None:
    fields = ecs_fields(GeoRecord(special="private"), SourceKind("special", False, "x"))

    assert "source" not in fields
    assert fields["l4s"]["source"]["special_range"] == "private"
