"""The analysis report: its sections, its JSON contract, terminal and HTML forms."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline.config import Settings
from pipeline.metrics import Metrics
from pipeline.report import Report, build, render, to_json
from pipeline.report_html import render_html
from pipeline.scan import scan
from pipeline.store import DetectionFacts, MemoryStore, day_of
from pipeline.summary import refresh_summary
from tests.conftest import DEMO, REPO

SAMPLE = [
    str(DEMO / "apache_logs"),
    str(DEMO / "crowdsec_log4j.log"),
    str(DEMO / "corelight_log4j_requests.ecs.jsonl"),
]
GEO = {
    "geoip_db": DEMO / "geo/dbip-country-lite-demo.mmdb",
    "asn_db": DEMO / "geo/asn-lite-demo.mmdb",
}
#: The keys ``l4s report --json`` has always printed; they must never change.
CONTRACT = {
    "lines",
    "parsed",
    "dead_letters",
    "attacks",
    "unique_ips",
    "recurring_ips",
    "tor_ips",
    "days",
    "countries",
    "asns",
    "levels",
    "techniques",
    "fields",
}
DEC_14 = 1639440000.0  # 2021-12-14T00:00:00Z
DAY = 86400.0


@pytest.fixture(scope="module")
def demo() -> Report:
    return build(scan(SAMPLE, Settings(enrich=GEO)).store)


def attack(
    store: MemoryStore,
    n: int,
    ip: str,
    ts: float,
    *,
    techniques: tuple[str, ...] = ("plain",),
    fields: tuple[str, ...] = ("user_agent.original",),
    flags: frozenset[str] = frozenset(),
    **attributes: str | int,
) -> None:
    store.record(
        f"logs/0/{n}",
        DetectionFacts(
            day=day_of(ts),
            ip=ip,
            malicious=True,
            timestamp=ts,
            techniques=techniques,
            fields=fields,
            flags=flags,
            attributes=attributes,
        ),
    )


@pytest.fixture
def crafted() -> MemoryStore:
    """Five sources over three days, shaped like the published analysis in miniature."""
    store = MemoryStore()
    attack(
        store,
        1,
        "198.51.100.1",
        DEC_14,
        country="US",
        asn=14061,
        org="DigitalOcean, LLC",
        kind="hosting",
    )
    attack(
        store,
        2,
        "198.51.100.1",
        DEC_14 + DAY,
        country="US",
        asn=14061,
        org="DigitalOcean, LLC",
        kind="hosting",
    )
    attack(
        store,
        3,
        "198.51.100.2",
        DEC_14 + 60,
        country="US",
        asn=14061,
        org="DigitalOcean, LLC",
        kind="hosting",
    )
    attack(
        store,
        4,
        "198.51.100.3",
        DEC_14 + DAY,
        techniques=("lower", "nested", "ip-literal"),
        fields=("http.request.headers.x-api-version",),
        country="DE",
        asn=24940,
        org="Hetzner",
        kind="hosting",
    )
    attack(
        store,
        5,
        "203.0.113.4",
        DEC_14 + 2 * DAY,
        techniques=("base64", "exfiltration"),
        fields=("http.request.headers.authorization",),
        flags=frozenset({"research"}),
        country="US",
        asn=3,
        org="MIT",
        kind="education",
    )
    attack(
        store,
        6,
        "203.0.113.5",
        DEC_14 + 2 * DAY,
        flags=frozenset({"tor"}),
        country="NL",
        kind="tor",
    )
    for ip, level in (
        ("198.51.100.1", "Critical"),
        ("198.51.100.2", "Dangerous"),
        ("198.51.100.3", "Dangerous"),
        ("203.0.113.4", "Low"),
        ("203.0.113.5", "Moderate"),
    ):
        store.set_rating(ip, {"level": level, "score": 50})
    return store


def test_json_keeps_every_contract_key_and_adds_the_analysis_sections(
    demo: Report,
) -> None:
    document = json.loads(to_json(demo))

    assert document.keys() >= CONTRACT
    for day in document["days"].values():
        assert {"attacks", "unique_ips"} <= day.keys()
    for asn in document["asns"].values():
        assert set(asn) == {"org", "unique_ips"}
    assert list(document["levels"]) == [
        "Safe",
        "Low",
        "Moderate",
        "Dangerous",
        "Critical",
    ]
    for key in (
        "days_active",
        "top5_country_share",
        "network_kinds",
        "dangerous_critical_share",
        "obfuscation",
        "tor_share",
    ):
        assert key in document
    # The JSON round-trips through the model, so a consumer can decode it typed.
    assert msgspec.convert(document, Report) == demo


def test_demo_figures(demo: Report) -> None:
    assert (demo.lines, demo.attacks, demo.unique_ips, demo.recurring_ips) == (
        10_021,
        21,
        12,
        2,
    )
    assert (demo.first_day, demo.last_day) == ("2021-12-10", "2021-12-13")
    assert sum(d.attacks for d in demo.days.values()) == demo.attacks
    assert sum(d.new_ips for d in demo.days.values()) == demo.unique_ips
    assert sum(demo.days_active.values()) == demo.unique_ips
    assert demo.country_count == len(demo.countries) == 6
    assert demo.top5_country_share == round(10 / 12, 4)
    assert sum(k.unique_ips for k in demo.network_kinds.values()) == demo.unique_ips
    assert demo.network_kinds["research"].asns["208843"].org == "Alpha Strike Labs GmbH"
    assert demo.research_ips == 3
    assert demo.dangerous_critical_share == 0.25
    assert set(demo.obfuscation) == {
        "lower",
        "nested",
        "default-value",
        "empty-key",
        "upper",
    }


def test_sections_follow_the_published_analysis(crafted: MemoryStore) -> None:
    r = build(crafted)

    assert r.days["2021-12-14"].attacks == 2 and r.days["2021-12-14"].unique_ips == 2
    assert r.days["2021-12-15"].attacks_per_ip == 1.0
    assert [d.new_ips for d in r.days.values()] == [2, 1, 2]
    assert r.recurring_ips == 1 and r.days_active == {"1": 4, "2": 1}
    assert r.countries == {"US": 3, "DE": 1, "NL": 1}
    assert r.top5_country_share == 1.0 and r.country_count == 3
    # Research sources stand apart from the hosting and ISP networks they sit in.
    assert list(r.network_kinds) == ["hosting", "research", "tor"]
    assert r.network_kinds["hosting"].unique_ips == 3
    assert r.network_kinds["hosting"].asns["14061"].unique_ips == 2
    assert r.network_kinds["research"].asns == {
        "3": msgspec.convert({"org": "MIT", "unique_ips": 1}, type(r.asns["3"]))
    }
    assert (r.tor_ips, r.tor_share) == (1, 0.2)
    assert r.levels == {
        "Safe": 0,
        "Low": 1,
        "Moderate": 1,
        "Dangerous": 2,
        "Critical": 1,
    }
    assert r.dangerous_critical_share == 0.6
    # Target descriptors (ip-literal, exfiltration) are not obfuscation.
    assert r.obfuscation == {"base64": 1, "lower": 1, "nested": 1}
    assert r.days["2021-12-15"].fields == {
        "http.request.headers.x-api-version": 1,
        "user_agent.original": 1,
    }


def test_a_day_range_limits_every_section(crafted: MemoryStore) -> None:
    r = build(crafted, date(2021, 12, 15), date(2021, 12, 16))

    assert list(r.days) == ["2021-12-15", "2021-12-16"]
    assert r.unique_ips == 4 and r.recurring_ips == 0
    assert [d.new_ips for d in r.days.values()] == [2, 2]
    assert r.first_day == "2021-12-15"


def test_an_empty_store_gives_an_empty_report() -> None:
    r = build(MemoryStore())

    assert (r.attacks, r.unique_ips, r.first_day, r.tor_share) == (0, 0, None, 0.0)
    console = Console(record=True, width=120)
    render(r, console)
    assert "no attacks" in console.export_text()
    assert "<html" in render_html(r)


def test_terminal_tables_show_every_section(demo: Report) -> None:
    console = Console(record=True, width=160)
    render(demo, console)
    text = console.export_text()

    for heading in (
        "Attacks per day",
        "Days active",
        "6 countries, top five 83.3%",
        "network kind",
        "research",
        "Threat levels",
        "Dangerous + Critical: 25.0%",
        "Payload diversification per day",
        "Authorization 100.0%",
        "lower 2",
    ):
        assert heading in text, heading


def test_html_page_is_self_contained(demo: Report) -> None:
    page = render_html(demo)

    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'id="chart-[a-z]+"', page)) == 8
    # No external script, style, font or image: the page must open offline.
    assert not re.search(r'<(script|link|img)[^>]+(src|href)=["\']?https?:', page)
    assert "<script src" not in page
    assert "Plotly.newPlot" in page


def test_cli_writes_the_html_report_and_names_an_unwritable_path(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report.html"
    geo = ["--geoip-db", str(GEO["geoip_db"]), "--asn-db", str(GEO["asn_db"])]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "scan", "--html", str(out), *geo, *SAMPLE],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1_000_000  # plotly.js is inlined
    assert "wrote the HTML report" in done.stderr

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "scan",
            "--html",
            str(tmp_path / "no/such/dir/r.html"),
            *SAMPLE,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("l4s: error")]
    assert len(errors) == 1 and "r.html" in errors[0] and "Traceback" not in bad.stderr


def test_summary_gauges_follow_the_report_and_stay_bounded(
    crafted: MemoryStore,
) -> None:
    metrics = Metrics(CollectorRegistry())

    window = refresh_summary(metrics, crafted, top=2)

    get = metrics.registry.get_sample_value
    assert get("l4s_store_unique_sources", {"window": "7d"}) == window.unique_ips == 5
    assert get("l4s_store_unique_sources", {"window": "latest_day"}) == 2
    assert get("l4s_store_attacks", {"window": "latest_day"}) == 2
    assert get("l4s_store_level_sources", {"level": "Dangerous"}) == 2
    assert get("l4s_store_tor_sources", {}) == 1
    assert get("l4s_store_kind_sources", {"kind": "research"}) == 1
    countries = {
        s.labels["country"]
        for f in metrics.registry.collect()
        if f.name == "l4s_store_country_sources"
        for s in f.samples
    }
    assert countries == {"US", "DE"}

    # A country that falls out of the top N loses its series.
    for n, ip in enumerate(("192.0.2.10", "192.0.2.11", "192.0.2.12"), start=10):
        attack(crafted, n, ip, DEC_14 + 2 * DAY, country="NL", kind="isp")
    refresh_summary(metrics, crafted, top=2)
    countries = {
        s.labels["country"]
        for f in metrics.registry.collect()
        if f.name == "l4s_store_country_sources"
        for s in f.samples
    }
    assert countries == {"NL", "US"}
    orgs = [
        s.labels
        for f in metrics.registry.collect()
        if f.name == "l4s_store_org_sources"
        for s in f.samples
    ]
    assert len(orgs) == 2 and {"asn": "14061", "org": "DigitalOcean, LLC"} in orgs


def test_summary_window_ends_at_the_latest_event_day(crafted: MemoryStore) -> None:
    attack(crafted, 20, "192.0.2.50", DEC_14 + 10 * DAY, country="FR", kind="isp")
    metrics = Metrics(CollectorRegistry())

    window = refresh_summary(metrics, crafted, days=7)

    assert window.first_day == "2021-12-24" and window.unique_ips == 1
    assert (
        metrics.registry.get_sample_value("l4s_store_summary_timestamp_seconds", {}) > 0
    )
