"""The enrich worker's Faust consumer never commits over a record it did not process."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from pipeline.enrich_app import contiguous_consumer


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int = 0


class FaustLikeConsumer:
    """The two attributes and the method of Faust's consumer that the subclass uses."""

    def __init__(self) -> None:
        self._acked: dict[Any, list[int]] = defaultdict(list)
        self._committed_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self.gaps: list[tuple[int, int]] = []

    def _new_offset(self, tp: Any) -> int | None:
        # Faust commits after the acknowledged run, whatever comes before it.
        return max(self._acked[tp]) + 1 if self._acked[tp] else None

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        self.gaps.append((offset_from, offset_to))


def test_commit_stops_before_a_record_that_was_never_acknowledged() -> None:
    consumer = contiguous_consumer(FaustLikeConsumer, "detections")()
    tp = TP("detections")
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [11, 12]
    assert consumer._new_offset(tp) is None


def test_commit_goes_on_once_the_missing_record_is_acknowledged() -> None:
    consumer = contiguous_consumer(FaustLikeConsumer, "detections")()
    tp = TP("detections")
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [10, 11, 12]
    assert consumer._new_offset(tp) == 13


def test_a_jump_in_the_detections_topic_is_not_taken_for_a_hole() -> None:
    consumer = contiguous_consumer(FaustLikeConsumer, "detections")()
    asyncio.run(consumer._add_gap(TP("detections"), 5, 9))
    asyncio.run(consumer._add_gap(TP("changelog"), 5, 9))
    assert consumer.gaps == [(5, 9)]


def test_other_topics_keep_faust_s_own_rule() -> None:
    consumer = contiguous_consumer(FaustLikeConsumer, "detections")()
    tp = TP("other")
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [12]
    assert consumer._new_offset(tp) == 13
