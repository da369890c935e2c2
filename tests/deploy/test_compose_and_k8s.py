"""docker-compose and Kubernetes manifests: they parse, scale, and probe /metrics."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import load
from tests.conftest import REPO

K8S = REPO / "deploy" / "k8s"


def compose_binary() -> list[str] | None:
    """``docker compose`` or a standalone ``docker-compose``, whichever is here."""
    for candidate in (
        os.environ.get("L4S_DOCKER_COMPOSE"),
        "docker-compose",
        "/tmp/gobin/docker-compose",
    ):
        if candidate and shutil.which(candidate):
            return [candidate]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_parses() -> None:
    binary = compose_binary()
    if binary is None:
        pytest.skip("no docker compose binary here (set L4S_DOCKER_COMPOSE to one)")
    result = subprocess.run(
        [*binary, "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_every_service_and_workers_can_scale() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {
        "kafka",
        "redis",
        "detect",
        "enrich",
        "prometheus",
        "grafana",
    } <= services.keys()
    for worker in ("detect", "enrich"):
        service = services[worker]
        # A fixed name or host port would stop `--scale` from starting replicas.
        assert "container_name" not in service and "ports" not in service
        assert "--metrics-port" in service["command"]
        port = service["command"][service["command"].index("--metrics-port") + 1]
        scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
        jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
        discovery = jobs[f"l4s-{worker}"]["dns_sd_configs"][0]
        assert discovery["names"] == [worker] and str(discovery["port"]) == port
    mounts = services["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_every_manifest_file_is_listed_and_well_formed() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for doc in manifests():
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def config_from_configmap(tmp_path: Path) -> Any:
    text = by_kind("ConfigMap")["l4s-config"]["data"]["l4s.toml"]
    path = tmp_path / "l4s.toml"
    path.write_text(text)
    return load(path)


def test_configmap_is_a_valid_l4s_config(tmp_path: Path) -> None:
    settings = config_from_configmap(tmp_path)
    assert settings.kafka.partitions >= 1
    assert settings.enrich.geoip_db is not None


@pytest.mark.parametrize("name", ["l4s-detect", "l4s-enrich"])
def test_workers_read_the_configmap_and_are_ready_when_metrics_answer(
    name: str,
) -> None:
    deployment = by_kind("Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/metrics" and ports[probe["port"]] == port
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["L4S_CONFIG"] == mounts["config"] + "/l4s.toml"
    assert volumes["config"]["configMap"]["name"] == "l4s-config"
    service = by_kind("Service")[name]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_detect_never_scales_past_the_partitions(tmp_path: Path) -> None:
    partitions = config_from_configmap(tmp_path).kafka.partitions
    hpa = by_kind("HorizontalPodAutoscaler")["l4s-detect"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "l4s-detect"
    assert hpa["spec"]["maxReplicas"] <= partitions
    assert by_kind("Deployment")["l4s-detect"]["spec"]["replicas"] <= partitions
    assert by_kind("Deployment")["l4s-enrich"]["spec"]["replicas"] <= partitions


def test_enrich_reads_the_data_files_the_configmap_names(tmp_path: Path) -> None:
    settings = config_from_configmap(tmp_path)
    container = by_kind("Deployment")["l4s-enrich"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    for path in (
        settings.enrich.geoip_db,
        settings.enrich.asn_db,
        settings.enrich.tor_exits,
    ):
        assert str(path).startswith(data["mountPath"] + "/")
    assert str(settings.data.geoip.directory).startswith(data["mountPath"])
