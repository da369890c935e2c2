"""One exception root for l4s; each subclass decides what happens to the work."""

from __future__ import annotations


class L4sError(Exception):
    """Root of every error l4s raises on purpose.

    Args:
        message: one line for an operator, saying what is wrong and what to do.
        coords: Kafka coordinates (``topic/partition/offset``) or ``file:line`` of
            the record the error came from, when there is one.
    """

    def __init__(self, message: str, *, coords: str | None = None) -> None:
        super().__init__(message)
        self.coords = coords

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (at {self.coords})" if self.coords else text


class ConfigError(L4sError):
    """Bad configuration, flag or data file: the process stops at start."""


class DataFileError(ConfigError):
    """A database or list file is missing, unreadable or of the wrong kind."""


class ServiceUnavailable(L4sError):
    """Kafka or Redis cannot be reached: fatal at start, retried while running."""


class PoisonRecord(L4sError):
    """A record that cannot be parsed; it goes to the dead-letter topic.

    Args:
        reason: a short stable code (``not_utf8``, ``bad_request_line``) that
            dashboards group by.
        detail: a human sentence; never the raw attacker-controlled bytes.
    """

    def __init__(self, reason: str, detail: str = "", *, coords: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, coords=coords)
        self.reason = reason
        self.detail = detail


class EnricherUnavailable(L4sError):
    """An enrichment source failed; the event goes on without it and is counted."""
