"""Settings for every l4s command: defaults, a TOML file, then ``L4S_*`` env vars.

Precedence, highest first: command-line flags (applied by the CLI), environment
variables (``L4S_KAFKA__BOOTSTRAP``, ``L4S_REDIS__URL``; ``__`` separates
levels), the TOML file given with ``--config`` or ``L4S_CONFIG``, the defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError

Level = Literal["Safe", "Low", "Moderate", "Dangerous", "Critical"]


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
    #: Parser registry key, or ``auto`` to choose per record.
    format: str = "auto"
    #: Addresses or prefixes of proxies whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)


class EnrichSettings(_Section):
    app_id: str = "l4s-enrich"
    geoip_db: Path | None = None
    asn_db: Path | None = None
    tor_exits: Path | None = None


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


class BlocklistSettings(_Section):
    min_level: Level = "Dangerous"
    dry_run: bool = False
    #: Base lifetime of a block; grows with level and recurrence.
    ttl_hours: float = Field(default=24.0, gt=0)


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
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _one_line(exc: ValidationError, path: object) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    origin = f" in {path}" if path else ""
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {where}{origin}: {first['msg']}{more}"
