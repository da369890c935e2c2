"""Log-format parsers: a plain registry, and per-record format choice.

Contract with the detect stage:

* ``FormatRouter.choose(raw, named)`` → ``(parser, ambiguous)``. ``named`` is the
  record's ``l4s-format`` Kafka header; otherwise the topic's format from
  ``[formats.topics]``, then ``[formats] default``. With ``auto`` each parser whose
  ``sniff`` matches the record's shape runs ``looks_like``; when two JSON shapes
  claim it, its decoded top-level keys decide; unless exactly one claims the
  record, the ``fallback`` parser is used and ``ambiguous`` is True.
* ``parser.parse(raw)`` returns an :class:`~pipeline.events.HttpRequest`, or None
  for a well-formed record that is not a request (a W3C or Zeek header line, a
  non-HTTP Suricata event); it raises :class:`~pipeline.errors.PoisonRecord` for
  anything malformed, never another exception.
* ``parser.looks_like(raw)`` is a compiled-regex or byte test, true only for a
  complete record of that format (a truncated line is rejected).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.aws import AlbParser
from pipeline.formats.base import Parser
from pipeline.formats.combined import CombinedParser
from pipeline.formats.jsonformats import (
    AzureParser,
    CloudflareParser,
    EcsParser,
    FluentBitParser,
    GcpLoadBalancerParser,
    SuricataParser,
    TraefikParser,
    VectorParser,
    ZeekJsonParser,
)
from pipeline.formats.jsonmap import (
    JsonParser,
    MappedJsonParser,
    decode_object,
    load_mapping,
)
from pipeline.formats.logformat import LogFormatParser, compile_apache, compile_nginx
from pipeline.formats.modsec import ModSecurityParser
from pipeline.formats.proxies import EnvoyParser, HaproxyParser
from pipeline.formats.settings import FormatSettings
from pipeline.formats.w3c import CloudFrontParser, IisParser
from pipeline.formats.zeek import ZeekTsvParser

if TYPE_CHECKING:
    from pipeline.formats.base import Sniff

#: Registry key → parser class. Config and the ``l4s-format`` Kafka header name a key.
REGISTRY: dict[str, type[Parser]] = {
    cls.name: cls
    for cls in (
        CombinedParser,
        AlbParser,
        CloudFrontParser,
        IisParser,
        ZeekTsvParser,
        HaproxyParser,
        EnvoyParser,
        ModSecurityParser,
        EcsParser,
        VectorParser,
        FluentBitParser,
        CloudflareParser,
        GcpLoadBalancerParser,
        AzureParser,
        TraefikParser,
        ZeekJsonParser,
        SuricataParser,
    )
}

#: Other names operators use for the same formats; never auto-detected twice.
ALIASES: dict[str, str] = {
    "common": "combined",
    "nginx_combined": "combined",
    "apache_combined": "combined",
    "w3c": "iis",
    "azure_frontdoor": "azure",
    "azure_appgw": "azure",
    "eve": "suricata",
}


class FormatRouter:
    """Chooses the parser for each record: a named format, or ``auto``.

    In ``auto`` mode each registered parser's cheap test runs on the records of
    its shape (JSON objects or lines); when none or several claim a record, the
    ``fallback`` parser is used and the record is reported as ambiguous, so
    auto-detection never guesses silently. Custom nginx/Apache formats and JSON
    mappings from settings are registered under their configured names and are
    used only when named.

    Args:
        default: a format name, or ``auto``.
        fallback: the parser used for ``auto`` records no test claims.
        settings: the ``[formats]`` settings (custom formats, per-topic formats,
            time zone and timestamp policy).
        shapes: restrict auto-detection to these shapes (used for the line inside
            a shipper's JSON envelope).

    Example:
        >>> router = FormatRouter()
        >>> parser, ambiguous = router.choose(b'{"ecs": {"version": "8"}}')
        >>> (parser.name, ambiguous)
        ('ecs', False)
    """

    def __init__(
        self,
        default: str = "auto",
        fallback: str = "combined",
        settings: FormatSettings | None = None,
        shapes: Iterable[Sniff] = ("line", "json"),
    ) -> None:
        self.settings = settings or FormatSettings()
        self._parsers: dict[str, Parser] = {
            key: cls(self.settings) for key, cls in REGISTRY.items()
        }
        self._add_custom(self.settings)
        for alias, key in ALIASES.items():
            self._parsers.setdefault(alias, self._parsers[key])
        for key in (default, fallback, *self.settings.topics.values()):
            if key != "auto" and key not in self._parsers:
                known = ", ".join(sorted(self._parsers))
                raise ConfigError(f"unknown log format {key!r}; known formats: {known}")
        if fallback == "auto":
            raise ConfigError("the fallback log format cannot be 'auto'")
        wanted = set(shapes)
        self._line: list[Parser] = [
            p for k, p in self._registered() if p.sniff == "line" and "line" in wanted
        ]
        self._json = [
            p
            for k, p in self._registered()
            if isinstance(p, JsonParser) and p.sniff == "json" and "json" in wanted
        ]
        self.default = default
        self.fallback = fallback

    @classmethod
    def from_settings(cls, settings: FormatSettings) -> FormatRouter:
        """The router the ``[formats]`` settings describe."""
        return cls(settings.default, settings.fallback, settings)

    def _registered(self) -> list[tuple[str, Parser]]:
        return [(k, p) for k, p in self._parsers.items() if k in REGISTRY]

    def _add_custom(self, settings: FormatSettings) -> None:
        custom: list[tuple[str, Parser]] = []
        for name, directive in settings.nginx.items():
            custom.append(
                (name, LogFormatParser(name, compile_nginx(directive), settings))
            )
        for name, directive in settings.apache.items():
            custom.append(
                (name, LogFormatParser(name, compile_apache(directive), settings))
            )
        for name, path in settings.json_mappings.items():
            custom.append((name, MappedJsonParser(name, load_mapping(path), settings)))
        for name, parser in custom:
            if name in self._parsers or name in ALIASES or name == "auto":
                raise ConfigError(
                    f"custom log format {name!r} shadows a built-in format"
                )
            self._parsers[name] = parser

    def parser(self, name: str) -> Parser:
        """The parser registered under ``name`` (raises PoisonRecord if unknown)."""
        parser = self._parsers.get(name)
        if parser is None:
            raise PoisonRecord(
                "unknown_format", f"format {name[:40]!r} is not registered"
            )
        return parser

    def choose(
        self, raw: bytes, named: str | None = None, topic: str | None = None
    ) -> tuple[Parser, bool]:
        """The parser for ``raw`` and whether auto-detection was ambiguous."""
        key = (
            named
            or (self.settings.topics.get(topic) if topic else None)
            or self.default
        )
        if key != "auto":
            return self.parser(key), False
        if raw[:1] == b"{" or (raw[:1].isspace() and raw.lstrip()[:1] == b"{"):
            return self._choose_json(raw)
        claim: Parser | None = None
        for parser in self._line:
            if parser.looks_like(raw):
                if claim is not None:
                    return self._parsers[self.fallback], True
                claim = parser
        if claim is None:
            return self._parsers[self.fallback], True
        return claim, False

    def _choose_json(self, raw: bytes) -> tuple[Parser, bool]:
        # XXX(#8): each JSON shape scans the record for its keys, about twenty
        # substring scans per record (~20 µs for 1 KB, see bench/bench_formats.py);
        # one key-extracting pass would be cheaper. Name the format per topic on
        # busy JSON topics.
        claims = [p for p in self._json if p.looks_like(raw)]
        if len(claims) > 1:
            # Rare: keys of two shapes in one record (a client can send header
            # names that look like another shape's keys); the top level decides.
            try:
                doc = decode_object(raw)
            except PoisonRecord:
                return self._parsers[self.fallback], True
            claims = [p for p in claims if p.claims_document(doc)]
        if len(claims) == 1:
            return claims[0], False
        return self._parsers[self.fallback], True

    def parse(
        self, raw: bytes, named: str | None = None, topic: str | None = None
    ) -> HttpRequest | None:
        """Choose and parse; None for a well-formed non-request record."""
        parser, _ = self.choose(raw, named, topic)
        return parser.parse(raw)


__all__ = ["ALIASES", "REGISTRY", "FormatRouter", "FormatSettings", "Parser"]
