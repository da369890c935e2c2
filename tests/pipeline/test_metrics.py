"""The workers' metrics: what they count on the demo data; labels stay bounded."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.config import Settings
from pipeline.detect_stage import DetectStage, RawRecord
from pipeline.detect_worker import observe_batch, observe_stats
from pipeline.enrich_app import observe_data, observe_handled
from pipeline.enrich_stage import EnrichStage
from pipeline.metrics import Metrics, format_label
from pipeline.store import MemoryStore
from tests.conftest import DEMO

SAMPLE = [
    DEMO / "apache_logs",
    DEMO / "crowdsec_log4j.log",
    DEMO / "corelight_log4j_requests.ecs.jsonl",
]
#: Label names that would put an address (or another unbounded value) in a series.
FORBIDDEN_LABELS = {"ip", "address", "source_ip", "client", "host", "url", "payload"}


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def samples(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for f in metrics.registry.collect()
        for s in f.samples
    ]


def demo_records() -> list[RawRecord]:
    records = []
    for path in SAMPLE:
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            records.append(RawRecord(line, str(path), number, sep=":"))
    return records


@pytest.fixture(scope="module")
def demo_outcome():  # type: ignore[no-untyped-def]
    return DetectStage(Settings()).process(demo_records())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_every_family_is_an_l4s_family_without_address_labels(metrics: Metrics) -> None:
    families = list(metrics.registry.collect())
    assert len(families) >= 30
    for family in families:
        assert family.name.startswith("l4s_"), family.name
    for name in (
        "l4s_records_consumed",
        "l4s_consumer_lag",
        "l4s_store_country_sources",
        "l4s_blocklist_entries",
    ):
        assert name in {f.name for f in families}
    # Label names are fixed at registration; none may carry an address.
    for attribute in vars(metrics).values():
        names = set(getattr(attribute, "_labelnames", ()))
        assert not names & FORBIDDEN_LABELS, names


def test_demo_batch_counts_attacks_by_family_technique_field_and_scheme(
    metrics: Metrics, demo_outcome
) -> None:  # type: ignore[no-untyped-def]
    observe_batch(metrics, demo_outcome, 0.5)

    malicious = [d for d in demo_outcome.detections if d.malicious]
    assert len(malicious) == 21
    assert value(metrics, "l4s_attacks_total", family="log4shell") == 21
    assert (
        value(metrics, "l4s_records_consumed_total", stage="detect", format="all")
        == 10_021
    )
    # Line 8,899 of the real Apache log is cut inside its User-Agent.
    assert value(metrics, "l4s_records_parsed_total", format="combined") == 10_000
    assert (
        value(metrics, "l4s_records_dead_lettered_total", stage="detect", reason="truncated")
        == 1
    )
    assert value(metrics, "l4s_records_parsed_total", format="ecs") == 20
    assert value(metrics, "l4s_detection_techniques_total", technique="lower") == 2
    assert (
        value(
            metrics,
            "l4s_detection_fields_total",
            field="http.request.headers.authorization",
        )
        == 12
    )
    assert value(metrics, "l4s_detection_schemes_total", scheme="ldap") >= 1
    assert value(metrics, "l4s_batch_seconds_count", stage="detect") == 1
    assert (
        value(
            metrics,
            "l4s_records_dead_lettered_total",
            stage="detect",
            reason="not_access_log",
        )
        == 0
    )


def test_no_label_value_is_an_address(metrics: Metrics, demo_outcome) -> None:  # type: ignore[no-untyped-def]
    observe_batch(metrics, demo_outcome, 0.5)
    stage = demo_stage()
    store = MemoryStore()
    for detection in demo_outcome.detections:
        observe_handled(metrics, stage.handle(detection, store), "Dangerous")

    values = {v for _, labels, _ in samples(metrics) for v in labels.values()}
    assert values, "the demo produced labelled samples"
    for label in values:
        with pytest.raises(ValueError):
            ipaddress.ip_address(label)


def test_dead_letters_are_counted_by_reason_and_by_a_folded_format(
    metrics: Metrics,
) -> None:
    records = [
        RawRecord(b"not a log line at all", "logs/0", 1),
        RawRecord(b'{"@timestamp": 12, "source": ', "logs/0", 2, format="ecs"),
        RawRecord(b"whatever", "logs/0", 3, format="<script>evil</script>"),
    ]
    outcome = DetectStage(Settings()).process(records)

    observe_batch(metrics, outcome, 0.01)

    assert (
        value(
            metrics,
            "l4s_records_dead_lettered_total",
            stage="detect",
            reason="not_access_log",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "l4s_records_dead_lettered_total",
            stage="detect",
            reason="not_json",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "l4s_records_dead_lettered_total",
            stage="detect",
            reason="unknown_format",
        )
        == 1
    )
    by_format = "l4s_records_dead_lettered_by_format_total"
    assert value(metrics, by_format, stage="detect", format="auto") == 1
    assert value(metrics, by_format, stage="detect", format="ecs") == 1
    # A producer's header cannot mint a label value.
    assert value(metrics, by_format, stage="detect", format="unknown") == 1


def test_format_labels_fold_to_the_registry() -> None:
    assert format_label("combined") == "combined"
    assert format_label(None) == "auto"
    assert format_label("auto") == "auto"
    assert format_label("203.0.113.9") == "unknown"


def test_lag_comes_from_librdkafka_statistics_and_is_dropped_on_revoke(
    metrics: Metrics,
) -> None:
    stats = {
        "topics": {
            "http-logs": {
                "partitions": {
                    "0": {"consumer_lag": 42, "fetch_state": "active"},
                    "1": {"consumer_lag": -1, "fetch_state": "active"},
                    "2": {"consumer_lag": 7, "fetch_state": "none"},
                    "-1": {"consumer_lag": 99},
                }
            }
        }
    }

    observe_stats(metrics, stats)

    lag = "l4s_consumer_lag"
    assert value(metrics, lag, topic="http-logs", partition="0") == 42
    present = {s[1]["partition"] for s in samples(metrics) if s[0] == lag}
    assert present == {"0"}
    metrics.forget_lag("http-logs", 0)
    metrics.forget_lag("http-logs", 5)  # never reported: no error
    assert not [s for s in samples(metrics) if s[0] == lag]


def demo_stage(min_level: str = "Dangerous") -> EnrichStage:
    settings = Settings(
        enrich={
            "geoip_db": DEMO / "geo/dbip-country-lite-demo.mmdb",
            "asn_db": DEMO / "geo/asn-lite-demo.mmdb",
        },
        blocklist={"min_level": min_level},
    )
    return EnrichStage.from_settings(settings)


def test_enrichment_counts_lookups_levels_and_special_range_suppressions(
    metrics: Metrics, demo_outcome
) -> None:  # type: ignore[no-untyped-def]
    stage = demo_stage(min_level="Low")
    store = MemoryStore()
    handled = [stage.handle(d, store) for d in demo_outcome.detections]

    for item in handled:
        observe_handled(metrics, item, "Low")

    rated = [h for h in handled if h.rating is not None]
    decisions = sum(
        value(metrics, "l4s_threat_decisions_total", level=lv)
        for lv in ("Safe", "Low", "Moderate", "Dangerous", "Critical")
    )
    assert decisions == len(rated) == 21
    private = [h for h in handled if h.enriched.detection.source_ip == "192.168.1.3"]
    assert private and private[0].entry is None
    assert (
        value(metrics, "l4s_enrich_lookups_total", source="geo", result="special") == 1
    )
    assert value(metrics, "l4s_blocklist_suppressed_total", reason="special_range") == 1
    found = value(metrics, "l4s_enrich_lookups_total", source="geo", result="found")
    assert found == 20
    assert (
        value(metrics, "l4s_enrich_lookups_total", source="tor", result="not_exit")
        == 20
    )


def test_data_ages_and_cache_counters_are_exported_without_double_counting(
    metrics: Metrics, tmp_path: Path
) -> None:
    tor = tmp_path / "tor.txt"
    tor.write_text("203.0.113.5\n")
    settings = Settings(
        enrich={"geoip_db": DEMO / "geo/dbip-country-lite-demo.mmdb", "tor_exits": tor}
    )
    stage = EnrichStage.from_settings(settings)
    for ip in ("203.0.113.9", "203.0.113.9", "198.51.100.1"):
        stage.geo.lookup(ip)
    seen = [0, 0]

    observe_data(metrics, stage, seen)
    observe_data(metrics, stage, seen)

    assert (
        value(metrics, "l4s_enrich_cache_lookups_total", cache="geo", result="hit") == 1
    )
    assert (
        value(metrics, "l4s_enrich_cache_lookups_total", cache="geo", result="miss")
        == 2
    )
    assert 0 <= value(metrics, "l4s_data_age_seconds", source="tor") < 120
    assert value(metrics, "l4s_data_age_seconds", source="geoip") > 0
    assert (
        metrics.registry.get_sample_value("l4s_data_age_seconds", {"source": "asn"})
        is None
    )
