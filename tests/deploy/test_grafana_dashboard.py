"""The Grafana dashboard: valid JSON, provisioned as compose mounts it, and every
query names a metric l4s exports."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipeline.metrics import Metrics
from tests.conftest import REPO
from tests.deploy.promql import metric_names

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "l4s.json"
#: Grafana's built-in variables, replaced by a value of the right kind before parsing.
VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            out.append((panel["title"], expr))
    return out


def test_dashboard_has_the_panels_an_analyst_needs(dashboard: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in panels(dashboard))
    for needed in (
        "attack rate",
        "unique attacking sources",
        "top countries",
        "top organisations",
        "threat levels",
        "tor share",
        "consumer lag",
        "dead letters",
        "blocklist size",
    ):
        assert needed in titles, needed
    assert dashboard["uid"] == "l4s-overview"
    assert dashboard["schemaVersion"] >= 36


def test_every_query_parses_and_names_only_metrics_l4s_exports(
    dashboard: dict[str, Any],
) -> None:
    exported = Metrics(CollectorRegistry()).names()
    found = queries(dashboard)
    assert len(found) >= 25
    for title, expr in found:
        assert "$" not in expr, (title, expr)
        names = metric_names(expr)
        assert names, (title, expr)
        unknown = names - exported
        assert not unknown, (title, unknown)


def test_a_query_with_a_metric_l4s_does_not_export_is_caught() -> None:
    exported = Metrics(CollectorRegistry()).names()
    assert metric_names("sum(rate(l4s_attack_total[5m]))") - exported == {
        "l4s_attack_total"
    }
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(l4s_attacks_total[5m])")


def test_panels_use_the_provisioned_datasource_and_do_not_overlap(
    dashboard: dict[str, Any],
) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = provisioned["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])


def test_no_query_groups_by_an_address_label(dashboard: dict[str, Any]) -> None:
    for title, expr in queries(dashboard):
        for grouping in re.findall(r"by \(([^)]*)\)", expr):
            labels = {label.strip() for label in grouping.split(",")}
            assert not labels & {"ip", "address", "source_ip", "instance"}, title


def test_compose_provisions_the_dashboard_where_grafana_looks() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "l4s.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert (REPO / mounts[path] / "l4s.json").exists()
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
