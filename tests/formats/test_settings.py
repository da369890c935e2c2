"""The ``[formats]`` settings table: loaded from TOML and the environment, checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load
from pipeline.errors import ConfigError
from pipeline.formats import FormatRouter
from pipeline.formats.settings import FormatSettings

TOML = """
[formats]
default = "auto"
fallback = "ecs"
timezone = "Europe/Berlin"
bad_timestamp = "broker"
haproxy_request_headers = ["Host", "User-Agent"]

[formats.topics]
"alb-logs" = "alb"
"edge-logs" = "edge"

[formats.nginx]
edge = '''log_format edge '$remote_addr [$time_local] "$request" '
                          '"$http_x_api_version"';'''
"""


def test_formats_table_is_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "l4s.toml"
    path.write_text(TOML)

    settings = load(path).formats
    router = FormatRouter.from_settings(settings)

    assert (settings.fallback, settings.timezone, settings.bad_timestamp) == (
        "ecs",
        "Europe/Berlin",
        "broker",
    )
    assert router.choose(b"x", topic="alb-logs")[0].name == "alb"
    request = router.parse(
        b'203.0.113.9 [10/Dec/2021:15:25:38 +0100] "GET / HTTP/1.1" "1"',
        topic="edge-logs",
    )
    assert request is not None
    assert request.timestamp == 1639146338.0


def test_environment_overrides_the_default_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("L4S_FORMATS__DEFAULT", "cloudfront")

    assert load().formats.default == "cloudfront"


@pytest.mark.parametrize(
    "table",
    ['timezone = "Mars/Olympus"', 'bad_timestamp = "ignore"', "no_such_setting = 1"],
)
def test_bad_formats_setting_is_one_readable_config_error(
    tmp_path: Path, table: str
) -> None:
    path = tmp_path / "l4s.toml"
    path.write_text(f"[formats]\n{table}\n")

    with pytest.raises(ConfigError, match="formats"):
        load(path)


def test_defaults_detect_per_record_with_combined_as_fallback() -> None:
    settings = FormatSettings()

    assert (settings.default, settings.fallback, settings.timezone) == (
        "auto",
        "combined",
        "UTC",
    )
