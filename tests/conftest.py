"""Shared fixtures: the real local Kafka and Redis, and per-test names on them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "deploy" / "local" / "stack"
DEMO = REPO / "samples" / "demo"


@dataclass(frozen=True)
class Stack:
    """Addresses of the running local Kafka and Redis."""

    bootstrap: str
    redis_url: str


def _stack(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(STACK), *args], capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Kafka and Redis from deploy/local/stack; started here if not running, and
    stopped again at the end only if this session started them."""
    started = _stack("status", check=False).returncode != 0
    if started:
        result = _stack("up", check=False)
        if result.returncode != 0:
            pytest.fail(f"deploy/local/stack up failed:\n{result.stderr}")
    values = {}
    for line in _stack("env").stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    yield Stack(values["L4S_KAFKA__BOOTSTRAP"], values["L4S_REDIS__URL"])
    if started and not os.environ.get("L4S_KEEP_STACK"):
        _stack("down", check=False)


@dataclass(frozen=True)
class Namespace:
    """Topics, groups and Redis keys private to one test, as L4S_* variables."""

    name: str
    stack: Stack

    @property
    def env(self) -> dict[str, str]:
        n = self.name
        return {
            **os.environ,
            "L4S_KAFKA__BOOTSTRAP": self.stack.bootstrap,
            "L4S_REDIS__URL": self.stack.redis_url,
            "L4S_REDIS__PREFIX": n,
            "L4S_TOPICS__INPUT": f"{n}.http-logs",
            "L4S_TOPICS__DETECTIONS": f"{n}.detections",
            "L4S_TOPICS__EVENTS": f"{n}.events",
            "L4S_TOPICS__BLOCKLIST": f"{n}.blocklist",
            "L4S_TOPICS__EGRESS": f"{n}.egress",
            "L4S_TOPICS__DEAD_LETTER": f"{n}.dlq",
            "L4S_DETECT__GROUP": f"{n}-detect",
            "L4S_ENRICH__APP_ID": f"{n}-enrich",
            "L4S_KAFKA__PARTITIONS": "3",
        }

    def l4s(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``l4s`` as a user would; fails the test with its stderr on error."""
        result = subprocess.run(
            [sys.executable, "-m", "pipeline", "--log-format", "json", *args],
            capture_output=True,
            check=False,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            pytest.fail(f"l4s {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--log-format", "json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=REPO,
        )


@pytest.fixture
def namespace(stack: Stack) -> Namespace:
    return Namespace(f"t{uuid.uuid4().hex[:10]}", stack)
