"""Engine test fixtures: the Log4j 2.14.1 oracle of the differential tests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ORACLE_DIR = Path(__file__).resolve().parents[1] / "log4j_oracle"
_BATCH = 256


class Log4jOracle:
    """One long-lived JVM running log4j-core 2.14.1's substitution over messages.

    Args:
        argv: the java command line.

    Example:
        >>> oracle.run(["${jndi:ldap://example.com/a}"])[0]["jndi"]  # doctest: +SKIP
        ['ldap://example.com/a']
    """

    def __init__(self, argv: list[str]) -> None:
        # A cleared environment: nothing from this shell (proxies, JAVA_TOOL_OPTIONS,
        # credentials) reaches the JVM.
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
            text=True,
            encoding="utf-8",
        )
        assert self._process.stdout is not None
        self.ready: dict[str, Any] = json.loads(self._process.stdout.readline())

    def run(self, values: list[str], mode: str = "L") -> list[dict[str, Any]]:
        """Evaluate each value; one result dict per value.

        ``mode`` is ``L`` for a Log4j log message, ``T`` for Commons Text
        ``StringSubstitutor.replace``.
        """
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        results: list[dict[str, Any]] = []
        for start in range(0, len(values), _BATCH):
            chunk = values[start : start + _BATCH]
            for value in chunk:
                encoded = base64.b64encode(value.encode("utf-8", "surrogatepass"))
                process.stdin.write(mode + encoded.decode("ascii") + "\n")
            process.stdin.flush()
            for _ in chunk:
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError("log4j oracle exited early")
                results.append(json.loads(line))

        return results

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)


def _build_oracle() -> list[str]:
    """Build the harness once (cached by source hash); return the java command."""
    java = shutil.which("java")
    mvn = shutil.which("mvn")
    if java is None or mvn is None:
        pytest.skip("java and mvn are needed for the Log4j differential tests")
    digest = hashlib.sha256()
    for path in sorted(ORACLE_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".xml", ".java"}:
            digest.update(path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    build = cache / "l4s" / f"log4j-oracle-{digest.hexdigest()[:16]}"
    classpath_file = build / "classpath.txt"
    if not classpath_file.exists():
        subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                f"-Doracle.build={build}",
                "-f",
                str(ORACLE_DIR / "pom.xml"),
                "compile",
            ],
            check=True,
            timeout=600,
        )
    classpath = f"{build / 'classes'}{os.pathsep}{classpath_file.read_text().strip()}"
    argv = [
        java,
        "-Djava.security.manager=allow",
        "-Djava.net.preferIPv4Stack=true",
        "-Duser.timezone=UTC",
        "-Duser.language=en",
        "-Duser.country=US",
        "-Dlog4j2.formatMsgNoLookups=false",
        "-cp",
        classpath,
        "Oracle",
    ]
    # Belt and braces: with a private network namespace the JVM has no interface
    # to reach anything even if the recorder or the SecurityManager were bypassed.
    unshare = shutil.which("unshare")
    if unshare is not None:
        probe = subprocess.run(
            [unshare, "-n", "true"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            argv = [unshare, "-n", *argv]

    return argv


@pytest.fixture(scope="session")
def log4j_oracle() -> Iterator[Log4jOracle]:
    """The Log4j oracle, started once per test session."""
    oracle = Log4jOracle(_build_oracle())
    try:
        yield oracle
    finally:
        oracle.close()
