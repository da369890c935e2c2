"""The blocklist on the real local Kafka: lifecycle, allowlist, breaker, trust.

Attack lines are the real CrowdSec fixture line (a December 2021 in-the-wild
payload, see samples/demo/SOURCES.md) with its client address replaced by
documentation addresses; the settings treat those as public
(``documentation_as_public``) and shorten lifetimes to seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from pipeline.blocklist import parse_time
from tests.conftest import DEMO, Namespace
from tests.integration.test_pipeline import (
    GEO,
    WALL_CLOCK_FIELDS,
    assert_no_error_lines,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CROWDSEC_LINE = (DEMO / "crowdsec_log4j.log").read_text().strip()
SHORT = {
    "L4S_BLOCKLIST__DOCUMENTATION_AS_PUBLIC": "true",
    "L4S_BLOCKLIST__LIFETIME": "20",
    "L4S_BLOCKLIST__LIFETIME_JITTER": "0.1",
    "L4S_BLOCKLIST__LEASE": "6",
    "L4S_BLOCKLIST__SWEEP_SECONDS": "0.5",
    "L4S_BLOCKLIST__ALLOWLIST_CHECK_SECONDS": "0.5",
}


def attack_line(address: str, day: str = "10/Dec/2021") -> str:
    """The real CrowdSec line, sent from ``address`` on ``day``."""
    return CROWDSEC_LINE.replace("192.168.1.3", address, 1).replace(
        "10/Dec/2021", day, 1
    )


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


class TopicReader:
    """Reads a topic from its beginning, keeping every record with its broker time."""

    def __init__(self, ns: Namespace, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": ns.stack.bootstrap,
                "group.id": f"{ns.name}-reader-{topic}",
                "enable.auto.commit": False,
            }
        )
        self.topic = topic
        self.records: list[tuple[float, str, dict[str, Any] | None]] = []
        self._assigned = False

    def _assign(self) -> bool:
        metadata = self.consumer.list_topics(self.topic, timeout=10).topics.get(
            self.topic
        )
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return False
        self.consumer.assign(
            [
                TopicPartition(self.topic, p, OFFSET_BEGINNING)
                for p in metadata.partitions
            ]
        )
        self._assigned = True
        return True

    def read(self, seconds: float = 0.5) -> None:
        if not self._assigned and not self._assign():
            time.sleep(seconds)
            return
        for message in self.consumer.consume(500, timeout=seconds):
            assert message.error() is None, message.error()
            value = message.value()
            record = json.loads(value) if value is not None else None
            self.records.append(
                (message.timestamp()[1] / 1000, message.key().decode(), record)
            )

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out waiting for {what}; records: {self.records[-10:]}"
                )
            self.read()

    def of(self, key: str) -> list[tuple[float, dict[str, Any] | None]]:
        return [(t, r) for t, k, r in self.records if k == key]

    def current(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for _, key, record in self.records:
            if record is None:
                out.pop(key, None)
            else:
                out[key] = record
        return out

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def short(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SHORT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def workers(namespace: Namespace) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts long-running l4s processes and stops them (SIGTERM) at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = namespace.popen(*args)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return stderr


def test_blocks_are_refreshed_extended_by_new_evidence_and_tombstoned_at_the_end(
    namespace: Namespace,
    short: None,
    workers: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
) -> None:
    ns = namespace
    ns.l4s("topics", "create")
    enrich = workers("enrich")
    detect = workers("detect")
    reader = TopicReader(ns, ns.env["L4S_TOPICS__BLOCKLIST"])
    address = "198.51.100.7"
    ns.l4s("replay", write_lines(tmp_path / "day1.log", [attack_line(address)]))
    reader.wait(lambda: len(reader.of(address)) >= 1, 90, "the first record")
    first_t, first = reader.of(address)[0]
    assert first is not None and first["action"] == "block" and first["hits"] == 1
    first_until = parse_time(first["block_until"])
    assert 18.5 <= first_until - first_t <= 23, "lifetime 20 s, up to 10% jitter"

    # Refreshes keep it alive without new evidence: same content, later leases.
    reader.wait(lambda: len(reader.of(address)) >= 3, 30, "two refreshes")
    records = reader.of(address)
    assert all(r is not None and r["hits"] == 1 for _, r in records)
    assert parse_time(records[2][1]["expires_at"]) > parse_time(
        records[0][1]["expires_at"]
    )  # type: ignore[index]

    # The attacker returns on another day: the block extends and lasts longer.
    ns.l4s(
        "replay",
        write_lines(tmp_path / "day2.log", [attack_line(address, "11/Dec/2021")]),
    )
    reader.wait(
        lambda: any(r and r["days"] == 2 for _, r in reader.of(address)),
        60,
        "the update",
    )
    update_t, update = next(
        (t, r) for t, r in reader.of(address) if r and r["days"] == 2
    )
    extended_until = parse_time(update["block_until"])
    assert extended_until - update_t >= 28.5, "a second day makes the lifetime 30 s"
    assert extended_until > first_until

    reader.wait(
        lambda: reader.of(address)[-1][1] is None,
        extended_until - time.time() + 30,
        "the tombstone",
    )
    records = reader.of(address)
    tomb_t = records[-1][0]
    assert tomb_t >= extended_until - 1, "not before the extended decision ended"
    assert tomb_t <= extended_until + 5
    for (t, r), (t_next, _) in itertools.pairwise(records):
        assert r is not None
        # Never a gap: each lease still ran when the next record or tombstone came.
        assert parse_time(r["expires_at"]) >= t_next - 1, (t, r, t_next)
    assert len(records) >= 6, "refreshed several times over 30 s with a 6 s lease"

    # The callback host of the payload went to the egress topic, as an address.
    egress = TopicReader(ns, ns.env["L4S_TOPICS__EGRESS"])
    egress.wait(lambda: "45.155.205.233" in egress.current(), 30, "the callback host")
    assert set(egress.current()["45.155.205.233"]["roles"]) == {
        "jndi-server",
        "dropper",
    }
    egress.close()
    reader.close()
    assert_no_error_lines(stop(detect) + stop(enrich))


def test_an_allowlist_entry_added_after_a_block_removes_it_and_hits_are_still_counted(
    namespace: Namespace,
    short: None,
    workers: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allow = tmp_path / "allowlist.txt"
    allow.write_text("# partners and pen testers\n")
    monkeypatch.setenv("L4S_BLOCKLIST__ALLOWLIST", str(allow))
    monkeypatch.setenv("L4S_BLOCKLIST__LIFETIME", "600")
    ns = namespace
    ns.l4s("topics", "create")
    enrich = workers("enrich")
    detect = workers("detect")
    reader = TopicReader(ns, ns.env["L4S_TOPICS__BLOCKLIST"])
    partner, other = "203.0.113.20", "203.0.113.21"
    ns.l4s(
        "replay",
        write_lines(tmp_path / "a.log", [attack_line(partner), attack_line(other)]),
    )
    reader.wait(lambda: {partner, other} <= set(reader.current()), 90, "both blocks")

    allow.write_text(f"# partners and pen testers\n{partner}   # partner CDN\n")
    reader.wait(lambda: partner not in reader.current(), 30, "the partner's tombstone")
    assert other in reader.current()
    records_after = len(reader.of(partner))

    # More attacks from the partner: counted and reported, never published.
    ns.l4s(
        "replay",
        write_lines(tmp_path / "b.log", [attack_line(partner, "12/Dec/2021")] * 3),
    )
    client = redis.Redis.from_url(ns.stack.redis_url)
    key = f"{ns.name}:ip:{partner}"
    deadline = time.monotonic() + 60
    while client.hget(key, "hits") != b"4":
        assert time.monotonic() < deadline, client.hgetall(key)
        time.sleep(0.5)
    assert client.hget(key, "blocklist") == b"withheld:allowlist"
    report = json.loads(ns.l4s("report", "--json").stdout)
    assert report["attacks"] == 5
    reader.read(3.0)
    assert len(reader.of(partner)) == records_after
    reader.close()
    assert_no_error_lines(stop(detect) + stop(enrich))


def test_a_flood_of_new_attackers_trips_the_breaker(
    namespace: Namespace,
    short: None,
    workers: Callable[..., subprocess.Popen[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("L4S_BLOCKLIST__BREAKER_PER_MINUTE", "5")
    monkeypatch.setenv("L4S_BLOCKLIST__LIFETIME", "600")
    ns = namespace
    ns.l4s("topics", "create")
    port = _free_port()
    enrich = workers("enrich", "--metrics-port", str(port))
    detect = workers("detect")
    reader = TopicReader(ns, ns.env["L4S_TOPICS__BLOCKLIST"])
    flood = [attack_line(f"198.51.100.{i}") for i in range(1, 41)]
    ns.l4s("replay", write_lines(tmp_path / "flood.log", flood))

    metrics = ""
    deadline = time.monotonic() + 90
    while "l4s_blocklist_breaker_open 1.0" not in metrics:
        assert time.monotonic() < deadline, metrics[-2000:]
        time.sleep(1)
        metrics = _scrape(port)
    reader.wait(lambda: len(reader.current()) >= 5, 30, "the first entries")
    reader.read(3.0)
    assert len(reader.current()) == 5, "publishing paused after the limit"
    assert 'l4s_blocklist_held_total{topic="blocklist"} 35.0' in _scrape(port)
    stderr = stop(enrich)
    opened = [
        json.loads(x) for x in stderr.splitlines() if "blocklist_breaker_opened" in x
    ]
    assert (
        opened and "limit 5" in opened[0]["reason"] and opened[0]["level"] == "warning"
    )
    reader.close()
    stop(detect)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_blocks_nothing(
    namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real Corelight requests of two attackers, rewritten as a load balancer
    # would log them: 45.137.21.9's arrive from an internal host that is not a
    # configured proxy and claims the attacker's address in X-Forwarded-For;
    # 45.155.205.233's arrive through the trusted proxy 10.0.0.5, behind a
    # spoofed left-most hop.
    monkeypatch.setenv("L4S_DETECT__TRUSTED_PROXIES", '["10.0.0.0/8"]')
    monkeypatch.setenv("L4S_BLOCKLIST__DOCUMENTATION_AS_PUBLIC", "true")
    lines = []
    for raw in (DEMO / "corelight_log4j_requests.ecs.jsonl").read_text().splitlines():
        doc = json.loads(raw)
        attacker = doc["source"]["ip"]
        headers = doc["http"]["request"].setdefault("headers", {})
        if attacker == "45.137.21.9":
            doc["source"]["ip"] = "192.168.1.3"
            headers["X-Forwarded-For"] = attacker
        elif attacker == "45.155.205.233":
            doc["source"]["ip"] = "10.0.0.5"
            headers["X-Forwarded-For"] = f"198.51.100.66, {attacker}"
        else:
            continue
        lines.append(json.dumps(doc))
    assert len(lines) == 2
    ns = namespace
    ns.l4s("topics", "create")
    ns.l4s("replay", write_lines(tmp_path / "xff.jsonl", lines))
    enrich = ns.popen("enrich", "--stop-when-idle", "6", *GEO)
    ns.l4s("detect", "--stop-when-idle", "3")
    _, err = enrich.communicate(timeout=300)
    assert enrich.returncode == 0, err[-2000:]

    exported = ns.l4s("blocklist", "export", "--format", "json").stdout.splitlines()
    blocked = {json.loads(x)["address"] for x in exported}
    assert blocked == {"45.155.205.233"}, "only the hop the trusted proxy saw"
    scanned = tmp_path / "scan.jsonl"
    ns.l4s("scan", "--blocklist", str(scanned), *GEO, str(tmp_path / "xff.jsonl"))
    assert {
        json.loads(x)["address"] for x in scanned.read_text().splitlines()
    } == blocked
    # Had the internal host been a trusted proxy, its header would have blocked
    # 45.137.21.9: the assertion above can fail.
    monkeypatch.setenv(
        "L4S_DETECT__TRUSTED_PROXIES", '["10.0.0.0/8", "192.168.0.0/16"]'
    )
    ns.l4s("scan", "--blocklist", str(scanned), *GEO, str(tmp_path / "xff.jsonl"))
    believed = {json.loads(x)["address"] for x in scanned.read_text().splitlines()}
    assert believed == {"45.137.21.9", "45.155.205.233"}


def produce(ns: Namespace, records: list[tuple[str, dict[str, Any] | None]]) -> None:
    producer = Producer({"bootstrap.servers": ns.stack.bootstrap})
    for key, value in records:
        data = json.dumps(value).encode() if value is not None else None
        producer.produce(ns.env["L4S_TOPICS__BLOCKLIST"], key=key.encode(), value=data)
    assert producer.flush(30) == 0


def record(address: str, expires_in: float, **changes: Any) -> dict[str, Any]:
    now = time.time()
    base = {
        "v": 1,
        "address": address,
        "action": "block",
        "dry_run": False,
        "level": "Critical",
        "score": 80.0,
        "reasons": ["test"],
        "first_seen": "2021-12-10T14:25:38Z",
        "last_seen": "2021-12-10T14:25:38Z",
        "hits": 1,
        "days": 1,
        "addresses": 1,
        "expires_at": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + expires_in)
        ),
        "block_until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
    }
    base.update(changes)
    return base


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def read_json_lines(path: Path) -> set[str] | None:
    if not path.exists():
        return None
    return {json.loads(line)["address"] for line in path.read_text().splitlines()}


def test_followers_rebuild_after_a_restart_and_two_followers_agree(
    namespace: Namespace, workers: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    ns = namespace
    ns.l4s("topics", "create")
    produce(
        ns, [(f"203.0.113.{i}", record(f"203.0.113.{i}", 3600)) for i in range(1, 6)]
    )
    produce(
        ns,
        [("203.0.113.2", None), ("203.0.113.3", record("203.0.113.3", 3600, hits=2))],
    )
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    first = workers("blocklist", "follow", "--format", "json", "--output", str(one))
    workers("blocklist", "follow", "--format", "json", "--output", str(two))
    expected = {"203.0.113.1", "203.0.113.3", "203.0.113.4", "203.0.113.5"}
    wait_for(
        lambda: read_json_lines(one) == expected == read_json_lines(two),
        60,
        "both files",
    )

    stop(first)
    produce(
        ns,
        [
            ("203.0.113.4", None),
            ("2001:db8::9", record("2001:db8::9", 3600)),
            ("203.0.113.6", record("203.0.113.6", 12)),
        ],
    )
    expected = {
        "203.0.113.1",
        "203.0.113.3",
        "203.0.113.5",
        "2001:db8::9",
        "203.0.113.6",
    }
    wait_for(lambda: read_json_lines(two) == expected, 30, "the running follower")
    workers("blocklist", "follow", "--format", "json", "--output", str(one))
    wait_for(
        lambda: read_json_lines(one) == read_json_lines(two) == expected,
        60,
        "the restart",
    )
    # A lease that ends without a tombstone drops out of both, at its expires_at.
    expected.discard("203.0.113.6")
    wait_for(
        lambda: read_json_lines(one) == read_json_lines(two) == expected,
        30,
        "the expiry",
    )
    three = {
        json.loads(x)["address"]
        for x in ns.l4s("blocklist", "export", "--format", "json").stdout.splitlines()
    }
    assert three == expected
    # The HTTP feed, a follower too, serves the same list.
    port = _free_port()
    workers("blocklist", "serve", "--port", str(port))
    feed = f"http://127.0.0.1:{port}"
    wait_for(lambda: _get_status(f"{feed}/healthz") == 200, 60, "the feed to catch up")
    with urllib.request.urlopen(f"{feed}/blocklist.txt", timeout=5) as response:
        assert set(response.read().decode().split()) == expected


# -- applying to the kernel -------------------------------------------------------


def _have(tool: str) -> bool:
    return (
        subprocess.run(["which", tool], capture_output=True, check=False).returncode
        == 0
    )


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with nft and ipset available, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip(
            "--apply needs root to create a network namespace and change its firewall"
        )
    missing = [
        pkg
        for tool, pkg in (("nft", "nftables"), ("ipset", "ipset"))
        if not _have(tool)
    ]
    if missing:
        installed = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            capture_output=True,
            check=False,
            text=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if installed.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)
            installed = subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", *missing],
                capture_output=True,
                check=False,
                text=True,
            )
        assert installed.returncode == 0, (
            f"cannot install {missing}: {installed.stderr[-500:]}"
        )
    name = f"l4s-test-{os.getpid()}-{time.monotonic_ns() % 100000}"
    created = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, check=False, text=True
    )
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def kernel_elements(netns: str, target: str) -> dict[str, int]:
    """What the kernel set holds: element → seconds left."""
    out: dict[str, int] = {}
    if target == "nftables":
        for name in ("blocklist_v4", "blocklist_v6"):
            listed = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "nft",
                    "-j",
                    "list",
                    "set",
                    "inet",
                    "l4s",
                    name,
                ],
                capture_output=True,
                check=False,
                text=True,
            )
            if listed.returncode != 0:
                continue
            for item in json.loads(listed.stdout)["nftables"]:
                for elem in item.get("set", {}).get("elem", []):
                    body = elem["elem"]
                    value = body["val"]
                    if isinstance(value, dict):
                        value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
                    out[value] = body["expires"]
        return out
    for name in ("l4s-blocklist-v4", "l4s-blocklist-v6"):
        listed = subprocess.run(
            ["ip", "netns", "exec", netns, "ipset", "list", name, "-output", "save"],
            capture_output=True,
            check=False,
            text=True,
        )
        for line in listed.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["add"]:
                out[parts[2]] = int(parts[parts.index("timeout") + 1])
    return out


@pytest.mark.parametrize("target", ["nftables", "ipset"])
def test_follow_apply_keeps_the_kernel_set_equal_to_the_topic(
    namespace: Namespace,
    workers: Callable[..., subprocess.Popen[str]],
    netns: str,
    target: str,
) -> None:
    ns = namespace
    ns.l4s("topics", "create")
    produce(
        ns,
        [
            ("198.51.100.7", record("198.51.100.7", 600)),
            ("198.51.100.8", record("198.51.100.8", 600)),
            ("2001:db8::7", record("2001:db8::7", 600)),
            ("198.51.100.9", record("198.51.100.9", 600, dry_run=True)),
            ("198.51.100.10", record("198.51.100.10", 600, action="tag")),
        ],
    )
    tool = "nft" if target == "nftables" else "ipset"
    follower = workers(
        "blocklist",
        "follow",
        "--format",
        target,
        "--apply",
        "--command",
        f"ip netns exec {netns} {tool}",
    )

    def holds(expected: set[str]) -> Callable[[], bool]:
        return lambda: set(kernel_elements(netns, target)) == expected

    wait_for(
        holds({"198.51.100.7", "198.51.100.8", "2001:db8::7"}), 60, "the first sync"
    )
    assert 590 <= kernel_elements(netns, target)["198.51.100.7"] <= 600

    # A refresh moves the kernel timeout; a tombstone removes the element.
    produce(
        ns, [("198.51.100.7", record("198.51.100.7", 3000)), ("198.51.100.8", None)]
    )
    wait_for(
        lambda: kernel_elements(netns, target).get("198.51.100.7", 0) > 2900,
        30,
        "refresh",
    )
    assert set(kernel_elements(netns, target)) == {"198.51.100.7", "2001:db8::7"}

    # A prefix replaces the addresses it covers; a short lease ends by itself.
    produce(
        ns,
        [
            ("198.51.100.0/24", record("198.51.100.0/24", 600, addresses=3)),
            ("203.0.113.5", record("203.0.113.5", 8)),
        ],
    )
    wait_for(
        holds({"198.51.100.0/24", "2001:db8::7", "203.0.113.5"}),
        30,
        "prefix and short lease",
    )
    wait_for(holds({"198.51.100.0/24", "2001:db8::7"}), 30, "the lease to end")
    produce(ns, [("198.51.100.0/24", None)])
    wait_for(
        holds({"198.51.100.7", "2001:db8::7"}), 30, "the covered address to come back"
    )

    stderr = stop(follower)
    assert_no_error_lines(stderr)
    assert '"follower_applied"' in stderr


def test_prefix_aggregation_streams_like_scan_and_spares_allowlisted_networks(
    namespace: Namespace, short: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow = tmp_path / "allowlist.txt"
    allow.write_text("203.0.113.200   # a partner inside the attacking network\n")
    monkeypatch.setenv("L4S_BLOCKLIST__ALLOWLIST", str(allow))
    monkeypatch.setenv("L4S_BLOCKLIST__AGGREGATE_THRESHOLD", "3")
    monkeypatch.setenv("L4S_BLOCKLIST__LIFETIME", "600")
    # The worker exits once idle: leases must outlast it until the export below.
    monkeypatch.setenv("L4S_BLOCKLIST__LEASE", "600")
    lines = [attack_line(f"198.51.100.{i}") for i in (1, 2, 3, 4)]
    lines += [attack_line(f"203.0.113.{i}") for i in (1, 2, 3)]
    lines += [attack_line("198.51.101.1"), attack_line("198.51.101.2")]
    sample = write_lines(tmp_path / "networks.log", lines)
    ns = namespace
    ns.l4s("topics", "create")
    ns.l4s("replay", sample)
    enrich = ns.popen("enrich", "--stop-when-idle", "8")
    ns.l4s("detect", "--stop-when-idle", "3")
    _, err = enrich.communicate(timeout=300)
    assert enrich.returncode == 0, err[-2000:]
    assert_no_error_lines(err)

    streamed = {
        json.loads(x)["address"]: json.loads(x)
        for x in ns.l4s("blocklist", "export", "--format", "json").stdout.splitlines()
    }
    prefixes = {a for a in streamed if "/" in a}
    assert prefixes == {"198.51.100.0/24"}, (
        "203.0.113.0/24 holds an allowlisted address"
    )
    assert streamed["198.51.100.0/24"]["addresses"] == 4
    assert ns.l4s("blocklist", "export").stdout.split() == [
        "198.51.100.0/24",
        "198.51.101.1",
        "198.51.101.2",
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
    ]
    scanned = tmp_path / "scan.jsonl"
    ns.l4s("scan", "--blocklist", str(scanned), sample)
    from_scan = {
        json.loads(x)["address"]: json.loads(x)
        for x in scanned.read_text().splitlines()
    }
    assert without_clock(streamed) == without_clock(from_scan)


def without_clock(entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        k: {f: v for f, v in e.items() if f not in WALL_CLOCK_FIELDS}
        for k, e in entries.items()
    }
