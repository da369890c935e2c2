"""Reading log files for ``l4s scan`` and ``l4s replay``: plain or gzip, or stdin."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import ConfigError

_GZIP_MAGIC = b"\x1f\x8b"


def open_log(path: str) -> BinaryIO:
    """Open ``path`` (``-`` is stdin) for reading bytes, un-gzipping when needed."""
    if path == "-":
        return sys.stdin.buffer
    try:
        raw = Path(path).open("rb")  # noqa: SIM115 - returned to the caller
    except FileNotFoundError:
        raise ConfigError(f"log file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory; give log files") from None
    except OSError as exc:
        raise ConfigError(f"cannot read log file {path}: {exc.strerror}") from None
    if raw.peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """``(line number, record)`` pairs; the line ending is removed, blank lines skipped."""
    try:
        for number, line in enumerate(handle, 1):
            record = line.rstrip(b"\r\n")
            if record:
                yield number, record
    except (gzip.BadGzipFile, EOFError) as exc:
        raise ConfigError(f"compressed log is damaged: {exc}") from None


def size_of(path: str) -> int | None:
    """Bytes on disk, for progress; None for stdin."""
    return None if path == "-" else Path(path).stat().st_size
