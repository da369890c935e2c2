"""``l4s scan``: every stage in one process over files, with no Kafka or Redis.

The detect and enrich stages are the streaming workers' own, and the store is the
Redis model held in memory, so the same input gives the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from pipeline.aggregate import aggregate
from pipeline.blocklist import BlocklistEntry
from pipeline.config import Settings
from pipeline.detect_stage import DetectStage, RawRecord
from pipeline.enrich_stage import EnrichStage, Handled
from pipeline.sources import lines, open_log
from pipeline.store import MemoryStore

_BATCH = 10_000


@dataclass
class ScanResult:
    store: MemoryStore
    #: Current blocklist decision per source address.
    blocklist: dict[str, BlocklistEntry] = field(default_factory=dict)
    handled: list[Handled] = field(default_factory=list)


def scan(paths: Iterable[str], settings: Settings, keep_events: bool = False) -> ScanResult:
    """Run detect and enrich over ``paths`` (``-`` for stdin)."""
    detect = DetectStage(settings)
    enrich = EnrichStage.from_settings(settings)
    result = ScanResult(MemoryStore())
    for path in paths:
        stream = "stdin" if path == "-" else path
        with open_log(path) as handle:
            for batch in _batches(lines(handle)):
                records = [RawRecord(value, stream, number, sep=":") for number, value in batch]
                outcome = detect.process(records)
                result.store.add_line_counts(stream, records[-1].seq, outcome.line_counts(stream))
                for detection in outcome.detections:
                    handled = enrich.handle(detection, result.store)
                    if keep_events:
                        result.handled.append(handled)
                    if handled.entry is not None:
                        result.blocklist[handled.entry.address] = handled.entry
                    elif handled.rating is not None:
                        # Withheld now (allowlist, research policy): the
                        # streaming worker tombstones it, so scan drops it too.
                        result.blocklist.pop(detection.source_ip, None)
    # Prefixes are decided over the final entries, as the streaming worker ends up.
    # XXX(#5): scan does not compute the egress list; callback hosts come only from
    # the streaming worker's egress topic; scan --blocklist writes source entries.
    result.blocklist.update(aggregate(result.blocklist, enrich.policy, time.time()))
    return result


def _batches(items: Iterator[tuple[int, bytes]]) -> Iterator[list[tuple[int, bytes]]]:
    while batch := list(islice(items, _BATCH)):
        yield batch
