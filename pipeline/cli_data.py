"""``l4s data update geoip|tor``: fetch enrichment data and replace files atomically."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any, Literal

import click
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pipeline.datafetch import (
    DEFAULT_TOR_URL,
    Download,
    DownloadError,
    FetchResult,
    fetch,
    geoip_downloads,
    previous_month,
    validate_mmdb,
    validate_tor,
)
from pipeline.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class DataSettings(BaseSettings):
    """The ``[data]`` section: read from ``L4S_DATA__*`` and a TOML file's ``[data]``.

    Env names follow the l4s convention (``L4S_DATA__GEOIP__LICENSE_KEY``), so the
    section can join the main settings unchanged.
    """

    model_config = SettingsConfigDict(
        env_prefix="L4S_DATA__", env_nested_delimiter="__", extra="forbid"
    )

    geoip: GeoipSource = Field(default_factory=GeoipSource)
    tor: TorSource = Field(default_factory=TorSource)
    timeout: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=1, le=10)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


def load_data_settings(config: Path | None) -> DataSettings:
    """The data settings from the ``[data]`` table of ``config`` and the environment.

    Raises:
        ConfigError: unreadable file or an invalid setting, in one line.
    """
    # XXX(#4): the main Settings (pipeline/config.py) has no ``data`` section yet
    # and forbids unknown tables, so a shared config file with ``[data]`` fails
    # there; until it gains ``data: DataSettings`` keep ``[data]`` in its own file.
    table: dict[str, Any] = {}
    if config is not None:
        try:
            with config.open("rb") as fh:
                table = tomllib.load(fh).get("data", {})
        except FileNotFoundError:
            raise ConfigError(f"config file {config} does not exist") from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {config}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {config} is not valid TOML: {exc}"
            ) from None
    try:
        return DataSettings(**table)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting data.{where}: {first['msg']}") from None


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _report(result: FetchResult) -> None:
    if result.status == "not-modified":
        click.echo(f"not modified: {result.path}")
    else:
        click.echo(f"updated: {result.path} ({result.size} bytes)")


_config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="L4S_DATA_CONFIG",
    help="TOML file whose [data] table holds sources and credentials.",
)


@click.group("data")
def data_group() -> None:
    """Download and refresh enrichment data (GeoIP databases, Tor exit list)."""


@data_group.group("update")
def update_group() -> None:
    """Fetch a data file and atomically replace the one on disk."""


@update_group.command("geoip")
@click.option(
    "--provider",
    type=click.Choice(["maxmind", "ipinfo", "dbip"]),
    help="Default: dbip.",
)
@click.option("--edition", "editions", multiple=True, help="Edition/file (repeatable).")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--account-id", help="MaxMind account id.")
@click.option("--license-key", help="MaxMind licence key (prefer the env variable).")
@click.option("--token", help="IPinfo token (prefer the env variable).")
@click.option("--base-url", help="Provider root URL (a mirror, or a test server).")
@click.option(
    "--month", help="DB-IP month as YYYY-MM (default: this month, else last)."
)
@click.option("--timeout", type=float, help="Seconds per request.")
@click.option(
    "--retries", type=click.IntRange(1, 10), help="Tries per file (default 3)."
)
@click.option("--force", is_flag=True, help="Download even if the file is up to date.")
@_config_option
def update_geoip(
    *,
    provider: str | None,
    editions: tuple[str, ...],
    directory: Path | None,
    account_id: str | None,
    license_key: str | None,
    token: str | None,
    base_url: str | None,
    month: str | None,
    timeout: float | None,
    retries: int | None,
    force: bool,
    config: Path | None,
) -> None:
    """Download GeoIP/ASN databases from MaxMind, IPinfo or DB-IP."""
    try:
        settings = load_data_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    src = settings.geoip
    chosen = provider or src.provider
    when: dt.date | None = None
    if month:
        try:
            when = dt.datetime.strptime(month, "%Y-%m").date()
        except ValueError:
            raise click.BadParameter("expected YYYY-MM", param_hint="--month") from None
    try:
        items = geoip_downloads(
            chosen,  # type: ignore[arg-type]
            directory or src.directory,
            editions=list(editions) or src.editions or None,
            account_id=account_id or src.account_id,
            license_key=license_key or _secret(src.license_key),
            token=token or _secret(src.token),
            base_url=base_url or src.base_url,
            month=when,
        )
    except DownloadError as exc:
        raise click.ClickException(str(exc)) from None
    failed = 0
    with httpx.Client(timeout=timeout or settings.timeout) as client:
        for item in items:
            try:
                result = _fetch_geoip(
                    item,
                    client,
                    retries or settings.retries,
                    not force,
                    dbip_fallback=chosen == "dbip" and when is None,
                )
            except DownloadError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed += 1
                continue
            _report(result)
    if failed:
        raise SystemExit(1)


def _fetch_geoip(
    item: Download,
    client: httpx.Client,
    retries: int,
    conditional: bool,
    *,
    dbip_fallback: bool,
) -> FetchResult:
    try:
        return fetch(
            item,
            validate_mmdb,
            client=client,
            conditional=conditional,
            attempts=retries,
        )
    except DownloadError as exc:
        # DB-IP publishes a month's files during its first days; until then the
        # previous month's are the newest.
        if not (dbip_fallback and exc.status == 404):
            raise
    this_month = dt.datetime.now(dt.UTC).date()
    older = previous_month(this_month)
    url = item.url.replace(f"{this_month:%Y-%m}", f"{older:%Y-%m}")

    return fetch(
        Download(url=url, dest=item.dest, unpack=item.unpack),
        validate_mmdb,
        client=client,
        conditional=conditional,
        attempts=retries,
    )


@update_group.command("tor")
@click.option(
    "--url", help="Exit list URL (bulk list, exit-addresses or Onionoo details)."
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Target file."
)
@click.option("--timeout", type=float, help="Seconds per request.")
@click.option("--retries", type=click.IntRange(1, 10), help="Tries (default 3).")
@click.option(
    "--force", is_flag=True, help="Download even if not modified since last time."
)
@_config_option
def update_tor(
    *,
    url: str | None,
    out: Path | None,
    timeout: float | None,
    retries: int | None,
    force: bool,
    config: Path | None,
) -> None:
    """Download the Tor exit list, keeping the last good copy on any failure."""
    try:
        settings = load_data_settings(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    item = Download(url=url or settings.tor.url, dest=out or settings.tor.path)
    with httpx.Client(timeout=timeout or settings.timeout) as client:
        try:
            result = fetch(
                item,
                validate_tor,
                client=client,
                conditional=not force,
                attempts=retries or settings.retries,
            )
        except DownloadError as exc:
            raise click.ClickException(str(exc)) from None
    _report(result)
