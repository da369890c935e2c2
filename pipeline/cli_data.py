"""``l4s data update geoip|tor``: fetch enrichment data and replace files atomically."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
import httpx
from pydantic import SecretStr

from pipeline.config import DataSettings, Settings
from pipeline.config import load as load_settings
from pipeline.datafetch import (
    Download,
    DownloadError,
    FetchResult,
    fetch,
    geoip_downloads,
    previous_month,
    validate_mmdb,
    validate_tor,
)


def load_data_settings(config: Path | None) -> DataSettings:
    """The ``[data]`` section of the l4s settings (file, then ``L4S_DATA__*``).

    Raises:
        ConfigError: unreadable file or an invalid setting, in one line.
    """
    return load_settings(config).data


def _data_settings() -> DataSettings:
    # Under ``l4s`` the group's parent has loaded the settings (--config); a
    # bare invocation of the group reads $L4S_CONFIG and the environment.
    settings = click.get_current_context().find_object(Settings)
    return settings.data if settings is not None else load_data_settings(None)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _report(result: FetchResult) -> None:
    if result.status == "not-modified":
        click.echo(f"not modified: {result.path}")
    else:
        click.echo(f"updated: {result.path} ({result.size} bytes)")


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
) -> None:
    """Download GeoIP/ASN databases from MaxMind, IPinfo or DB-IP."""
    settings = _data_settings()
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
                click.echo(f"l4s: error: {exc}", err=True)
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
def update_tor(
    *,
    url: str | None,
    out: Path | None,
    timeout: float | None,
    retries: int | None,
    force: bool,
) -> None:
    """Download the Tor exit list, keeping the last good copy on any failure."""
    settings = _data_settings()
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
