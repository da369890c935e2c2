"""Structured logging for operators: snake_case events, JSON when not on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

#: Attacker-controlled strings are cut to this many characters in log lines.
PAYLOAD_LOG_CHARS = 120


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog and stdlib logging to stderr at ``level``.

    ``fmt`` is ``console``, ``json`` or ``auto`` (console on a terminal).
    """
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (faust, aiokafka, mode) log through the standard library.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Library records (librdkafka, aiokafka, faust): drop the formatter's
            # own bookkeeping keys before rendering.
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))


def payload_repr(value: str | bytes | None) -> str:
    """A truncated repr of attacker-controlled text, safe for a log line."""
    if value is None:
        return "None"
    text = repr(value[:PAYLOAD_LOG_CHARS])
    return text + "…" if len(value) > PAYLOAD_LOG_CHARS else text


def get(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger bound to ``component=name`` and any extra context."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(component=name, **context)
    return logger
