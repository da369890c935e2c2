"""Settings for every l4s command: defaults, a TOML file, then ``L4S_*`` env vars.

Precedence, highest first: command-line flags (applied by the CLI), environment
variables (``L4S_KAFKA__BOOTSTRAP``, ``L4S_REDIS__URL``; ``__`` separates
levels), the TOML file given with ``--config`` or ``L4S_CONFIG``, the defaults.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from pipeline.errors import ConfigError
from pipeline.formats.settings import FormatSettings

Level = Literal["Safe", "Low", "Moderate", "Dangerous", "Critical"]


def _seconds(value: Any) -> Any:
    """A bare number (also as text, from an env var) is seconds."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


#: A duration: seconds, or ISO 8601 (``PT6H``).
Duration = Annotated[timedelta, BeforeValidator(_seconds)]


def _check_networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an address or prefix") from None
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap: str = "127.0.0.1:9092"
    #: Extra librdkafka properties for every client (security, SASL, ...).
    client: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(default=3, ge=1)
    replication: int = Field(default=1, ge=1)


class TopicSettings(_Section):
    input: str = "http-logs"
    detections: str = "log4shell.detections"
    events: str = "log4shell.events"
    blocklist: str = "log4shell.blocklist"
    #: Callback infrastructure found in payloads, for outbound rules (compacted).
    egress: str = "log4shell.egress"
    dead_letter: str = "http-logs.dlq"


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "l4s"
    #: How long event-id dedup marks are kept; a record redelivered later than
    #: this would be counted again.
    dedup_days: int = Field(default=35, ge=1)


class DetectSettings(_Section):
    group: str = "l4s-detect"
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    #: Longest wait for a batch to fill: bounds the latency a quiet topic adds.
    max_wait_ms: int = Field(default=100, ge=1, le=10_000)
    #: Addresses or prefixes of proxies whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _check_networks(value)


class EnrichSettings(_Section):
    app_id: str = "l4s-enrich"
    geoip_db: Path | None = None
    asn_db: Path | None = None
    tor_exits: Path | None = None
    #: Seconds between checks for replaced database and exit-list files.
    reload_seconds: float = Field(default=30.0, gt=0)
    #: Fetch the Tor exit list (``data.tor.url``) into ``tor_exits`` this often;
    #: None leaves it to ``l4s data update tor`` (cron, a Kubernetes CronJob).
    tor_refresh_hours: float | None = Field(default=None, gt=0)
    #: Forward-confirmed reverse DNS of sources already rated (never of a host
    #: named in a payload); off by default.
    reverse_dns: bool = False
    #: An AbuseIPDB-style reputation score for rated sources; off without a key.
    reputation_key: SecretStr | None = None
    reputation_url: str = "https://api.abuseipdb.com"
    reputation_per_minute: int = Field(default=30, ge=1)


#: The Tor Project's bulk exit list.
DEFAULT_TOR_URL = "https://check.torproject.org/torbulkexitlist"


class GeoipSource(_Section):
    """Where GeoIP databases come from and where they go."""

    provider: Literal["maxmind", "ipinfo", "dbip"] = "dbip"
    editions: list[str] = Field(default_factory=list)
    directory: Path = Path("data/geoip")
    account_id: str | None = None
    license_key: SecretStr | None = None
    token: SecretStr | None = None
    base_url: str | None = None


class TorSource(_Section):
    """Where the Tor exit list comes from and where it goes."""

    url: str = DEFAULT_TOR_URL
    path: Path = Path("data/tor-exits.txt")


class DataSettings(_Section):
    """Where ``l4s data update`` fetches enrichment data from, and its credentials.

    Secrets are best given as env vars (``L4S_DATA__GEOIP__LICENSE_KEY``).
    """

    geoip: GeoipSource = Field(default_factory=GeoipSource)
    tor: TorSource = Field(default_factory=TorSource)
    timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=1, le=10)


def _level_factors() -> dict[Level, float]:
    return {"Dangerous": 1.0, "Critical": 3.0}


class BlocklistSettings(_Section):
    """What gets blocked, for how long, and how firewalls receive it.

    Durations take seconds (``lifetime = 86400``) or ISO 8601 (``"PT24H"``).
    """

    min_level: Level = "Dangerous"
    #: Publish records marked ``dry_run``: firewalls are told not to act on them.
    dry_run: bool = False
    #: Research and testing sources (scanners, universities, OOB test services):
    #: ``block`` like any source, ``allow`` never publish, ``tag`` publish with
    #: action ``tag`` so firewalls ignore it and analysts see it.
    research: Literal["block", "allow", "tag"] = "tag"
    #: Base lifetime of a decision after its latest evidence; multiplied by the
    #: level factor and by ``1 + recurrence_step`` per extra day seen (capped).
    lifetime: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))
    level_factors: dict[Level, float] = Field(default_factory=_level_factors)
    recurrence_step: float = Field(default=0.5, ge=0)
    recurrence_max_days: int = Field(default=7, ge=1)
    max_lifetime: Duration = Field(default=timedelta(days=30), gt=timedelta(0))
    #: Spread decision lifetimes by up to this fraction, so sources decided
    #: together are not released together.
    lifetime_jitter: float = Field(default=0.1, ge=0, le=1)
    #: A record's ``expires_at`` is at most this far ahead; the enrich worker
    #: re-publishes live records before then, so a firewall that stops hearing
    #: from l4s drops its blocks within one lease.
    lease: Duration = Field(default=timedelta(hours=6), gt=timedelta(0))
    #: Re-publish when this fraction of the lease is left, earlier by a random
    #: part of up to ``refresh_jitter`` of the lease.
    refresh_margin: float = Field(default=0.25, gt=0, lt=1)
    refresh_jitter: float = Field(default=0.25, ge=0, lt=1)
    #: How often the enrich worker looks for records to refresh or expire.
    sweep_seconds: float = Field(default=5.0, gt=0)
    #: Addresses and prefixes never to publish, one per line with an optional
    #: expiry; re-read when it changes.
    allowlist: Path | None = None
    allowlist_check_seconds: float = Field(default=10.0, gt=0)
    #: The operator's own ranges: never blocked, like the special-purpose ones.
    never_block: list[str] = Field(default_factory=list)
    #: Treat the documentation ranges (RFC 5737, RFC 3849) as public, for demos
    #: and tests that use them as stand-ins; they carry no real traffic.
    documentation_as_public: bool = False
    #: Publish one entry for a prefix once this many of its addresses are
    #: blocked (0: off); never for a prefix holding an allowlisted address.
    aggregate_threshold: int = Field(default=0, ge=0)
    aggregate_prefix_v4: int = Field(default=24, ge=8, le=32)
    aggregate_prefix_v6: int = Field(default=64, ge=16, le=128)
    #: Circuit breaker: more new entries than this per minute (per enrich
    #: worker) pauses publishing new entries; 0 turns it off.
    breaker_per_minute: int = Field(default=500, ge=0)
    #: The breaker closes after the rate stayed under the limit this long.
    breaker_cooldown: Duration = Field(default=timedelta(minutes=5), ge=timedelta(0))
    #: Lifetime of an egress entry (a callback host) after it was last seen.
    egress_lifetime: Duration = Field(default=timedelta(days=7), gt=timedelta(0))
    #: Names the exporters and ``follow --apply`` give the firewall objects.
    nft_table: str = Field(default="l4s", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
    nft_set: str = Field(default="blocklist", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,24}$")
    ipset_name: str = Field(default="l4s-blocklist", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,20}$")

    @field_validator("never_block")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _check_networks(value)


class Settings(BaseSettings):
    """Every setting l4s reads; see the module docstring for precedence."""

    model_config = SettingsConfigDict(
        env_prefix="L4S_", env_nested_delimiter="__", extra="forbid"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)
    blocklist: BlocklistSettings = Field(default_factory=BlocklistSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    formats: FormatSettings = Field(default_factory=FormatSettings)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    timezone: str = "UTC"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs (see load()), below the environment.
        return env_settings, init_settings


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings from ``path`` (or ``$L4S_CONFIG``), the environment and defaults.

    Raises:
        ConfigError: the file is missing, is not TOML, or holds an unknown or
            invalid setting; the message names the setting.
    """
    path = path or os.environ.get("L4S_CONFIG") or None
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(Path(path))
    _check_environment(os.environ)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None
    except SettingsError as exc:
        # A malformed value in an L4S_* variable (a list that is no JSON).
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(
            f"{exc}{cause} (lists and tables in L4S_* variables are JSON, "
            """e.g. L4S_DETECT__TRUSTED_PROXIES='["10.0.0.0/8"]')"""
        ) from None


def _check_environment(environ: Mapping[str, str]) -> None:
    """Refuse ``L4S_<SECTION>__...`` variables naming no section.

    The settings library ignores unknown variables; a typo such as
    ``L4S_BLOCKLST__DRY_RUN=true`` would then silently leave dry-run off.
    """
    sections = {name.upper() for name in Settings.model_fields}
    for name in environ:
        if name.startswith("L4S_") and "__" in name:
            section = name[4:].split("__", 1)[0]
            if section not in sections:
                known = ", ".join(sorted(s.lower() for s in sections))
                raise ConfigError(
                    f"environment variable {name} names no settings section ({known})"
                )


#: A config file larger than this is not a config file.
_MAX_CONFIG_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            raise ConfigError(f"config file {path} {what}")
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is over {_MAX_CONFIG_BYTES} bytes")
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _one_line(exc: ValidationError, path: object) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    origin = f" in {path}" if path else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {where}{origin}: {first['msg']}{more}"
