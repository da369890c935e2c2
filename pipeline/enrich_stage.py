"""The enrich stage: a detection → geo/ASN/Tor/kind → counters → rating → decision.

Pure lookups plus one store; the Faust worker and ``l4s scan`` both call
:meth:`EnrichStage.handle`, which is what keeps their numbers equal.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import tzinfo
from zoneinfo import ZoneInfo

import msgspec

from enrichers.classify import NetworkClassifier, SourceKind, possibly_compromised
from enrichers.geo import GeoIndex, GeoRecord
from enrichers.rdns import ForwardConfirmedReverseDns, NoReverseDns, ReverseDns
from enrichers.reputation import AbuseIpDbReputation, NoReputation, ReputationSource
from enrichers.threat import Evidence, Rating, ThreatModel
from enrichers.tor import TorExitList
from pipeline import log
from pipeline.blocklist import BlocklistEntry, BlockPolicy
from pipeline.config import Settings
from pipeline.detect_stage import plausible_event_time
from pipeline.errors import EnricherUnavailable, PoisonRecord
from pipeline.events import Detection
from pipeline.store import DetectionFacts, SourceAggregate, Store, day_of

_log = log.get("enrich")

#: Technique tags that describe the payload's target or the engine, not an effort
#: to hide the lookup; every other tag counts as obfuscation evidence.
NOT_OBFUSCATION = frozenset(
    {
        "plain",
        "exfiltration",
        "host-fragment",
        "ipv6",
        "ip-literal",
        "uncommon-scheme",
        "exploit-kit-command",
        "oob-service",
        "commons-text",
        "limit-hit",
    }
)


@dataclass(frozen=True, slots=True)
class Enriched:
    """A detection with what l4s knows of its source address."""

    detection: Detection
    geo: GeoRecord
    tor: bool
    source: SourceKind
    compromised: bool


@dataclass(frozen=True, slots=True)
class Handled:
    """Everything one detection produced.

    ``entry`` is the source's current blocklist decision, or None when policy
    does not block it; ``rating`` is None for records without a source address.
    """

    enriched: Enriched
    aggregate: SourceAggregate
    rating: Rating | None
    entry: BlocklistEntry | None
    #: Why a rated source has no entry (``allowlist``, ``special``, ``level``...).
    withheld: str | None = None


class EnrichStage:
    """Enriches, counts, rates and decides, one detection at a time.

    Args:
        geo: geo/ASN databases; an empty index when none are configured.
        tor: the Tor exit list, or None.

    Example:
        >>> stage = EnrichStage.from_settings(Settings())  # doctest: +SKIP
        >>> handled = stage.handle(detection, MemoryStore())  # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings,
        geo: GeoIndex,
        tor: TorExitList | None,
        classifier: NetworkClassifier,
        model: ThreatModel,
        *,
        rdns: ReverseDns | None = None,
        reputation: ReputationSource | None = None,
    ) -> None:
        self.geo = geo
        self.tor = tor
        self.classifier = classifier
        self.model = model
        self.rdns: ReverseDns = rdns or NoReverseDns()
        self.reputation: ReputationSource = reputation or NoReputation()
        # The operator's own proxies are never blocked, nor a prefix around them.
        protected = [*settings.blocklist.never_block, *settings.detect.trusted_proxies]
        self.policy = BlockPolicy(settings.blocklist.model_copy(update={"never_block": protected}))
        self.zone: tzinfo = ZoneInfo(settings.timezone)

    @classmethod
    def from_settings(cls, settings: Settings) -> EnrichStage:
        """Open the configured data files; :class:`DataFileError` names a bad one."""
        e = settings.enrich
        tor = TorExitList.from_file(e.tor_exits) if e.tor_exits else None
        rdns = ForwardConfirmedReverseDns() if e.reverse_dns else None
        reputation = None
        if e.reputation_key is not None:
            reputation = AbuseIpDbReputation(
                e.reputation_key.get_secret_value(),
                base_url=e.reputation_url,
                per_minute=e.reputation_per_minute,
            )
        return cls(
            settings,
            GeoIndex(e.geoip_db, e.asn_db),
            tor,
            NetworkClassifier.default(),
            ThreatModel.default(),
            rdns=rdns,
            reputation=reputation,
        )

    def enrich(self, detection: Detection) -> Enriched:
        ip = detection.source_ip
        geo = self.geo.lookup(ip) if ip else GeoRecord()
        tor = bool(ip) and self.tor is not None and ip in self.tor
        oob = tuple(f.host for f in detection.findings if f.oob)
        source = self.classifier.classify(geo, tor=tor, oob_domains=oob)
        return Enriched(detection, geo, tor, source, possibly_compromised(source, geo))

    def handle(self, detection: Detection, store: Store, now: float | None = None) -> Handled:
        if not plausible_event_time(detection.timestamp):
            # l4s's detect stage never sends one; a detection from elsewhere might.
            raise PoisonRecord("bad_timestamp", "event time outside years 1 to 9999")
        enriched = self.enrich(detection)
        aggregate = store.record(detection.event_id, self._facts(enriched))
        ip = detection.source_ip
        if not ip:
            return Handled(enriched, aggregate, None, None)
        enriched = self._with_reverse_name(enriched, store)
        evidence = self._evidence(enriched, aggregate)
        reputation = self._reputation(ip)
        if reputation is not None:
            evidence = msgspec.structs.replace(evidence, reputation=reputation)
        rating = self.model.rate(evidence)
        entry, withheld = self._decide(enriched, aggregate, rating, now)
        store.set_rating(
            ip,
            {
                "level": rating.level,
                "score": rating.score,
                "reasons": json.dumps(rating.reasons),
                # Allowlisted and other withheld sources stay visible to analysts.
                "blocklist": entry.action if entry is not None else f"withheld:{withheld}",
            },
        )
        return Handled(enriched, aggregate, rating, entry, withheld)

    def reload_data(self) -> bool:
        """Pick up replaced database and exit-list files; True when any changed."""
        changed = self.geo.reload_if_changed()
        if self.tor is not None:
            changed = self.tor.reload_if_changed() or changed
        return changed

    def _with_reverse_name(self, enriched: Enriched, store: Store) -> Enriched:
        # Only sources already counted get here, so a name is looked up once per
        # rated source (the resolver caches), never per line and never for a
        # host named in a payload.
        hostname = self.rdns.name_of(enriched.detection.source_ip)
        if hostname is None:
            return enriched
        d, geo = enriched.detection, enriched.geo
        source = self.classifier.classify(
            geo,
            tor=enriched.tor,
            oob_domains=tuple(f.host for f in d.findings if f.oob),
            hostname=hostname,
        )
        store.set_rating(d.source_ip, {"hostname": hostname, "kind": source.kind})
        return replace(enriched, source=source, compromised=possibly_compromised(source, geo))

    def _reputation(self, ip: str) -> float | None:
        try:
            return self.reputation.score(ip)
        except EnricherUnavailable as exc:
            # Rated without it; the next decision asks again.
            _log.info("reputation_unavailable", error=str(exc))
            return None

    def _facts(self, enriched: Enriched) -> DetectionFacts:
        d, geo, source = enriched.detection, enriched.geo, enriched.source
        attributes: dict[str, str | int | float] = {"kind": source.kind}
        for name, value in (
            ("country", geo.country_iso),
            ("country_name", geo.country_name),
            ("asn", geo.asn),
            ("org", geo.as_org),
            ("network", geo.network),
            ("special", geo.special),
        ):
            if value is not None:
                attributes[name] = value
        flags = set()
        if enriched.tor:
            flags.add("tor")
        if source.research:
            flags.add("research")
        if enriched.compromised:
            flags.add("compromised")
        if any(f.exfil for f in d.findings):
            flags.add("exfil")
        if any(f.commands for f in d.findings):
            flags.add("commands")
        if any(f.oob for f in d.findings):
            flags.add("oob")
        if d.malicious and set(d.techniques) - NOT_OBFUSCATION:
            flags.add("obfuscated")
        return DetectionFacts(
            day=day_of(d.timestamp, self.zone),
            ip=d.source_ip,
            malicious=d.malicious,
            timestamp=d.timestamp,
            techniques=d.techniques if d.malicious else (),
            fields=d.fields,
            flags=frozenset(flags),
            attributes=attributes,
        )

    def _evidence(self, enriched: Enriched, aggregate: SourceAggregate) -> Evidence:
        flags = aggregate.flags
        return Evidence(
            hits=aggregate.hits,
            inert_hits=aggregate.inert,
            days=aggregate.days,
            techniques=aggregate.techniques - NOT_OBFUSCATION,
            obfuscated="obfuscated" in flags,
            exfil="exfil" in flags,
            commands="commands" in flags,
            oob="oob" in flags,
            tor="tor" in flags,
            kind=enriched.source.kind,
            research="research" in flags,
            compromised="compromised" in flags,
        )

    def _decide(
        self, enriched: Enriched, aggregate: SourceAggregate, rating: Rating, now: float | None
    ) -> tuple[BlocklistEntry | None, str | None]:
        if aggregate.first_seen is None or aggregate.last_seen is None:
            return None, "unseen"
        now = time.time() if now is None else now
        ip = enriched.detection.source_ip
        withheld = self.policy.withheld(ip, rating.level, enriched.source.research, now)
        if withheld is not None:
            return None, withheld
        geo = enriched.geo
        entry = self.policy.entry(
            address=ip,
            level=rating.level,
            score=rating.score,
            reasons=rating.reasons,
            first_seen=aggregate.first_seen,
            last_seen=aggregate.last_seen,
            hits=aggregate.hits,
            days=aggregate.days,
            now=now,
            country=geo.country_iso,
            asn=geo.asn,
            org=geo.as_org,
            kind=enriched.source.kind,
            research=enriched.source.research,
        )
        return entry, None
