"""``l4s scan``: every stage in one process over files, with no Kafka or Redis.

The detect and enrich stages are the streaming workers' own, and the store is the
Redis model held in memory, so the same input gives the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from pipeline.aggregate import aggregate
from pipeline.blocklist import BlocklistEntry
from pipeline.config import Settings
from pipeline.detect_stage import BatchOutcome, DetectStage, RawRecord
from pipeline.enrich_stage import EnrichStage, Handled
from pipeline.formats.base import MAX_RECORD_BYTES
from pipeline.sources import open_log
from pipeline.store import MemoryStore

#: Bytes read at a time; lines are handed to the detect stage a block at a time.
_CHUNK = 4 << 20


@dataclass
class ScanResult:
    store: MemoryStore
    #: Current blocklist decision per source address.
    blocklist: dict[str, BlocklistEntry] = field(default_factory=dict)
    handled: list[Handled] = field(default_factory=list)


def scan(
    paths: Iterable[str], settings: Settings, keep_events: bool = False, fmt: str | None = None
) -> ScanResult:
    """Run detect and enrich over ``paths`` (``-`` for stdin)."""
    detect = DetectStage(settings)
    enrich = EnrichStage.from_settings(settings)
    result = ScanResult(MemoryStore())
    for path in paths:
        stream = "stdin" if path == "-" else path
        with open_log(path) as handle:
            for first, values, joined in blocks(handle):
                last = first + len(values) - 1

                def make(
                    i: int, values: list[bytes] = values, first: int = first, stream: str = stream
                ) -> RawRecord:
                    return RawRecord(values[i], stream, first + i, sep=":")

                outcome = detect.process_block(
                    values, make, stream, last, fmt=fmt, joined=joined, skip_blank=True
                )
                result.store.add_line_counts(stream, last, outcome.line_counts(stream))
                _enrich(outcome, enrich, result, keep_events)
    # Prefixes are decided over the final entries, as the streaming worker ends up.
    # XXX(#5): scan does not compute the egress list; callback hosts come only from
    # the streaming worker's egress topic; scan --blocklist writes source entries.
    result.blocklist.update(aggregate(result.blocklist, enrich.policy, time.time()))
    return result


def _enrich(outcome: BatchOutcome, enrich: EnrichStage, result: ScanResult, keep: bool) -> None:
    for detection in outcome.detections:
        handled = enrich.handle(detection, result.store)
        if keep:
            result.handled.append(handled)
        if handled.entry is not None:
            result.blocklist[handled.entry.address] = handled.entry
        elif handled.rating is not None:
            # Withheld now (allowlist, research policy): the streaming worker
            # tombstones it, so scan drops it too.
            result.blocklist.pop(detection.source_ip, None)


def blocks(handle: BinaryIO, chunk: int = _CHUNK) -> Iterator[tuple[int, list[bytes], bytes]]:
    """``(first line number, lines, the lines joined)`` for successive blocks of a file.

    A line longer than the record limit is cut just past the limit (so the parser
    reports it as too large) and the rest of it is skipped: memory stays bounded
    whatever the file holds.
    """
    number = 1
    rest = b""
    skipping = False
    while True:
        data = handle.read(chunk)
        if not data:
            if rest and not skipping:
                yield number, [rest], rest
            return
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            if skipping:
                rest = b""
            elif len(data) > MAX_RECORD_BYTES:
                yield number, [data[: MAX_RECORD_BYTES + 1]], data[: MAX_RECORD_BYTES + 1]
                number += 1
                skipping, rest = True, b""
            else:
                rest = data
            continue
        block, rest = data[:cut], data[cut + 1 :]
        if skipping:
            # The tail of an oversized line: drop it up to its newline.
            newline = block.find(b"\n")
            skipping = False
            if newline < 0:
                continue
            block = block[newline + 1 :]
        values = block.split(b"\n")
        yield number, values, block
        number += len(values)
