"""A JSON record mapped onto the normalized request by a table of field paths.

Every JSON format l4s reads is such a table (:class:`JsonMapping`): the built-in
ones (ECS, Vector, Fluent Bit, Cloudflare, Google Cloud, Azure, Traefik, Zeek,
Suricata) are written in Python, and an operator describes any other shape in a
TOML mapping file with the same keys::

    # /etc/l4s/myapp.toml
    timestamp = "ts"
    time_format = "epoch"
    peer = "conn.client_addr"
    method = "req.method"
    uri = ["req.url", "req.path"]
    user_agent = "req.headers.user-agent"
    headers = "req.headers"
    [ecs]
    "user.name" = "auth.user"

Paths are dotted; a document may nest them (``{"req": {"url": ...}}``), flatten
them (``{"req.url": ...}``) or mix both. Each key takes one path or a list tried
in order.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError, PoisonRecord
from pipeline.events import HttpRequest
from pipeline.formats.base import (
    BaseParser,
    Sniff,
    check_size,
    excerpt,
    host_of_url,
    make_request,
    split_forwarded_for,
    split_request,
)
from pipeline.formats.settings import FormatSettings

_decoder = msgspec.json.Decoder()

Paths = list[str]


class JsonMapping(BaseModel):
    """Where each request field lives in a JSON document.

    Args:
        timestamp: paths of the event time.
        time_format: ``auto`` (epoch number, ISO 8601 or access-log time),
            ``iso``, ``epoch``, ``clf``, or a ``strftime`` pattern.
        peer: the TCP peer address (``ip``, ``ip:port``, ``[v6]:port``).
        forwarded_for: an X-Forwarded-For value or a list of hops.
        uri: the request target (path and query, or an absolute URL); when
            absent, ``path`` and ``query`` are joined.
        request_line: ``GET /x HTTP/1.1``, split when method/uri are absent.
        headers: an object of header name → value (or list of values), a list of
            ``{"name": ..., "value": ...}``, or a list of ``"Name: value"``.
        header_prefixes: top-level key prefixes of one-header-per-key shapes
            (Traefik's ``request_User-Agent``).
        header_fields: header name → paths, for headers logged as own fields.
        cookies: an object of cookie name → value.
        ecs: other ECS field name → paths (``user.name``).
        extra: other attacker-reachable text fields, scanned as ``log.extra.<name>``.
        message: a raw access-log line carried inside the document (shipper
            envelopes); parsed with the ``inner`` format when the document has no
            request fields of its own.

    Example:
        >>> JsonMapping(uri="req.url", peer=["client.ip"]).uri
        ['req.url']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: Paths = Field(default_factory=list)
    time_format: str = "auto"
    peer: Paths = Field(default_factory=list)
    forwarded_for: Paths = Field(default_factory=list)
    method: Paths = Field(default_factory=list)
    host: Paths = Field(default_factory=list)
    uri: Paths = Field(default_factory=list)
    path: Paths = Field(default_factory=list)
    query: Paths = Field(default_factory=list)
    request_line: Paths = Field(default_factory=list)
    protocol: Paths = Field(default_factory=list)
    user_agent: Paths = Field(default_factory=list)
    referer: Paths = Field(default_factory=list)
    body: Paths = Field(default_factory=list)
    status: Paths = Field(default_factory=list)
    bytes_sent: Paths = Field(default_factory=list)
    headers: Paths = Field(default_factory=list)
    header_prefixes: list[str] = Field(default_factory=list)
    header_fields: dict[str, Paths] = Field(default_factory=dict)
    cookies: Paths = Field(default_factory=list)
    ecs: dict[str, Paths] = Field(default_factory=dict)
    extra: dict[str, Paths] = Field(default_factory=dict)
    message: Paths = Field(default_factory=list)

    @field_validator(
        "timestamp", "peer", "forwarded_for", "method", "host", "uri", "path", "query",
        "request_line", "protocol", "user_agent", "referer", "body", "status",
        "bytes_sent", "headers", "cookies", "message",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("header_fields", "ecs", "extra", mode="before")
    @classmethod
    def _table_of_paths(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


def load_mapping(path: Path) -> JsonMapping:
    """Read a TOML mapping file; :class:`ConfigError` with one readable line."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read JSON mapping {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"JSON mapping {path} is not valid TOML: {exc}") from None
    try:
        return JsonMapping(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "mapping"
        raise ConfigError(
            f"invalid JSON mapping {path}: {where}: {first['msg']}"
        ) from None


@functools.cache
def _split(dotted: str) -> tuple[str, ...]:
    return tuple(dotted.split("."))


def lookup(doc: dict[str, Any], dotted: str) -> Any:
    """Value at ``dotted`` in ``doc``, whether keys are nested, flat or mixed."""
    if dotted in doc:
        return doc[dotted]
    node: Any = doc
    parts = _split(dotted)
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
            continue
        # Mixed forms such as {"http": {"request.method": "GET"}}.
        return node.get(".".join(parts[i:]))
    return node


def first(doc: dict[str, Any], paths: Iterable[str]) -> tuple[str, Any]:
    """The first path of ``paths`` present in ``doc`` and its value."""
    for path in paths:
        value = lookup(doc, path)
        if value is not None:
            return path, value
    return "", None


def as_text(value: Any, where: str) -> str | None:
    """A text field; numbers are accepted, other JSON types are malformed."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise PoisonRecord(
        "bad_field_type", f"{where} is {type(value).__name__}, expected text"
    )


def as_int(value: Any, where: str) -> int | None:
    """An integer field, as a JSON number or numeric text."""
    if value is None or value in ("", "-"):
        return None
    if isinstance(value, bool):
        raise PoisonRecord("bad_field_type", f"{where} is a boolean, expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 20 and value.lstrip("-").isdigit():
        return int(value)
    raise PoisonRecord("bad_field_type", f"{where} is not a whole number")


def text_of(doc: dict[str, Any], paths: Iterable[str]) -> str | None:
    """The text at the first present path."""
    path, value = first(doc, paths)
    return as_text(value, path)


def decode_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw``, or :class:`PoisonRecord`."""
    check_size(raw)
    try:
        doc = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise PoisonRecord("not_json", str(exc)[:120]) from None
    except RecursionError:
        raise PoisonRecord(
            "json_too_deep", "nesting exceeds the decoder's limit"
        ) from None
    if not isinstance(doc, dict):
        raise PoisonRecord("not_json_object", f"top level is {type(doc).__name__}")
    return doc


def headers_of(value: Any, where: str = "headers") -> list[tuple[str, str]]:
    """Header pairs from the shapes shippers use (see :class:`JsonMapping`)."""
    if value is None:
        return []
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name, item in value.items():
            for one in item if isinstance(item, list) else [item]:
                text = as_text(one, f"{where}.{excerpt(name)}")
                if text is not None:
                    pairs.append((str(name).lower(), text))
        return pairs
    if not isinstance(value, list):
        raise PoisonRecord("bad_field_type", f"{where} is {type(value).__name__}")
    for item in value:
        if isinstance(item, dict):
            name = as_text(item.get("name"), f"{where}[].name")
            text = as_text(item.get("value"), f"{where}[].value")
            if name and text is not None:
                pairs.append((name.lower(), text))
        elif isinstance(item, str) and ":" in item:
            name, _, text = item.partition(":")
            pairs.append((name.strip().lower(), text.strip()))
        else:
            raise PoisonRecord(
                "bad_field_type", f"{where} has an entry of unknown shape"
            )
    return pairs


def chain_of(value: Any, where: str) -> list[str]:
    """Forwarded-for hops from ``"a, b"`` or ``["a", "b"]``."""
    if value is None:
        return []
    if isinstance(value, list):
        hops: list[str] = []
        for item in value:
            hops.extend(split_forwarded_for(as_text(item, where) or ""))
        return hops
    return split_forwarded_for(as_text(value, where) or "")


@dataclass(frozen=True)
class ShapeKey:
    """One key of a shape group (see :class:`JsonParser`)."""

    name: str
    kind: str
    word: str
    needles: tuple[bytes, ...]

    def in_bytes(self, raw: bytes) -> bool:
        return any(needle in raw for needle in self.needles)

    def in_document(self, doc: dict[str, Any]) -> bool:
        value = doc.get(self.name)
        if self.kind == "contains":
            return isinstance(value, str) and self.word in value
        if self.kind == "str":
            return isinstance(value, str)
        return self.name in doc


@functools.cache
def _groups(shape: tuple[tuple[str, ...], ...]) -> tuple[tuple[ShapeKey, ...], ...]:
    return tuple(tuple(_shape_key(spec) for spec in group) for group in shape)


def _shape_key(spec: str) -> ShapeKey:
    if "~" in spec:
        name, word = spec.split("~", 1)
        return ShapeKey(name, "contains", word, (word.encode(),))
    if spec.endswith("=str"):
        name = spec[:-4]
        needles = (f'"{name}":"'.encode(), f'"{name}": "'.encode())
        return ShapeKey(name, "str", "", needles)
    return ShapeKey(spec, "key", "", (f'"{spec}":'.encode(),))


class JsonParser(BaseParser):
    """A JSON shape read through its :class:`JsonMapping`.

    Subclasses set ``name``, ``mapping`` and the ``shape`` that identifies their
    records: groups of top-level keys (``"ecs"``), keys with a text value
    (``"log=str"``) or keys whose text contains a word
    (``"category~FrontDoorAccessLog"``); a record has the shape when every key
    of at least one group matches. ``looks_like`` tests this on the raw bytes
    (a record that starts with ``{``, ends with ``}`` and contains ``"key":``,
    which cannot occur inside a JSON string value); when several shapes claim a
    record, ``claims_document`` settles it on the decoded top-level keys, so
    header names a client sends (nested deeper) cannot forge a shape.

    Args:
        settings: the ``[formats]`` settings.
    """

    sniff: Sniff = "json"
    mapping: ClassVar[JsonMapping] = JsonMapping()
    shape: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def __init__(self, settings: FormatSettings | None = None) -> None:
        super().__init__(settings)
        self._inner: Any = None

    def looks_like(self, raw: bytes) -> bool:
        if raw[:1] != b"{" and raw.lstrip()[:1] != b"{":
            return False
        if raw[-1:] != b"}" and raw.rstrip()[-1:] != b"}":
            return False
        return any(all(k.in_bytes(raw) for k in g) for g in _groups(self.shape))

    def claims_document(self, doc: dict[str, Any]) -> bool:
        """Whether the decoded document's top-level keys have this shape."""
        return any(all(k.in_document(doc) for k in g) for g in _groups(self.shape))

    def parse(self, raw: bytes) -> HttpRequest | None:
        return self.from_document(decode_object(raw))

    def from_document(self, doc: dict[str, Any]) -> HttpRequest | None:
        """The request a decoded document describes (hook for subclasses)."""
        return self.mapped(doc, self.mapping)

    def mapped(self, doc: dict[str, Any], m: JsonMapping) -> HttpRequest | None:
        """Apply mapping ``m`` to ``doc``."""
        method = text_of(doc, m.method)
        uri = text_of(doc, m.uri)
        protocol = text_of(doc, m.protocol)
        if uri is None:
            path, query = text_of(doc, m.path), text_of(doc, m.query)
            uri = f"{path or ''}?{query}" if query else path
        if uri is None or method is None:
            line_method, line_uri, line_protocol = split_request(
                text_of(doc, m.request_line)
            )
            method, uri = method or line_method, uri or line_uri
            protocol = protocol or line_protocol
        if uri is None and method is None and m.message:
            message = text_of(doc, m.message)
            if message is not None:
                return self.inner(message, doc, m)
        headers = self.headers(doc, m)
        path, chain = first(doc, m.forwarded_for)
        return make_request(
            self.name,
            timestamp=self.time(doc, m),
            peer=text_of(doc, m.peer),
            headers=headers,
            forwarded_for=chain_of(chain, path) if chain is not None else None,
            method=method,
            host=text_of(doc, m.host) or host_of_url(uri),
            uri=uri,
            protocol=protocol,
            user_agent=text_of(doc, m.user_agent),
            referer=text_of(doc, m.referer),
            body=text_of(doc, m.body),
            status=as_int(first(doc, m.status)[1], "status"),
            bytes_sent=as_int(first(doc, m.bytes_sent)[1], "bytes"),
            extra=[(name, text_of(doc, paths)) for name, paths in m.extra.items()],
            ecs_fields=[(name, text_of(doc, paths)) for name, paths in m.ecs.items()],
        )

    def headers(self, doc: dict[str, Any], m: JsonMapping) -> list[tuple[str, str]]:
        """All header pairs the mapping names."""
        path, value = first(doc, m.headers)
        pairs = headers_of(value, path)
        for prefix in m.header_prefixes:
            for key, item in doc.items():
                if key.startswith(prefix) and len(key) > len(prefix):
                    text = as_text(item, excerpt(key))
                    if text is not None:
                        pairs.append((key[len(prefix) :].lower(), text))
        for name, paths in m.header_fields.items():
            text = text_of(doc, paths)
            if text is not None:
                pairs.append((name, text))
        path, cookies = first(doc, m.cookies)
        if cookies is not None:
            if not isinstance(cookies, dict):
                raise PoisonRecord("bad_field_type", f"{path} is not an object")
            for key, item in cookies.items():
                pairs.append(("cookie", f"{key}={as_text(item, path) or ''}"))
        return pairs

    def time(self, doc: dict[str, Any], m: JsonMapping) -> float | None:
        """The event time per ``time_format``."""
        path, value = first(doc, m.timestamp)
        if value is None:
            return None
        fmt = m.time_format
        if fmt == "epoch" or (fmt in ("auto", "iso") and not isinstance(value, str)):
            return self.clock.epoch(value)
        if not isinstance(value, str):
            raise PoisonRecord("bad_timestamp", f"{path} is {type(value).__name__}")
        if fmt == "clf" or (fmt == "auto" and "/" in value[:12]):
            return self.clock.clf(value)
        if fmt in ("auto", "iso"):
            return self.clock.iso(value)
        return self.clock.strptime(value, fmt)

    def inner(
        self, message: str, doc: dict[str, Any], m: JsonMapping
    ) -> HttpRequest | None:
        """Parse the raw line inside a shipper envelope with the ``inner`` format."""
        if self._inner is None:
            from pipeline.formats import FormatRouter  # noqa: PLC0415 (import cycle)

            self._inner = FormatRouter(
                default=self.settings.inner,
                fallback="combined",
                settings=self.settings,
                shapes=("line",),
            )
        request: HttpRequest | None = self._inner.parse(
            message.encode("utf-8", "replace")
        )
        if request is None:
            return None
        timestamp = request.timestamp
        if timestamp is None:
            timestamp = self.time(doc, m)
        return msgspec.structs.replace(request, format=self.name, timestamp=timestamp)


class MappedJsonParser(JsonParser):
    """A JSON shape described by an operator's mapping file; used only when named.

    Args:
        name: the configured format name.
        mapping: the loaded mapping.
        settings: the ``[formats]`` settings.

    Example:
        >>> p = MappedJsonParser("myapp", JsonMapping(uri="u"))
        >>> p.parse(b'{"u": "/x"}').uri
        '/x'
    """

    sniff: Sniff = "none"

    def __init__(
        self, name: str, mapping: JsonMapping, settings: FormatSettings | None = None
    ) -> None:
        super().__init__(settings)
        self.name = name
        self._mapping = mapping

    def looks_like(self, raw: bytes) -> bool:
        stripped = raw.strip()
        return stripped[:1] == b"{" and stripped[-1:] == b"}"

    def from_document(self, doc: dict[str, Any]) -> HttpRequest | None:
        return self.mapped(doc, self._mapping)
