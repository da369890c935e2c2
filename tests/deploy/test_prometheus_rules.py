"""Prometheus config and alert rules: checked and unit-tested with Debian's promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipeline.metrics import Metrics
from tests.conftest import REPO
from tests.debian import ensure_binary
from tests.deploy.promql import metric_names

PROMETHEUS = REPO / "deploy" / "prometheus"
#: Series Prometheus itself makes, which rules may name beside l4s's own.
PROMETHEUS_SERIES = {"up"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_binary("promtool", "prometheus")


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        capture_output=True,
        text=True,
        cwd=PROMETHEUS,
        timeout=120,
        check=False,
    )


def test_scrape_config_and_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alert_rules_pass_their_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", "l4s.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails_the_rule_tests(
    promtool: str, tmp_path: Path
) -> None:
    # The unit tests can fail: change one expected value and promtool must say so.
    tests = (PROMETHEUS / "l4s.rules.test.yml").read_text()
    broken = tests.replace("value: 12", "value: 13")
    assert broken != tests
    (tmp_path / "l4s.rules.yml").write_text((PROMETHEUS / "l4s.rules.yml").read_text())
    (tmp_path / "broken.test.yml").write_text(broken)
    result = subprocess.run(
        [promtool, "test", "rules", "broken.test.yml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0


def rules() -> list[dict[str, str]]:
    groups = yaml.safe_load((PROMETHEUS / "l4s.rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_every_alert_the_deployment_needs_exists_and_is_tested() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= {
        "L4sAttackRateSpike",
        "L4sNewCriticalSources",
        "L4sDeadLetterRate",
        "L4sConsumerLagGrowing",
        "L4sEnrichmentDataStale",
        "L4sBlocklistBreakerOpen",
        "L4sWorkerDown",
    }
    tested = yaml.safe_load((PROMETHEUS / "l4s.rules.test.yml").read_text())["tests"]
    named = {
        case["alertname"] for test in tested for case in test.get("alert_rule_test", [])
    }
    assert alerts <= named
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"]


def test_rules_name_only_metrics_l4s_exports() -> None:
    exported = Metrics(CollectorRegistry()).names()
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["expr"]
        unknown = names - exported - recorded - PROMETHEUS_SERIES
        assert not unknown, (rule.get("alert") or rule.get("record"), unknown)


def test_metric_name_extraction_sees_every_selector() -> None:
    expr = (
        'sum(rate(a_total[5m])) / ignoring(x) max(b{c="d"}) or '
        "histogram_quantile(0.9, sum by (le) (rate(e_bucket[1m]))) - f offset 5m"
    )
    assert metric_names(expr) == {"a_total", "b", "e_bucket", "f"}
