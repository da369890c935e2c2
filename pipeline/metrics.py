"""Every Prometheus metric l4s exports, built against one injected registry.

Labels stay low-cardinality: stage, format, reason, technique, level. Never an
address, and attacker-chosen strings (header names, schemes, declared formats)
are folded into a fixed vocabulary before they become label values.

The ``l4s_store_*`` gauges are a bounded summary of the Redis serving view
(unique sources, top countries and organisations, levels, Tor), refreshed by the
enrich worker; see :mod:`pipeline.summary`.
"""

from __future__ import annotations

import contextlib

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from pipeline.formats import REGISTRY

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: Request fields that get their own label value; other headers fold to one.
KNOWN_FIELDS = frozenset(
    {
        "url.original",
        "user_agent.original",
        "http.request.referrer",
        "http.request.method",
        "url.domain",
        "http.request.body.content",
        "http.request.headers.x-api-version",
        "http.request.headers.authorization",
        "http.request.headers.x-forwarded-for",
        "http.request.headers.cookie",
        "http.request.headers.x-real-ip",
        "http.request.headers.accept",
        "http.request.headers.accept-language",
        "http.request.headers.forwarded",
        "http.request.headers.origin",
        "http.request.headers.content-type",
    }
)
KNOWN_SCHEMES = frozenset(
    {"ldap", "ldaps", "rmi", "dns", "iiop", "corba", "nds", "nis", "http", "https", "script", "url"}
)


def field_label(field: str) -> str:
    """Fold a field name into the fixed label vocabulary."""
    if field in KNOWN_FIELDS:
        return field
    return "http.request.headers.other" if field.startswith("http.request.headers.") else "other"


def format_label(name: str | None) -> str:
    """Fold a log-format name (config, a producer's header) into registry keys.

    ``auto`` stays ``auto`` (decided per record); anything not registered is
    ``unknown``, so a producer's header cannot mint label values.
    """
    if name is None or name == "auto":
        return "auto"
    return name if name in REGISTRY else "unknown"


def scheme_label(scheme: str) -> str:
    """Fold a lookup scheme into the fixed label vocabulary."""
    scheme = scheme.lower()
    return scheme if scheme in KNOWN_SCHEMES else "other"


class Metrics:
    """The metric families of all l4s workers.

    Args:
        registry: where the families are registered; tests pass a fresh one.

    Example:
        >>> m = Metrics(CollectorRegistry())
        >>> m.records_consumed.labels(stage="detect", format="combined").inc()
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.records_consumed = Counter(
            "l4s_records_consumed", "Records read from the input", ["stage", "format"], registry=r
        )
        self.records_parsed = Counter(
            "l4s_records_parsed", "Records accepted as well-formed logs", ["format"], registry=r
        )
        self.records_clean = Counter(
            "l4s_records_prefiltered",
            "Records the prefilter proved cannot hold a lookup (not fully parsed)",
            registry=r,
        )
        self.dead_letters = Counter(
            "l4s_records_dead_lettered",
            "Records sent to the dead-letter topic",
            ["stage", "reason"],
            registry=r,
        )
        self.timestamp_fallbacks = Counter(
            "l4s_timestamp_fallbacks",
            "Records without a usable timestamp that took the broker's",
            registry=r,
        )
        self.attacks = Counter(
            "l4s_attacks", "Records with a lookup that reaches a remote target", ["family"], registry=r
        )
        self.inert_attempts = Counter(
            "l4s_inert_attempts", "Attack-shaped records that cannot reach a lookup", registry=r
        )
        self.detection_techniques = Counter(
            "l4s_detection_techniques", "Attacks by obfuscation technique", ["technique"], registry=r
        )
        self.detection_fields = Counter(
            "l4s_detection_fields", "Attacks by request field", ["field"], registry=r
        )
        self.detection_schemes = Counter(
            "l4s_detection_schemes", "Attacks by lookup scheme", ["scheme"], registry=r
        )
        self.detector_limits = Counter(
            "l4s_detector_limits", "Evaluations stopped by a work bound", ["limit"], registry=r
        )
        self.duplicates = Counter(
            "l4s_duplicates_skipped", "Redelivered events recognised by event id", ["stage"], registry=r
        )
        self.enrich_lookups = Counter(
            "l4s_enrich_lookups", "Enrichment lookups", ["source", "result"], registry=r
        )
        self.data_age = Gauge(
            "l4s_data_age_seconds", "Age of an enrichment data file", ["source"], registry=r
        )
        self.threat_decisions = Counter(
            "l4s_threat_decisions", "Sources rated, by resulting level", ["level"], registry=r
        )
        self.blocklist_records = Counter(
            "l4s_blocklist_records", "Blocklist records published", ["kind"], registry=r
        )
        self.blocklist_suppressed = Counter(
            "l4s_blocklist_suppressed", "Blocks withheld by policy", ["reason"], registry=r
        )
        self.blocklist_tombstones = Counter(
            "l4s_blocklist_tombstones",
            "Blocklist and egress records removed, by why",
            ["topic", "reason"],
            registry=r,
        )
        self.blocklist_held = Counter(
            "l4s_blocklist_held",
            "New entries held back while the circuit breaker is open",
            ["topic"],
            registry=r,
        )
        self.blocklist_breaker_trips = Counter(
            "l4s_blocklist_breaker_trips",
            "Times the breaker opened",
            ["topic"],
            registry=r,
        )
        self.egress_records = Counter(
            "l4s_egress_records",
            "Egress records published",
            ["kind"],
            registry=r,
        )
        self.follower_entries = Gauge(
            "l4s_follower_entries",
            "Entries a blocklist follower holds, by list",
            ["list"],
            registry=r,
        )
        self.follower_caught_up = Gauge(
            "l4s_follower_caught_up",
            "1 once the follower read the topic to its end",
            registry=r,
        )
        self.follower_applies = Counter(
            "l4s_follower_applies",
            "Firewall or file updates made by a follower",
            ["target", "result"],
            registry=r,
        )
        self.feed_requests = Counter(
            "l4s_feed_requests",
            "HTTP feed requests, by path and status",
            ["path", "code"],
            registry=r,
        )
        self.sink_errors = Counter(
            "l4s_sink_errors", "Failed writes to a sink, retried", ["sink"], registry=r
        )
        self.sink_up = Gauge("l4s_sink_up", "1 when the sink answers", ["sink"], registry=r)
        self.consumer_lag = Gauge(
            "l4s_consumer_lag", "Messages behind the partition end", ["topic", "partition"], registry=r
        )
        self.batch_seconds = Histogram(
            "l4s_batch_seconds", "Time to process one batch", ["stage"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.end_to_end_seconds = Histogram(
            "l4s_end_to_end_seconds",
            "Broker append of the raw record to the enriched decision",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.up = Gauge("l4s_worker_up", "1 while the worker loop runs", ["stage"], registry=r)
        self._observability(r)

    def _observability(self, r: CollectorRegistry) -> None:
        # Families the dashboard and the alert rules read beyond the stage counters.
        self.dead_letter_formats = Counter(
            "l4s_records_dead_lettered_by_format",
            "Records sent to the dead-letter topic, by the format they were read as",
            ["stage", "format"],
            registry=r,
        )
        self.enrich_cache = Counter(
            "l4s_enrich_cache_lookups",
            "Geo/ASN cache lookups by result (hit ratio: hit / all)",
            ["cache", "result"],
            registry=r,
        )
        self.blocklist_breaker_open = Gauge(
            "l4s_blocklist_breaker_open",
            "1 while the blocklist circuit breaker holds publishing back",
            registry=r,
        )
        self.blocklist_entries = Gauge(
            "l4s_blocklist_entries",
            "Live blocklist entries this worker owns, by level (sum over workers)",
            ["level"],
            registry=r,
        )
        self.store_unique_sources = Gauge(
            "l4s_store_unique_sources",
            "Unique attacking sources in the serving view, by window of event days",
            ["window"],
            registry=r,
        )
        self.store_attacks = Gauge(
            "l4s_store_attacks",
            "Attacks in the serving view, by window of event days",
            ["window"],
            registry=r,
        )
        self.store_recurring_sources = Gauge(
            "l4s_store_recurring_sources",
            "Sources of the summary window that attacked on two days or more",
            registry=r,
        )
        self.store_tor_sources = Gauge(
            "l4s_store_tor_sources",
            "Tor exit sources of the summary window",
            registry=r,
        )
        self.store_level_sources = Gauge(
            "l4s_store_level_sources",
            "Sources of the summary window by current threat level",
            ["level"],
            registry=r,
        )
        self.store_kind_sources = Gauge(
            "l4s_store_kind_sources",
            "Sources of the summary window by network kind (research apart)",
            ["kind"],
            registry=r,
        )
        self.store_country_sources = Gauge(
            "l4s_store_country_sources",
            "Sources of the summary window per country, top N only",
            ["country"],
            registry=r,
        )
        self.store_org_sources = Gauge(
            "l4s_store_org_sources",
            "Sources of the summary window per AS organisation, top N only",
            ["asn", "org"],
            registry=r,
        )
        self.store_summary_time = Gauge(
            "l4s_store_summary_timestamp_seconds",
            "When the serving-view summary was last computed",
            registry=r,
        )

    def forget_lag(self, topic: str, partition: int) -> None:
        """Drop the lag series of a partition this worker no longer owns."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))

    def names(self) -> set[str]:
        """Every sample name the registry can expose (``_total``, ``_bucket``...)."""
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
        }
        names: set[str] = set()
        for family in self.registry.collect():
            for suffix in suffixes.get(family.type, ("",)):
                names.add(family.name + suffix)

        return names


def serve(metrics: Metrics, port: int | None, addr: str = "0.0.0.0") -> None:  # noqa: S104
    """Expose ``/metrics`` on ``port`` in a background thread (no-op for None)."""
    if port is not None:
        start_http_server(port, addr=addr, registry=metrics.registry)
