"""The enriched event for the SIEM, in Elastic Common Schema field names."""

from __future__ import annotations

from typing import Any

import msgspec

from pipeline import __version__
from pipeline.blocklist import iso
from pipeline.enrich_stage import Handled


def event_document(handled: Handled) -> dict[str, Any]:
    """One enriched detection as nested ECS fields plus l4s's own under ``l4s``."""
    e = handled.enriched
    d, geo = e.detection, e.geo
    source: dict[str, Any] = {"ip": d.source_ip or None, "address": d.source_ip or None}
    location = {
        "country_iso_code": geo.country_iso,
        "country_name": geo.country_name,
        "continent_code": geo.continent,
        "city_name": geo.city,
        "location": {"lat": geo.latitude, "lon": geo.longitude}
        if geo.latitude is not None and geo.longitude is not None
        else None,
    }
    source["geo"] = _compact(location)
    if geo.asn is not None:
        source["as"] = {"number": geo.asn, "organization": {"name": geo.as_org}}
    rating = handled.rating
    doc: dict[str, Any] = {
        "@timestamp": iso(d.timestamp),
        "event": {
            "id": d.event_id,
            "kind": "alert",
            "category": ["intrusion_detection", "web"],
            "type": ["info"],
            "dataset": "l4s.detections",
            "severity": _SEVERITY.get(rating.level, 0) if rating else 0,
        },
        "source": _compact(source),
        "url": {"original": d.uri},
        "user_agent": {"original": d.user_agent},
        "http": {"request": {"method": d.method}},
        "vulnerability": {"id": sorted({c for f in d.findings for c in f.cves})},
        "l4s": {
            "malicious": d.malicious,
            "findings": [msgspec.to_builtins(f) for f in d.findings],
            "techniques": list(d.techniques),
            "fields": list(d.fields),
            "inert_fields": list(d.inert_fields),
            "format": d.format,
            "timestamp_source": d.timestamp_source,
            "tor": e.tor,
            "source": {
                "kind": e.source.kind,
                "research": e.source.research,
                "possibly_compromised": e.compromised,
                "special": geo.special,
                "hits": handled.aggregate.hits,
                "days": handled.aggregate.days,
            },
            "threat": {"level": rating.level, "score": rating.score, "reasons": list(rating.reasons)}
            if rating
            else None,
            "engine": d.engine,
            "version": __version__,
        },
    }
    return _compact(doc)


_SEVERITY = {"Safe": 1, "Low": 21, "Moderate": 47, "Dangerous": 73, "Critical": 99}


def _compact(value: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None or an empty container."""
    out = {}
    for key, item in value.items():
        kept = _compact(item) if isinstance(item, dict) else item
        if kept is not None and kept not in ({}, []):
            out[key] = kept
    return out
