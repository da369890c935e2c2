"""Fixtures for the enricher tests: small mmdb files and a local HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline import log
from tests.enrichers import mmdb_factory


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Log lines go to stderr as in production, warnings and above only."""
    log.configure("warning", "console")


@pytest.fixture(scope="session")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small database of every flavour, built once per test session."""
    d = tmp_path_factory.mktemp("mmdb")
    return {
        "geolite2-country": mmdb_factory.maxmind_country(d / "GeoLite2-Country.mmdb"),
        "geoip2-country": mmdb_factory.maxmind_country(
            d / "GeoIP2-Country.mmdb", "GeoIP2-Country"
        ),
        "geolite2-city": mmdb_factory.maxmind_city(d / "GeoLite2-City.mmdb"),
        "geoip2-city": mmdb_factory.maxmind_city(d / "GeoIP2-City.mmdb", "GeoIP2-City"),
        "geolite2-asn": mmdb_factory.maxmind_asn(d / "GeoLite2-ASN.mmdb"),
        "dbip-country": mmdb_factory.maxmind_country(
            d / "dbip-country.mmdb", "DBIP-Country-Lite"
        ),
        "dbip-city": mmdb_factory.maxmind_city(d / "dbip-city.mmdb", "DBIP-City-Lite"),
        "dbip-asn": mmdb_factory.maxmind_asn(
            d / "dbip-asn.mmdb", "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
        ),
        "ipinfo-lite": mmdb_factory.ipinfo_lite(d / "ipinfo_lite.mmdb"),
        "ip-location-country": mmdb_factory.ip_location_country(
            d / "iplocation-country.mmdb"
        ),
        "ip-location-asn": mmdb_factory.ip_location_asn(d / "iplocation-asn.mmdb"),
        "ipv4-only": mmdb_factory.ipv4_only_country(d / "v4only.mmdb"),
        "unknown": mmdb_factory.unknown_layout(d / "weather.mmdb"),
    }


@dataclass
class Route:
    """A canned answer of the local server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalServer:
    """An HTTP server on 127.0.0.1 that answers from ``routes`` and records requests."""

    url: str
    routes: dict[str, Route]
    requests: list[tuple[str, dict[str, str]]]


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A local HTTP server in a thread; nothing leaves the machine."""
    routes: dict[str, Route] = {}
    requests: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(
                (self.path, {k.lower(): v for k, v in self.headers.items()})
            )
            path = self.path.split("?", 1)[0]
            route = routes.get(path, Route(status=404, body=b"not found"))
            if (
                route.status == 200
                and "Last-Modified" in route.headers
                and self.headers.get("If-Modified-Since")
                == route.headers["Last-Modified"]
            ):
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for key, value in route.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(
            f"http://127.0.0.1:{server.server_address[1]}", routes, requests
        )
    finally:
        server.shutdown()
        server.server_close()
