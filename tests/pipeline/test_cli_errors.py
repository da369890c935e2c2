"""A bad flag, file or address gets one readable line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO, REPO


def l4s(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        check=False,
        text=True,
        env={**os.environ, **(env or {})},
        input=stdin,
        timeout=120,
        cwd=REPO,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("l4s: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_flag_is_one_line() -> None:
    result = l4s("scan", "--no-such-flag", "x.log")
    assert_one_line_error(result, "--no-such-flag", "l4s scan --help")
    assert result.returncode == 2


def test_bad_flag_value_is_one_line() -> None:
    assert_one_line_error(l4s("replay", "--rate", "fast", "x.log"), "--rate")


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(l4s("--config", str(tmp_path / "none.toml"), "report"), "does not exist")


def test_invalid_setting_names_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "l4s.toml"
    config.write_text('[detect]\nbatch_size = "many"\n')
    assert_one_line_error(l4s("--config", str(config), "report"), "detect.batch_size")
    config.write_text("[detect\n")
    assert_one_line_error(l4s("--config", str(config), "report"), "not valid TOML")


def test_unknown_env_setting_value_is_one_line() -> None:
    assert_one_line_error(l4s("report", env={"L4S_KAFKA__PARTITIONS": "-3"}), "kafka.partitions")


def test_unreachable_redis_is_one_line() -> None:
    result = l4s("report", env={"L4S_REDIS__URL": "redis://127.0.0.1:1/0"})
    assert_one_line_error(result, "Redis at redis://127.0.0.1:1/0", "deploy/local/stack up")
    assert result.returncode == 3


def test_unreachable_broker_is_one_line() -> None:
    result = l4s("topics", "create", env={"L4S_KAFKA__BOOTSTRAP": "127.0.0.1:1"})
    assert_one_line_error(result, "Kafka at 127.0.0.1:1")
    assert result.returncode == 3


def test_missing_log_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(l4s("scan", str(tmp_path / "missing.log")), "does not exist")


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100])
def test_unreadable_geo_database_is_one_line(tmp_path: Path, content: bytes) -> None:
    database = tmp_path / "broken.mmdb"
    database.write_bytes(content)
    result = l4s("scan", "--geoip-db", str(database), str(DEMO / "crowdsec_log4j.log"))
    assert_one_line_error(result, str(database))


def test_missing_tor_list_is_one_line(tmp_path: Path) -> None:
    result = l4s("scan", "--tor-exits", str(tmp_path / "exits.txt"), str(DEMO / "crowdsec_log4j.log"))
    assert_one_line_error(result, "exits.txt")


def test_reset_without_confirmation_is_refused() -> None:
    assert_one_line_error(l4s("reset"), "--yes")


def test_unknown_replay_format_is_refused() -> None:
    assert_one_line_error(l4s("replay", "--format", "nope", "x.log"), "unknown format")
