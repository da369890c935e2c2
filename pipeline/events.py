"""Typed, frozen events that flow between l4s stages, and their JSON wire form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import msgspec

SCHEMA_VERSION = 1

#: ECS names of the request fields the detector reads; headers are
#: ``http.request.headers.<lower-case name>``.
FIELD_URL = "url.original"
FIELD_USER_AGENT = "user_agent.original"
FIELD_REFERRER = "http.request.referrer"
FIELD_METHOD = "http.request.method"
FIELD_HOST = "url.domain"
FIELD_BODY = "http.request.body.content"
HEADER_FIELD_PREFIX = "http.request.headers."
EXTRA_FIELD_PREFIX = "log.extra."

# Headers whose value already has its own ECS field; scanning them twice would
# count one payload as two findings.
_HEADERS_WITH_OWN_FIELD = {
    "user-agent": "user_agent",
    "referer": "referer",
    "host": "host",
}
_FIELD_OF_ATTRIBUTE = {
    "user_agent": FIELD_USER_AGENT,
    "referer": FIELD_REFERRER,
    "host": FIELD_HOST,
}

TimestampSource = Literal["log", "broker", "ingest"]


class HttpRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One HTTP request as a log recorded it, the same shape for every format.

    Args:
        format: registry key of the parser that produced it (``combined``, ``ecs``).
        timestamp: event time in epoch seconds (UTC), or None when the record
            carried no usable time (the stage then uses the broker's).
        client_ip: the client after the trusted-proxy rule; None when the log has
            no address.
        peer_ip: the TCP peer as logged.
        forwarded_for: X-Forwarded-For / Forwarded chain, left to right.
        headers: request headers as ``(lower-case name, value)`` pairs in log order.
        extra: other text fields as ``(name, value)`` pairs.
        ecs_fields: other attacker-reachable fields that have an ECS name, as
            ``(ECS name, value)`` pairs (``user.name``, ``tls.client.server_name``).

    Example:
        >>> HttpRequest(format="combined", uri="/", user_agent="curl/8").uri
        '/'
    """

    format: str
    timestamp: float | None = None
    client_ip: str | None = None
    peer_ip: str | None = None
    forwarded_for: tuple[str, ...] = ()
    method: str | None = None
    host: str | None = None
    uri: str | None = None
    protocol: str | None = None
    user_agent: str | None = None
    referer: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    status: int | None = None
    bytes_sent: int | None = None
    #: Unnamed or format-specific text fields (extra quoted fields of an access
    #: log), scanned as ``log.extra.<name>``.
    extra: tuple[tuple[str, str], ...] = ()
    #: Other attacker-reachable fields under their own ECS names.
    ecs_fields: tuple[tuple[str, str], ...] = ()

    def fields(self) -> Iterator[tuple[str, str]]:
        """Yield ``(ECS field name, value)`` for every attacker-reachable field."""
        for name, value in (
            (FIELD_URL, self.uri),
            (FIELD_USER_AGENT, self.user_agent),
            (FIELD_REFERRER, self.referer),
            (FIELD_METHOD, self.method),
            (FIELD_HOST, self.host),
            (FIELD_BODY, self.body),
        ):
            if value:
                yield name, value
        for header, value in self.headers:
            own = _HEADERS_WITH_OWN_FIELD.get(header)
            if own is None:
                yield HEADER_FIELD_PREFIX + header, value
            elif not getattr(self, own):
                yield _FIELD_OF_ATTRIBUTE[own], value
        for name, value in self.ecs_fields:
            if value:
                yield name, value
        for name, value in self.extra:
            if value:
                yield EXTRA_FIELD_PREFIX + name, value


class Finding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One lookup an attacker made Log4j (or Commons Text) evaluate.

    Args:
        field: ECS name of the request field that carried it.
        family: ``log4shell`` (a JNDI lookup) or ``commons-text`` (CVE-2022-42889).
        url: the evaluated lookup target, e.g. ``ldap://198.51.100.7:1389/a``.
        decodings: transport decodings undone before evaluation, outermost first.
        techniques: obfuscation techniques the payload used.
        exfil: victim values the payload tries to leak (``env:AWS_SECRET_ACCESS_KEY``).
        oob: name of the out-of-band testing service the host belongs to, if any.
        commands: shell commands decoded from exploit-kit paths.
    """

    field: str
    family: str
    url: str
    scheme: str = ""
    host: str = ""
    port: int | None = None
    path: str = ""
    decodings: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    cves: tuple[str, ...] = ()
    exfil: tuple[str, ...] = ()
    oob: str | None = None
    commands: tuple[str, ...] = ()


class Detection(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the detect stage publishes for a record that carries an attempt.

    ``malicious`` records reach a remote lookup and count as attacks; the others
    are inert attempts (attack-shaped, cannot reach a lookup) and are counted apart.
    """

    v: int = SCHEMA_VERSION
    event_id: str
    timestamp: float
    timestamp_source: TimestampSource = "log"
    source_ip: str
    peer_ip: str | None = None
    format: str = ""
    method: str | None = None
    host: str | None = None
    uri: str | None = None
    user_agent: str | None = None
    malicious: bool = True
    findings: tuple[Finding, ...] = ()
    inert_fields: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    limit_hit: str | None = None
    engine: str = ""
    #: When the broker appended the raw record (epoch seconds), for latency.
    received: float | None = None


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Headers-only description of a record sent to the dead-letter topic.

    The raw bytes travel unchanged as the message value; this is the reason.
    """

    v: int = SCHEMA_VERSION
    reason: str
    detail: str = ""
    source: str = ""
    stage: str = "detect"


_encoder = msgspec.json.Encoder()
_detection_decoder = msgspec.json.Decoder(Detection)


def encode(event: msgspec.Struct) -> bytes:
    """Serialize an event to its JSON wire form."""
    return _encoder.encode(event)


def decode_detection(data: bytes) -> Detection:
    """Parse a detection from the wire; raises ``msgspec.ValidationError``."""
    return _detection_decoder.decode(data)
