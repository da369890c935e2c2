"""``l4s replay``: produce log records from files into the input topic."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Producer
from pyrate_limiter import Duration, Limiter, Rate
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from pipeline import log
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailable
from pipeline.kafka_io import (
    FORMAT_HEADER,
    MAX_INPUT_RECORD_BYTES,
    check_broker,
    delivery_tracker,
    producer_config,
)
from pipeline.sources import lines, open_log, size_of

#: Records acquired from the rate limiter at a time, so pacing costs little.
_RATE_CHUNK = 100
#: Room for the record batch framing around the largest record.
_BATCH_OVERHEAD = 64 * 1024

_log = log.get("replay")


@dataclass
class ReplayResult:
    records: int = 0
    files: int = 0
    #: Records over MAX_INPUT_RECORD_BYTES, not sent; the first one's ``path:line``.
    oversize: int = 0
    first_oversize: str | None = None


def replay(
    paths: Iterable[str],
    settings: Settings,
    *,
    rate: float | None = None,
    fmt: str | None = None,
    topic: str | None = None,
    progress: bool | None = None,
) -> ReplayResult:
    """Produce every non-blank line of ``paths`` as one record, in file order.

    Args:
        rate: records per second at most; None for as fast as the broker takes them.
        fmt: a format name sent in the ``l4s-format`` header of every record.
        progress: draw a progress bar; by default only on a terminal.
    """
    check_broker(settings)
    topic = topic or settings.topics.input
    producer = Producer(
        producer_config(
            settings,
            **{
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "message.max.bytes": MAX_INPUT_RECORD_BYTES + _BATCH_OVERHEAD,
            },
        )
    )
    failures, on_delivery = delivery_tracker()
    headers = [(FORMAT_HEADER, fmt.encode())] if fmt else None
    limiter = None
    chunk = _RATE_CHUNK
    if rate:
        chunk = max(1, min(_RATE_CHUNK, int(rate // 10)))
        # Waits (up to an hour per chunk) rather than failing when ahead of the rate.
        limiter = Limiter(
            Rate(max(int(rate), 1), Duration.SECOND),
            max_delay=Duration.HOUR,
            retry_until_max_delay=True,
        )
    show = sys.stderr.isatty() if progress is None else progress
    result = ReplayResult()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not show,
        transient=False,
    ) as bar:
        for path in paths:
            task = bar.add_task(f"replay {path}", total=size_of(path))
            with open_log(path) as handle:
                for number, record in lines(handle):
                    if len(record) > MAX_INPUT_RECORD_BYTES:
                        # Kafka would refuse it: report it rather than stop the replay.
                        result.oversize += 1
                        where = f"{path}:{number}"
                        result.first_oversize = result.first_oversize or where
                        _log.warning("record_too_large", where=where, size=len(record))
                        continue
                    if limiter is not None and result.records % chunk == 0:
                        limiter.try_acquire("replay", weight=chunk)
                    _produce(producer, topic, record, headers, on_delivery)
                    result.records += 1
                    if result.records % 1000 == 0:
                        bar.update(task, completed=_position(handle))
                        producer.poll(0)
            bar.update(task, completed=size_of(path))
            result.files += 1
    remaining = producer.flush(60)
    if remaining or failures:
        detail = "; ".join(failures[:3]) or f"{remaining} records unacknowledged"
        raise ServiceUnavailable(f"Kafka did not take every record: {detail}")
    return result


def _produce(producer: Producer, topic: str, value: bytes, headers: object, on_delivery: object) -> None:
    while True:
        try:
            producer.produce(topic, value=value, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.5)


def _position(handle: object) -> int | None:
    # For gzip input, the position in the compressed file drives the bar.
    raw = getattr(handle, "fileobj", handle)
    try:
        return int(raw.tell())  # type: ignore[attr-defined]
    except (OSError, AttributeError, ValueError):
        return None
