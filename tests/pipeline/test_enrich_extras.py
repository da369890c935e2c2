"""Enrichment the enrich stage adds on top of lookups: reloads, rDNS, reputation, Tor refresh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enrichers.rdns import ForwardConfirmedReverseDns
from pipeline import config
from pipeline.enrich_app import refresh_tor_list
from pipeline.enrich_stage import EnrichStage
from pipeline.events import Detection, Finding
from pipeline.store import MemoryStore
from tests.enrichers.conftest import LocalServer, Route, http_server  # noqa: F401 - a fixture
from tests.enrichers.mmdb_factory import write

TOR = Path(__file__).resolve().parent.parent / "data" / "tor"
PUBLIC = "11.1.2.3"


def detection(event_id: str = "t/0/1") -> Detection:
    finding = Finding(
        field="user_agent.original",
        family="log4shell",
        url="ldap://198.51.100.7:1389/a",
        scheme="ldap",
        host="198.51.100.7",
        port=1389,
        path="/a",
        techniques=("plain",),
    )
    return Detection(
        event_id=event_id,
        timestamp=1639303200.0,
        source_ip=PUBLIC,
        findings=(finding,),
        techniques=("plain",),
        fields=("user_agent.original",),
    )


def country_db(path: Path, iso: str) -> Path:
    record = {"country": {"iso_code": iso, "names": {"en": iso}}}
    return write(path, "GeoLite2-Country", [("11.1.2.0/24", record)])


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> config.Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return config.load()


def test_a_replaced_database_is_picked_up_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = country_db(tmp_path / "country.mmdb", "DE")
    stage = EnrichStage.from_settings(settings_with(monkeypatch, L4S_ENRICH__GEOIP_DB=str(live)))
    assert stage.enrich(detection()).geo.country_iso == "DE"

    # `l4s data update` writes beside the file and renames it over.
    country_db(tmp_path / "country.mmdb.new", "FR")
    os.replace(tmp_path / "country.mmdb.new", live)

    assert stage.reload_data()
    assert stage.enrich(detection()).geo.country_iso == "FR"
    assert not stage.reload_data()


def test_reverse_dns_of_a_rated_source_can_mark_it_research() -> None:
    names = {PUBLIC: "scanner-1.census.shodan.io"}
    rdns = ForwardConfirmedReverseDns(
        gethostbyaddr=lambda ip: (names[ip], [], [ip]),
        getaddrinfo=lambda host, *a, **k: [(2, 1, 6, "", (PUBLIC, 0))],
    )
    base = EnrichStage.from_settings(config.Settings())
    stage = EnrichStage(
        config.Settings(), base.geo, None, base.classifier, base.model, rdns=rdns
    )
    store = MemoryStore()

    handled = stage.handle(detection(), store)

    assert handled.enriched.source.research
    assert store.sources([PUBLIC])[PUBLIC]["hostname"] == "scanner-1.census.shodan.io"


class FixedReputation:
    def __init__(self, score: float) -> None:
        self.value = score
        self.asked: list[str] = []

    def score(self, ip: str) -> float | None:
        self.asked.append(ip)
        return self.value


def test_a_bad_reputation_raises_the_rating() -> None:
    base = EnrichStage.from_settings(config.Settings())
    plain = base.handle(detection(), MemoryStore())
    reputation = FixedReputation(100.0)
    stage = EnrichStage(
        config.Settings(), base.geo, None, base.classifier, base.model, reputation=reputation
    )

    rated = stage.handle(detection(), MemoryStore())

    assert reputation.asked == [PUBLIC]
    assert plain.rating is not None and rated.rating is not None
    assert rated.rating.score > plain.rating.score


def test_the_tor_list_refresh_writes_the_file_and_keeps_it_on_failure(
    http_server: LocalServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http_server.routes["/exits"] = Route(body=(TOR / "bulk.txt").read_bytes())
    target = tmp_path / "tor-exits.txt"
    settings = settings_with(
        monkeypatch,
        L4S_ENRICH__TOR_EXITS=str(target),
        L4S_DATA__TOR__URL=f"{http_server.url}/exits",
        L4S_DATA__RETRIES="1",
    )
    assert refresh_tor_list(settings)
    good = target.read_bytes()
    assert good == (TOR / "bulk.txt").read_bytes()

    http_server.routes["/exits"] = Route(status=200, body=b"<html>not a list</html>")
    assert not refresh_tor_list(settings.model_copy(deep=True))
    assert target.read_bytes() == good
