"""Log-format parsers: a plain registry, and per-record auto-detection."""

from __future__ import annotations

from pipeline.errors import ConfigError, PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import Parser
from pipeline.formats.combined import CombinedParser
from pipeline.formats.ecs import EcsParser

#: Registry key → parser class. Config and the ``l4s-format`` Kafka header name a key.
REGISTRY: dict[str, type[Parser]] = {
    CombinedParser.name: CombinedParser,
    EcsParser.name: EcsParser,
}


class FormatRouter:
    """Chooses the parser for each record: a named format, or ``auto``.

    In ``auto`` mode each registered parser's cheap test runs in order; when none
    or several claim a record, the ``fallback`` parser is used and the record
    is reported as ambiguous, so auto-detection never guesses silently.

    Args:
        default: a registry key, or ``auto``.
        fallback: the parser used for ``auto`` records no test claims.
    """

    def __init__(self, default: str = "auto", fallback: str = "combined") -> None:
        for key in (default, fallback):
            if key != "auto" and key not in REGISTRY:
                known = ", ".join(sorted(REGISTRY))
                raise ConfigError(f"unknown log format {key!r}; known formats: {known}")
        self._parsers = {key: cls() for key, cls in REGISTRY.items()}
        self.default = default
        self.fallback = fallback

    def choose(self, raw: bytes, named: str | None = None) -> tuple[Parser, bool]:
        """The parser for ``raw`` and whether auto-detection was ambiguous."""
        key = named or self.default
        if key != "auto":
            parser = self._parsers.get(key)
            if parser is None:
                raise PoisonRecord("unknown_format", f"format {key!r} is not registered")
            return parser, False
        claims = [p for p in self._parsers.values() if p.looks_like(raw)]
        if len(claims) == 1:
            return claims[0], False
        return self._parsers[self.fallback], True

    def parse(self, raw: bytes, named: str | None = None) -> HttpRequest:
        parser, _ = self.choose(raw, named)
        return parser.parse(raw)
