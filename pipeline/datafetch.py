"""Download enrichment data (GeoIP databases, Tor exits) and replace files atomically.

Loading data is not running: these functions run from ``l4s data update``; the
enrich stage only reads what is on disk and reloads it when the file changes.
A download is written next to its target, checked by opening it as the stage
would, and only then renamed over the old file, so a failed or half download
never replaces the last good copy.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from enrichers.geo import open_db
from enrichers.tor import TorExitList
from pipeline import log
from pipeline.errors import L4sError

_log = log.get("data")

Provider = Literal["maxmind", "ipinfo", "dbip"]
#: Largest download accepted (GeoIP2 City is ~70 MB unpacked, 40 MB packed).
MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024
MAXMIND_BASE = "https://download.maxmind.com"
IPINFO_BASE = "https://ipinfo.io"
DBIP_BASE = "https://download.db-ip.com"
_DBIP_KINDS = ("country", "city", "asn")


class DownloadError(L4sError):
    """A download failed; the current file on disk is kept.

    Args:
        message: one line for the operator.
        status: the HTTP status when the server answered with an error.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one update did: ``updated`` or ``not-modified``, and the file."""

    status: str
    path: Path
    size: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Download:
    """One file to fetch: where from, how to unpack it, where it goes."""

    url: str
    dest: Path
    unpack: Literal["none", "gzip", "tar.gz"] = "none"
    params: tuple[tuple[str, str], ...] = ()
    auth: tuple[str, str] | None = None
    #: Query parameters whose value is a secret, masked in every message.
    secret_params: frozenset[str] = frozenset()


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Retry(Exception):
    pass


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, _Retry | httpx.TransportError)


@contextmanager
def _temp_beside(dest: Path) -> Iterator[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _stream_to(response: httpx.Response, target: Path) -> int:
    size = 0
    with target.open("wb") as fh:
        for chunk in response.iter_bytes(1 << 16):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise DownloadError(
                    f"download is larger than {MAX_DOWNLOAD_BYTES} bytes"
                )
            fh.write(chunk)

    return size


def _unpack(raw: Path, how: str, target: Path) -> None:
    if how == "none":
        shutil.copyfile(raw, target)
        return
    try:
        if how == "gzip":
            with gzip.open(raw, "rb") as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
            return
        with tarfile.open(raw, "r:gz") as tar:
            # Take the one .mmdb member by reading it; nothing is extracted by
            # name, so a hostile archive cannot write outside the target.
            member = next(
                (
                    m
                    for m in tar.getmembers()
                    if m.isfile() and m.name.endswith(".mmdb")
                ),
                None,
            )
            if member is None:
                raise DownloadError("the archive holds no .mmdb file")
            packed = tar.extractfile(member)
            if packed is None:
                raise DownloadError("the archive's .mmdb member cannot be read")
            with packed, target.open("wb") as out:
                shutil.copyfileobj(packed, out)
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise DownloadError(f"the download is not a valid {how} file: {exc}") from None


def fetch(
    item: Download,
    validate: Callable[[Path], None],
    *,
    client: httpx.Client,
    conditional: bool = True,
    attempts: int = 3,
    backoff: float = 1.0,
) -> FetchResult:
    """Download ``item``, check it with ``validate`` and rename it over ``item.dest``.

    With ``conditional`` and an existing file, asks with ``If-Modified-Since`` (the
    file's mtime, which this function sets from ``Last-Modified``).

    Raises:
        DownloadError: offline, refused, HTTP error, or the file does not validate;
            the message is one line and the existing file is untouched.
    """
    headers: dict[str, str] = {}
    if conditional and item.dest.exists():
        mtime = item.dest.stat().st_mtime
        headers["If-Modified-Since"] = email.utils.formatdate(mtime, usegmt=True)
    where = _where(item.url)
    with _temp_beside(item.dest) as raw, _temp_beside(item.dest) as ready:
        retrying = Retrying(
            stop=stop_after_attempt(max(1, attempts)),
            wait=wait_exponential(multiplier=backoff, max=30),
            retry=retry_if_exception(_is_transient),
            reraise=False,
        )
        try:
            status, size, modified = retrying(_get, client, item, headers, raw)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise DownloadError(
                f"cannot download {where}: {_describe(cause)}; "
                f"{item.dest} is kept as it is"
            ) from None
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"cannot download {where}: {_describe(exc)}; "
                f"{item.dest} is kept as it is"
            ) from None
        if status == 304:
            _log.info("data_not_modified", url=where, path=str(item.dest))
            return FetchResult("not-modified", item.dest)
        if status >= 400:
            hint = " (check the licence key or token)" if status in (401, 403) else ""
            raise DownloadError(
                f"{where} answered HTTP {status}{hint}; {item.dest} is kept as it is",
                status=status,
            )
        _unpack(raw, item.unpack, ready)
        try:
            validate(ready)
        except L4sError as exc:
            raise DownloadError(
                f"the file from {where} was rejected ({exc}); "
                f"{item.dest} is kept as it is"
            ) from None
        if modified is not None:
            os.utime(ready, (modified, modified))
        os.chmod(ready, 0o644)
        os.replace(ready, item.dest)
    _log.info("data_updated", url=where, path=str(item.dest), bytes=size)

    return FetchResult("updated", item.dest, size)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect (offline, or the host is unreachable)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, _Retry):
        return str(exc)

    return type(exc).__name__ if exc is not None else "unknown error"


def _get(
    client: httpx.Client,
    item: Download,
    headers: dict[str, str],
    raw: Path,
) -> tuple[int, int, float | None]:
    with client.stream(
        "GET",
        item.url,
        params=dict(item.params) or None,
        headers=headers,
        auth=item.auth,
        follow_redirects=True,
    ) as response:
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code == 304 or response.status_code >= 400:
            return response.status_code, 0, None
        size = _stream_to(response, raw)
        modified = None
        header = response.headers.get("Last-Modified")
        if header:
            try:
                modified = email.utils.parsedate_to_datetime(header).timestamp()
            except (TypeError, ValueError):
                modified = None

        return response.status_code, size, modified


def validate_mmdb(path: Path) -> None:
    """Accept only an mmdb of a flavour the enrich stage reads."""
    db = open_db(path, "any")
    db.reader.close()


def validate_tor(path: Path) -> None:
    """Accept only a Tor exit list in one of the three formats."""
    TorExitList.from_file(path)


def geoip_downloads(
    provider: Provider,
    directory: Path,
    *,
    editions: list[str] | None = None,
    account_id: str | None = None,
    license_key: str | None = None,
    token: str | None = None,
    base_url: str | None = None,
    month: dt.date | None = None,
) -> list[Download]:
    """The files to fetch for ``provider``.

    MaxMind needs an account id and licence key (HTTP basic auth); IPinfo Lite a
    token; DB-IP's free monthly Lite files need nothing.

    Raises:
        DownloadError: a credential the provider needs is missing.
    """
    if provider == "maxmind":
        if not account_id or not license_key:
            raise DownloadError(
                "MaxMind downloads need an account id and a licence key "
                "(--account-id/--license-key or L4S_DATA__GEOIP__ACCOUNT_ID/"
                "L4S_DATA__GEOIP__LICENSE_KEY)"
            )
        base = (base_url or MAXMIND_BASE).rstrip("/")
        return [
            Download(
                url=f"{base}/geoip/databases/{edition}/download",
                dest=directory / f"{edition}.mmdb",
                unpack="tar.gz",
                params=(("suffix", "tar.gz"),),
                auth=(account_id, license_key),
            )
            for edition in editions or ["GeoLite2-City", "GeoLite2-ASN"]
        ]
    if provider == "ipinfo":
        if not token:
            raise DownloadError(
                "IPinfo downloads need a token (--token or L4S_DATA__GEOIP__TOKEN)"
            )
        base = (base_url or IPINFO_BASE).rstrip("/")
        return [
            Download(
                url=f"{base}/data/{edition}.mmdb",
                dest=directory / f"{edition}.mmdb",
                params=(("token", token),),
                secret_params=frozenset({"token"}),
            )
            for edition in editions or ["ipinfo_lite"]
        ]
    base = (base_url or DBIP_BASE).rstrip("/")
    when = month or dt.datetime.now(dt.UTC).date()
    kinds = editions or ["city", "asn"]
    for kind in kinds:
        if kind not in _DBIP_KINDS:
            raise DownloadError(
                f"DB-IP has no free {kind!r} file (choose from {_DBIP_KINDS})"
            )

    return [
        Download(
            url=f"{base}/free/dbip-{kind}-lite-{when:%Y-%m}.mmdb.gz",
            dest=directory / f"dbip-{kind}-lite.mmdb",
            unpack="gzip",
        )
        for kind in kinds
    ]


def previous_month(day: dt.date) -> dt.date:
    """The first day of the month before ``day``'s."""
    first = day.replace(day=1)
    return (first - dt.timedelta(days=1)).replace(day=1)
