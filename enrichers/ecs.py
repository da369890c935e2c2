"""Enrichment results as ECS field fragments (nested dicts) plus l4s's own fields."""

from __future__ import annotations

from typing import Any, Final

from enrichers.classify import SourceKind
from enrichers.geo import GeoRecord
from enrichers.threat import Rating

#: ECS ``geo.continent_name`` for the two-letter continent codes the databases use.
CONTINENT_NAMES: Final = {
    "AF": "Africa",
    "AN": "Antarctica",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
}


def _prune(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in node.items():
        value = _prune(raw) if isinstance(raw, dict) else raw
        if value is None or value == {}:
            continue
        out[key] = value

    return out


def ecs_fields(
    geo: GeoRecord | None = None,
    kind: SourceKind | None = None,
    rating: Rating | None = None,
    *,
    tor: bool | None = None,
    compromised: bool | None = None,
) -> dict[str, Any]:
    """ECS ``source.geo.*`` / ``source.as.*`` and ``l4s.*`` fields, as nested dicts.

    Missing values are left out rather than written as null, so the result merges
    into an event with a plain recursive update and encodes with
    ``msgspec.json.encode``.

    Example:
        >>> ecs_fields(GeoRecord(country_iso="DE", asn=24940))["source"]["as"]
        {'number': 24940}
    """
    source: dict[str, Any] = {}
    if geo is not None:
        location = None
        if geo.latitude is not None and geo.longitude is not None:
            location = {"lat": geo.latitude, "lon": geo.longitude}
        source["geo"] = {
            "country_iso_code": geo.country_iso,
            "country_name": geo.country_name,
            "continent_code": geo.continent,
            "continent_name": CONTINENT_NAMES.get(geo.continent or ""),
            "city_name": geo.city,
            "location": location,
        }
        source["as"] = {"number": geo.asn, "organization": {"name": geo.as_org}}
    l4s: dict[str, Any] = {}
    if rating is not None:
        l4s["threat"] = {
            "level": rating.level,
            "score": rating.score,
            "reasons": list(rating.reasons),
        }
    src: dict[str, Any] = {}
    if kind is not None:
        src["kind"] = kind.kind
        src["research"] = kind.research
        src["kind_reason"] = kind.reason
    if compromised is not None:
        src["possibly_compromised"] = compromised
    if geo is not None and geo.special:
        src["special_range"] = geo.special
    if geo is not None and geo.network:
        src["network"] = geo.network
    if geo is not None and geo.registered_country:
        src["registered_country_iso_code"] = geo.registered_country
    l4s["source"] = src
    if tor is not None:
        l4s["tor"] = tor

    return _prune({"source": source, "l4s": l4s})
