"""Downloads of GeoIP databases and Tor lists from a local HTTP server."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from enrichers.geo import GeoIndex
from enrichers.tor import TorExitList
from pipeline.cli_data import data_group, load_data_settings
from pipeline.datafetch import (
    Download,
    DownloadError,
    fetch,
    geoip_downloads,
    validate_tor,
)
from pipeline.errors import ConfigError
from tests.enrichers.conftest import LocalServer, Route

TOR_DATA = Path(__file__).resolve().parents[1] / "data" / "tor"
LAST_MODIFIED = "Tue, 14 Dec 2021 10:00:00 GMT"


def _tar_gz(name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{name}_20211214/{name}.mmdb")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        readme = tarfile.TarInfo(f"{name}_20211214/README.txt")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
    return buf.getvalue()


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(data_group, list(args))
    return result.exit_code, result.output


def test_tor_update_writes_the_list_and_then_asks_if_modified_since(
    http_server: LocalServer, tmp_path: Path
) -> None:
    http_server.routes["/exits"] = Route(
        body=(TOR_DATA / "bulk.txt").read_bytes(),
        headers={"Last-Modified": LAST_MODIFIED},
    )
    out = tmp_path / "tor" / "exits.txt"

    code, output = _run(
        "update", "tor", "--url", f"{http_server.url}/exits", "--out", str(out)
    )

    assert code == 0, output
    assert output.startswith("updated: ")
    assert "192.0.2.10" in TorExitList.from_file(out)
    assert (
        os.stat(out).st_mtime
        == email.utils.parsedate_to_datetime(LAST_MODIFIED).timestamp()
    )

    code, output = _run(
        "update", "tor", "--url", f"{http_server.url}/exits", "--out", str(out)
    )

    assert (code, output.strip()) == (0, f"not modified: {out}")
    assert http_server.requests[-1][1]["if-modified-since"] == LAST_MODIFIED


def test_tor_update_keeps_the_last_good_copy_when_the_new_one_is_bad(
    http_server: LocalServer, tmp_path: Path
) -> None:
    out = tmp_path / "exits.txt"
    out.write_text("192.0.2.1\n")
    http_server.routes["/exits"] = Route(body=b"<html>maintenance</html>")

    code, output = _run(
        "update",
        "tor",
        "--url",
        f"{http_server.url}/exits",
        "--out",
        str(out),
        "--force",
    )

    assert code == 1
    assert "rejected" in output and "is kept as it is" in output
    assert len(output.strip().splitlines()) == 1
    assert out.read_text() == "192.0.2.1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["exits.txt"]  # no temp file left


def test_offline_is_one_clear_line_and_keeps_the_file(tmp_path: Path) -> None:
    out = tmp_path / "exits.txt"
    out.write_text("192.0.2.1\n")

    code, output = _run(
        "update",
        "tor",
        "--url",
        "http://127.0.0.1:9/exits",
        "--out",
        str(out),
        "--timeout",
        "2",
        "--retries",
        "1",
    )

    assert code == 1
    assert output.strip().splitlines() == [
        "Error: cannot download http://127.0.0.1:9/exits: cannot connect (offline, "
        f"or the host is unreachable); {out} is kept as it is"
    ]
    assert out.read_text() == "192.0.2.1\n"


def test_server_errors_are_retried_then_reported(
    http_server: LocalServer, tmp_path: Path
) -> None:
    http_server.routes["/exits"] = Route(status=503, body=b"busy")
    item = Download(url=f"{http_server.url}/exits", dest=tmp_path / "exits.txt")

    with httpx.Client() as client, pytest.raises(DownloadError, match="HTTP 503"):
        fetch(item, validate_tor, client=client, attempts=3, backoff=0.01)

    assert len(http_server.requests) == 3
    assert not (tmp_path / "exits.txt").exists()


def test_maxmind_update_unpacks_the_archive_with_basic_auth(
    http_server: LocalServer, tmp_path: Path, dbs: dict[str, Path]
) -> None:
    http_server.routes["/geoip/databases/GeoLite2-City/download"] = Route(
        body=_tar_gz("GeoLite2-City", dbs["geolite2-city"].read_bytes())
    )
    http_server.routes["/geoip/databases/GeoLite2-ASN/download"] = Route(
        body=_tar_gz("GeoLite2-ASN", dbs["geolite2-asn"].read_bytes())
    )

    code, output = _run(
        "update",
        "geoip",
        "--provider",
        "maxmind",
        "--account-id",
        "12345",
        "--license-key",
        "s3cret",
        "--base-url",
        http_server.url,
        "--dir",
        str(tmp_path),
    )

    assert code == 0, output
    assert "s3cret" not in output
    index = GeoIndex(
        tmp_path / "GeoLite2-City.mmdb",
        tmp_path / "GeoLite2-ASN.mmdb",
        lookup_documentation=True,
    )
    assert index.lookup("198.51.100.1").asn == 64500
    path, headers = http_server.requests[0]
    assert path == "/geoip/databases/GeoLite2-City/download?suffix=tar.gz"
    assert headers["authorization"].startswith("Basic ")


def test_wrong_licence_key_is_reported_with_a_hint(
    http_server: LocalServer, tmp_path: Path
) -> None:
    http_server.routes["/geoip/databases/GeoLite2-City/download"] = Route(
        status=401, body=b"no"
    )

    code, output = _run(
        "update",
        "geoip",
        "--provider",
        "maxmind",
        "--account-id",
        "1",
        "--license-key",
        "bad",
        "--base-url",
        http_server.url,
        "--dir",
        str(tmp_path),
        "--edition",
        "GeoLite2-City",
    )

    assert code == 1
    assert "HTTP 401 (check the licence key or token)" in output


def test_ipinfo_update_sends_the_token_and_never_prints_it(
    http_server: LocalServer,
    tmp_path: Path,
    dbs: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http_server.routes["/data/ipinfo_lite.mmdb"] = Route(
        body=dbs["ipinfo-lite"].read_bytes()
    )
    monkeypatch.setenv("L4S_DATA__GEOIP__TOKEN", "tok-123")

    code, output = _run(
        "update",
        "geoip",
        "--provider",
        "ipinfo",
        "--base-url",
        http_server.url,
        "--dir",
        str(tmp_path),
    )

    assert code == 0, output
    assert "tok-123" not in output
    assert http_server.requests[0][0] == "/data/ipinfo_lite.mmdb?token=tok-123"
    assert GeoIndex(tmp_path / "ipinfo_lite.mmdb").flavours() == {
        "geoip": "IPinfo Lite"
    }


def test_dbip_update_falls_back_to_last_month(
    http_server: LocalServer, tmp_path: Path, dbs: dict[str, Path]
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    last = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    http_server.routes[f"/free/dbip-country-lite-{last:%Y-%m}.mmdb.gz"] = Route(
        body=gzip.compress(dbs["dbip-country"].read_bytes())
    )

    code, output = _run(
        "update",
        "geoip",
        "--provider",
        "dbip",
        "--edition",
        "country",
        "--base-url",
        http_server.url,
        "--dir",
        str(tmp_path),
    )

    assert code == 0, output
    assert [p for p, _ in http_server.requests] == [
        f"/free/dbip-country-lite-{today:%Y-%m}.mmdb.gz",
        f"/free/dbip-country-lite-{last:%Y-%m}.mmdb.gz",
    ]
    assert GeoIndex(tmp_path / "dbip-country-lite.mmdb").flavours() == {
        "geoip": "DB-IP Country Lite"
    }


def test_a_download_that_is_not_an_mmdb_never_replaces_the_database(
    http_server: LocalServer, tmp_path: Path, dbs: dict[str, Path]
) -> None:
    target = tmp_path / "dbip-asn-lite.mmdb"
    target.write_bytes(dbs["dbip-asn"].read_bytes())
    http_server.routes["/free/dbip-asn-lite-2021-12.mmdb.gz"] = Route(
        body=gzip.compress(b"garbage")
    )

    code, output = _run(
        "update",
        "geoip",
        "--edition",
        "asn",
        "--month",
        "2021-12",
        "--base-url",
        http_server.url,
        "--dir",
        str(tmp_path),
    )

    assert code == 1
    assert "rejected" in output
    assert target.read_bytes() == dbs["dbip-asn"].read_bytes()


def test_missing_credentials_are_named(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="account id and a licence key"):
        geoip_downloads("maxmind", tmp_path)
    with pytest.raises(DownloadError, match="need a token"):
        geoip_downloads("ipinfo", tmp_path)
    with pytest.raises(DownloadError, match="no free 'isp' file"):
        geoip_downloads("dbip", tmp_path, editions=["isp"])


def test_data_settings_come_from_the_config_files_data_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "l4s.toml"
    config.write_text(
        '[data.geoip]\nprovider = "maxmind"\naccount_id = "42"\n[data.tor]\nurl = "http://127.0.0.1:1/x"\n'
    )
    monkeypatch.setenv("L4S_DATA__GEOIP__LICENSE_KEY", "from-env")

    settings = load_data_settings(config)

    assert settings.geoip.provider == "maxmind"
    assert settings.geoip.account_id == "42"
    assert settings.geoip.license_key is not None
    assert settings.geoip.license_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(settings)


def test_bad_data_setting_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "l4s.toml"
    config.write_text('[data.geoip]\nprovider = "acme"\n')

    with pytest.raises(ConfigError, match=r"invalid setting data\.geoip\.provider"):
        load_data_settings(config)
