"""Debian packages the tests need (prometheus, chromium), installed on first use."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

_LOCK = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "l4s" / "apt.lock"
)
_APT = [
    "apt-get",
    "-y",
    "-q",
    "-o",
    "DPkg::Lock::Timeout=300",
    "--no-install-recommends",
    "install",
]


def ensure_binary(binary: str, package: str) -> str:
    """Path of ``binary``; installs Debian's ``package`` first when it is missing.

    Skips the calling test, with the reason, only when installing is impossible
    here (not root, or no apt-get); a failed install fails the test.
    """
    found = shutil.which(binary)
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(
            f"{binary} is missing and this machine has no apt-get to install {package}"
        )
    if os.geteuid() != 0:
        pytest.skip(
            f"{binary} is missing; installing Debian's {package} package needs root"
        )
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        # Several test processes (and deploy/local/stack) may install at once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which(binary)
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(
            [*_APT, package], capture_output=True, text=True, env=env, check=False
        )
        if result.returncode != 0:
            # The package lists may be missing or stale on a fresh machine.
            subprocess.run(
                ["apt-get", "-q", "update"], capture_output=True, env=env, check=False
            )
            result = subprocess.run(
                [*_APT, package], capture_output=True, text=True, env=env, check=False
            )
        if result.returncode != 0:
            pytest.fail(
                f"apt-get install {package} failed:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    _stop_system_service(package)
    found = shutil.which(binary)
    if not found:
        pytest.fail(
            f"Debian's {package} package is installed but {binary} is not on PATH"
        )
    return found


def _stop_system_service(package: str) -> None:
    # Debian's prometheus package starts a system-wide server on :9090 where an
    # init system runs; the tests run their own, so stop that one quietly.
    if package != "prometheus":
        return
    for command in (
        ["systemctl", "disable", "--now", "prometheus.service"],
        ["service", "prometheus", "stop"],
    ):
        if shutil.which(command[0]):
            subprocess.run(command, capture_output=True, check=False, timeout=60)
