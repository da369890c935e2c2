"""Settings of the log-format parsers: which format, custom layouts, time policy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FormatSettings(BaseModel):
    """How the detect stage reads its input records (the ``[formats]`` table).

    Args:
        default: registry key used when neither the record's ``l4s-format`` header
            nor ``topics`` names one; ``auto`` detects the format per record.
        fallback: parser for ``auto`` records that no format (or several) claim;
            such records are reported as ambiguous and counted.
        topics: per-topic format, ``{"alb-logs": "alb"}``.
        nginx: custom nginx formats, name → ``log_format`` directive or its
            format string (``escape=json`` honoured).
        apache: custom Apache formats, name → ``LogFormat`` directive or its
            format string.
        json_mappings: custom JSON shapes, name → mapping file (TOML).
        timezone: IANA zone for timestamps that carry no offset (HAProxy,
            Apache ``%{...}t`` without ``%z``, naive ISO strings).
        bad_timestamp: ``dead_letter`` raises ``PoisonRecord("bad_timestamp")``
            for a present but unreadable or out-of-range time; ``broker`` treats
            it as absent so the stage substitutes the broker time and counts it.
        max_future_seconds: how far ahead of the wall clock an event time may be.
        w3c_fields: IIS field layout used until a ``#Fields:`` line is seen.
        cloudfront_fields: CloudFront layout used until a ``#Fields:`` line is seen.
        zeek_fields: Zeek TSV layout used until a ``#fields`` line is seen.
        haproxy_request_headers: names of the ``capture request header`` lines of
            the HAProxy config, in order, so ``{a|b}`` captures get header names.
        inner: format of the raw line inside shipper envelopes (Filebeat
            ``message``, Vector ``message``, Fluent Bit ``log``); ``auto`` tries
            the line formats.

    Example:
        >>> FormatSettings(default="alb", topics={"cdn": "cloudfront"}).default
        'alb'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = "auto"
    fallback: str = "combined"
    topics: dict[str, str] = Field(default_factory=dict)
    nginx: dict[str, str] = Field(default_factory=dict)
    apache: dict[str, str] = Field(default_factory=dict)
    json_mappings: dict[str, Path] = Field(default_factory=dict)
    timezone: str = "UTC"
    bad_timestamp: Literal["dead_letter", "broker"] = "broker"
    max_future_seconds: float = Field(default=86_400.0, ge=0)
    w3c_fields: list[str] = Field(default_factory=list)
    cloudfront_fields: list[str] = Field(default_factory=list)
    zeek_fields: list[str] = Field(default_factory=list)
    haproxy_request_headers: list[str] = Field(default_factory=list)
    inner: str = "auto"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value
