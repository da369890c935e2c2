"""Fixtures of the integration tests: worker processes that never outlive a test."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Namespace
from tests.integration.harness import Worker


class Supervisor:
    """Starts workers and processes for one test and stops whatever is left after it."""

    def __init__(self, ns: Namespace, log_dir: Path) -> None:
        self.ns = ns
        self.log_dir = log_dir
        self.workers: list[Worker] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def worker(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> Worker:
        worker = Worker(self.ns, args, self.log_dir, name, env or {})
        self.workers.append(worker)
        return worker.start()

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.alive() and worker.process is not None:
                worker.process.send_signal(signal.SIGKILL)
                worker.process.wait(timeout=30)
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.fixture
def supervisor(namespace: Namespace, tmp_path: Path) -> Iterator[Supervisor]:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    supervisor = Supervisor(namespace, log_dir)
    yield supervisor
    supervisor.stop_all()
