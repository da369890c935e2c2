"""The HTML report of the demo data, opened in headless Chromium with no network.

Chromium is Debian's package (installed here when missing); Playwright only drives
it and never downloads a browser of its own. Set ``L4S_UPDATE_SCREENSHOT=1`` to
copy the screenshot to ``docs/report.png``.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.report import build
from pipeline.report_html import write_html
from pipeline.scan import scan
from tests.conftest import DEMO, REPO
from tests.debian import ensure_binary

pytestmark = pytest.mark.slow

SAMPLE = [
    str(DEMO / "apache_logs"),
    str(DEMO / "crowdsec_log4j.log"),
    str(DEMO / "corelight_log4j_requests.ecs.jsonl"),
]
GEO = {
    "geoip_db": DEMO / "geo/dbip-country-lite-demo.mmdb",
    "asn_db": DEMO / "geo/asn-lite-demo.mmdb",
}
CHARTS = (
    "days",
    "countries",
    "kinds",
    "levels",
    "tor",
    "recurrence",
    "fields",
    "obfuscation",
)
ALL_DRAWN = "ids => ids.every(i => document.querySelector(`#chart-${i} .main-svg`))"
TRACES = "ids => ids.map(i => document.getElementById(`chart-${i}`).data.length)"
#: Chromium started with nothing to reach but the page itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_demo_report_renders_every_chart_offline_without_errors(tmp_path: Path) -> None:
    chromium = ensure_binary("chromium", "chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    page_path = tmp_path / "report.html"
    write_html(build(scan(SAMPLE, Settings(enrich=GEO)).store), page_path)
    shot = tmp_path / "report.png"
    errors: list[str] = []
    outside: list[str] = []

    def only_the_page(route, request) -> None:  # type: ignore[no-untyped-def]
        if request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            outside.append(request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            offline=True,
        )
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", only_the_page)
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                ALL_DRAWN,
                arg=list(CHARTS),
                timeout=30_000,
            )
            traces = page.evaluate(
                TRACES,
                list(CHARTS),
            )
            bars = page.evaluate(
                "document.querySelectorAll('#chart-days .bars path').length"
            )
            title = page.title()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert outside == []
    assert all(n >= 1 for n in traces), dict(zip(CHARTS, traces, strict=True))
    assert bars == 4  # one bar per demo day
    assert "Log4Shell" in title
    width, height = png_size(shot)
    assert width == 1280 and height > 2000
    assert shot.stat().st_size > 50_000
    if os.environ.get("L4S_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, REPO / "docs" / "report.png")
