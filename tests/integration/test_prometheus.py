"""A real Prometheus (Debian's package) scrapes the workers while the demo streams."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO, REPO, Namespace
from tests.debian import ensure_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = [
    str(DEMO / "apache_logs"),
    str(DEMO / "crowdsec_log4j.log"),
    str(DEMO / "corelight_log4j_requests.ecs.jsonl"),
]
GEO = [
    "--geoip-db",
    str(DEMO / "geo/dbip-country-lite-demo.mmdb"),
    "--asn-db",
    str(DEMO / "geo/asn-lite-demo.mmdb"),
]
RULES = REPO / "deploy" / "prometheus" / "l4s.rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own data directory."""

    def __init__(self, binary: str, workdir: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                }
                for job, port in targets.items()
            ],
        }
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = (workdir / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as response:
            return (
                json.loads(response.read())
                if path.startswith("/api/")
                else response.read()
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see prometheus.log"
            try:
                self.get("/-/ready")
                return
            except OSError:
                time.sleep(0.3)
        pytest.fail("prometheus did not become ready")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = self.get("/api/v1/query", **params)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, wanted: float, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.scalar(expr)
            if last == wanted:
                return
            time.sleep(1)
        pytest.fail(f"{expr} stayed at {last}, expected {wanted}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def prometheus_binary() -> str:
    return ensure_binary("prometheus", "prometheus")


@pytest.fixture
def workers(namespace: Namespace) -> Iterator[dict[str, int]]:
    """Detect and enrich workers serving /metrics, stopped with SIGTERM at the end."""
    namespace.l4s("topics", "create")
    ports = {"l4s-detect": free_port(), "l4s-enrich": free_port()}
    enrich = namespace.popen("enrich", "--metrics-port", str(ports["l4s-enrich"]), *GEO)
    detect = namespace.popen("detect", "--metrics-port", str(ports["l4s-detect"]))
    yield ports
    for process in (detect, enrich):
        process.send_signal(signal.SIGTERM)
    for process in (detect, enrich):
        try:
            _, stderr = process.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        assert process.returncode == 0, stderr[-3000:]
        for line in stderr.splitlines():
            if line.startswith("{"):
                assert json.loads(line).get("level") not in ("error", "critical"), line


def test_prometheus_scrapes_the_workers_and_sees_the_attacks_rise(
    namespace: Namespace,
    workers: dict[str, int],
    prometheus_binary: str,
    tmp_path: Path,
) -> None:
    server = Prometheus(prometheus_binary, tmp_path, workers)
    try:
        server.wait_ready()
        server.wait_for('sum(up{job=~"l4s-detect|l4s-enrich"})', 2, timeout=60)
        before = time.time()
        assert not server.scalar("sum(l4s_attacks_total)")

        # Stream the demo at a bounded rate so scrapes land while it flows.
        namespace.l4s("replay", "--rate", "2500", "--no-progress", *SAMPLE)

        server.wait_for("sum(l4s_attacks_total)", 21)
        server.wait_for('sum(l4s_records_consumed_total{stage="detect"})', 10_021)
        server.wait_for("sum(l4s_threat_decisions_total)", 21)
        assert server.scalar('up{job="l4s-detect"}') == 1
        assert server.scalar('up{job="l4s-enrich"}') == 1
        assert server.scalar('l4s_worker_up{stage="detect"}') == 1
        # The counter rose from nothing before the replay to the demo's 21 attacks.
        assert not server.scalar("sum(l4s_attacks_total)", at=before)
        assert (
            server.scalar(
                'sum(l4s_detection_fields_total{field="user_agent.original"})'
            )
            == 9
        )
        # The recording rules evaluate over the scraped series.
        rules = server.get("/api/v1/rules")["data"]["groups"]
        assert {g["name"] for g in rules} == {"l4s-recording", "l4s-alerts"}
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
        server.wait_for("l4s:consumer_lag:sum", 0, timeout=60)
        # The enrich worker's summary of Redis reaches Prometheus too.
        server.wait_for('max(l4s_store_unique_sources{window="7d"})', 12, timeout=90)
    finally:
        server.stop()
