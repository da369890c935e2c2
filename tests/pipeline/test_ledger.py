"""The blocklist lifecycle on an injected clock: refresh, expiry, allowlist, breaker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.allowlist import Allowlist
from pipeline.blocklist import BlocklistEntry, BlockPolicy, parse_time
from pipeline.config import BlocklistSettings
from pipeline.ledger import Breaker, Ledger, Outcome, Slot

T0 = 1_700_000_000.0


def settings(**changes: object) -> BlocklistSettings:
    base: dict[str, object] = {
        "lifetime": timedelta(seconds=600),
        "lease": timedelta(seconds=60),
        "documentation_as_public": True,
        "breaker_per_minute": 0,
    }
    base.update(changes)
    return BlocklistSettings(**base)  # type: ignore[arg-type]


def decide_entry(
    policy: BlockPolicy,
    address: str,
    now: float,
    hits: int = 1,
    days: int = 1,
    last_seen: float | None = None,
) -> BlocklistEntry:
    return policy.entry(
        address=address,
        level="Dangerous",
        score=60.0,
        reasons=("test",),
        first_seen=T0,
        last_seen=now if last_seen is None else last_seen,
        hits=hits,
        days=days,
        now=now,
    )


class Table:
    """A sources table and a topic, as the Faust adapter keeps them."""

    def __init__(self, ledger: Ledger[BlocklistEntry]) -> None:
        self.ledger = ledger
        self.slots: dict[str, Slot[BlocklistEntry]] = {}
        self.topic: list[tuple[float, str, BlocklistEntry | None]] = []

    def apply(
        self, key: str, outcome: Outcome[BlocklistEntry] | None, now: float
    ) -> None:
        if outcome is None:
            return
        if outcome.slot is None:
            self.slots.pop(key, None)
        else:
            self.slots[key] = outcome.slot
        if outcome.record is not None:
            self.topic.append((now, key, outcome.record))
        elif outcome.tombstone:
            self.topic.append((now, key, None))

    def decide(
        self,
        key: str,
        entry: BlocklistEntry | None,
        now: float,
        reason: str | None = None,
    ) -> None:
        self.apply(
            key,
            self.ledger.decide(
                key, self.slots.get(key), entry, 0, now=now, reason=reason
            ),
            now,
        )

    def sweep(self, now: float) -> None:
        self.ledger.breaker.poll(now)
        for key in list(self.slots):
            self.apply(key, self.ledger.sweep(key, self.slots[key], now), now)

    def run(self, start: float, end: float, step: float = 1.0) -> None:
        t = start
        while t <= end:
            self.sweep(t)
            t += step

    def records(self, key: str) -> list[tuple[float, BlocklistEntry | None]]:
        return [(t, e) for t, k, e in self.topic if k == key]


def make(policy: BlockPolicy, per_minute: int = 0, cooldown: float = 60.0) -> Table:
    return Table(
        Ledger(policy, policy.review, Breaker(per_minute, cooldown), retention=3600)
    )


def test_a_live_block_is_refreshed_before_each_lease_ends_until_the_end() -> None:
    policy = BlockPolicy(settings())
    table = make(policy)
    entry = decide_entry(policy, "198.51.100.7", T0)
    table.decide("198.51.100.7", entry, T0)
    until = table.slots["198.51.100.7"].until
    table.run(T0, until + 5)

    records = table.records("198.51.100.7")
    assert records[-1][1] is None, "the decision ends with a tombstone"
    assert until <= records[-1][0] <= until + 1
    published = [(t, e) for t, e in records if e is not None]
    assert len(published) >= 10, (
        "a 600 s decision with a 60 s lease is refreshed many times"
    )
    for (t, e), (t_next, after) in zip(published, records[1:], strict=True):
        assert e is not None and parse_time(e.expires_at) <= t + 60
        if after is not None:
            # No gap: each record's lease still runs when the next one arrives.
            assert parse_time(e.expires_at) > t_next
        else:
            # The last lease runs to the decision's end; the tombstone is not early.
            assert parse_time(e.expires_at) <= t_next
    assert all(e.content() == entry.content() for _, e in published)


def test_entries_decided_together_do_not_lapse_together() -> None:
    policy = BlockPolicy(settings())
    table = make(policy)
    addresses = [f"198.51.100.{i}" for i in range(1, 201)]
    for address in addresses:
        table.decide(address, decide_entry(policy, address, T0), T0)
    untils = [table.slots[a].until for a in addresses]
    refreshes = [table.slots[a].refresh_at for a in addresses]

    # Decision ends spread over 10% of the lifetime, refreshes over a quarter lease.
    assert max(untils) - min(untils) > 0.08 * 600
    assert len({round(u) for u in untils}) > 40
    assert max(refreshes) - min(refreshes) > 0.2 * 60  # type: ignore[operator]
    table.run(T0, T0 + 300)
    expiries = {parse_time(table.slots[a].entry.expires_at) for a in addresses}
    assert len(expiries) > 20, "after refreshing, leases end at many different times"


def test_new_evidence_extends_the_block_and_recurrence_lengthens_it() -> None:
    policy = BlockPolicy(settings(lifetime_jitter=0.0))
    table = make(policy)
    address = "203.0.113.5"
    table.decide(address, decide_entry(policy, address, T0), T0)
    first_until = table.slots[address].until
    assert first_until == T0 + 600

    later = T0 + 500
    table.run(T0, later)
    table.decide(address, decide_entry(policy, address, later, hits=2, days=2), later)
    slot = table.slots[address]
    assert slot.until == later + 600 * 1.5, "a second day makes the decision 50% longer"
    table.run(later, first_until + 60)
    assert table.slots[address].status == "published", (
        "still blocked after the first end"
    )
    assert table.records(address)[-1][1] is not None


def test_a_redelivered_detection_never_revives_an_expired_block() -> None:
    policy = BlockPolicy(settings(lifetime_jitter=0.0))
    table = make(policy)
    address = "203.0.113.6"
    entry = decide_entry(policy, address, T0)
    table.decide(address, entry, T0)
    table.run(T0, T0 + 601)
    assert table.slots[address].status == "expired"
    published_before = len(table.topic)

    # The same evidence again (Redis dedups the event, so the aggregate is equal).
    table.decide(
        address, decide_entry(policy, address, T0 + 700, last_seen=T0), T0 + 700
    )

    assert len(table.topic) == published_before
    table.decide(address, decide_entry(policy, address, T0 + 710, hits=2), T0 + 710)
    assert table.slots[address].status == "published", "new evidence blocks again"


def test_an_allowlist_entry_added_after_a_block_tombstones_it(tmp_path: Path) -> None:
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("# nothing yet\n")
    s = settings(allowlist=allow_file)
    policy = BlockPolicy(s, Allowlist.from_settings(s))
    table = make(policy)
    table.decide("198.51.100.20", decide_entry(policy, "198.51.100.20", T0), T0)
    table.decide("198.51.100.21", decide_entry(policy, "198.51.100.21", T0), T0)

    allow_file.write_text("198.51.100.20/32   # partner\n")
    assert policy.allowlist.maybe_reload()
    table.sweep(T0 + 1)

    assert table.records("198.51.100.20")[-1] == (T0 + 1, None)
    assert table.slots["198.51.100.20"].status == "withdrawn"
    assert table.slots["198.51.100.21"].status == "published"
    # Hits keep coming: counted elsewhere, never published again while allowlisted.
    reason = policy.withheld("198.51.100.20", "Critical", False, T0 + 2)
    assert reason == "allowlist"
    table.decide("198.51.100.20", None, T0 + 2, reason)
    assert table.records("198.51.100.20")[-1] == (T0 + 1, None)


def test_an_allowlist_entry_with_an_expiry_stops_protecting_then(
    tmp_path: Path,
) -> None:
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("203.0.113.0/24 2023-11-14T23:00:00Z\n")
    s = settings(allowlist=allow_file)
    policy = BlockPolicy(s)
    before, after = (
        parse_time("2023-11-14T22:59:59Z"),
        parse_time("2023-11-14T23:00:01Z"),
    )

    assert policy.withheld("203.0.113.9", "Critical", False, before) == "allowlist"
    assert policy.withheld("203.0.113.9", "Critical", False, after) is None


def test_a_broken_allowlist_edit_keeps_the_previous_list(tmp_path: Path) -> None:
    allow_file = tmp_path / "allow.txt"
    allow_file.write_text("198.51.100.0/24\n")
    policy = BlockPolicy(settings(allowlist=allow_file))
    allow_file.write_text("198.51.100.0/24 not-a-date\n")

    assert not policy.allowlist.maybe_reload()
    assert policy.withheld("198.51.100.3", "Critical", False, T0) == "allowlist"


def test_a_flood_of_new_entries_trips_the_breaker_and_held_entries_follow_later() -> (
    None
):
    policy = BlockPolicy(settings())
    changes: list[tuple[bool, str]] = []
    breaker = Breaker(
        5, cooldown=120, on_change=lambda is_open, why: changes.append((is_open, why))
    )
    table = Table(Ledger(policy, policy.review, breaker, retention=3600))
    addresses = [f"203.0.113.{i}" for i in range(1, 31)]
    for i, address in enumerate(addresses):
        table.decide(address, decide_entry(policy, address, T0 + i), T0 + i)

    published = {k for _, k, e in table.topic if e is not None}
    assert len(published) == 5
    assert breaker.open
    assert changes[0][0] is True and "limit 5" in changes[0][1]
    assert {table.slots[a].status for a in addresses[5:]} == {"held"}
    # Existing entries are still refreshed while the breaker is open.
    table.run(T0 + 30, T0 + 100)
    assert any(
        t > T0 + 30 for t, k, e in table.topic if k == addresses[0] and e is not None
    )
    assert breaker.open, "the flood was less than two minutes ago"

    table.run(T0 + 100, T0 + 500)
    assert not breaker.open and changes[-1][0] is False
    assert {table.slots[a].status for a in addresses} == {"published"}
    firsts: dict[str, float] = {}
    for t, k, e in table.topic:
        if e is not None:
            firsts.setdefault(k, t)
    release_times = sorted(firsts[a] for a in addresses[5:])
    per_minute = max(
        sum(1 for t in release_times if s <= t < s + 60) for s in release_times
    )
    assert per_minute <= 5, "held entries are released no faster than the limit"


def test_dry_run_switched_on_reaches_published_records_without_new_evidence() -> None:
    s = settings()
    policy = BlockPolicy(s)
    table = make(policy)
    table.decide("198.51.100.30", decide_entry(policy, "198.51.100.30", T0), T0)
    policy.settings = s.model_copy(update={"dry_run": True})
    table.sweep(T0 + 1)

    last = table.records("198.51.100.30")[-1][1]
    assert last is not None and last.dry_run and not last.enforce


@pytest.mark.parametrize(
    ("research", "action"), [("block", "block"), ("tag", "tag"), ("allow", None)]
)
def test_research_sources_follow_the_research_policy(
    research: str, action: str | None
) -> None:
    policy = BlockPolicy(settings(research=research))
    reason = policy.withheld("198.51.100.40", "Critical", True, T0)
    if action is None:
        assert reason == "research"
    else:
        assert reason is None
        entry = policy.entry(
            address="198.51.100.40",
            level="Critical",
            score=90.0,
            reasons=(),
            first_seen=T0,
            last_seen=T0,
            hits=1,
            days=1,
            now=T0,
            research=True,
        )
        assert entry.action == action


def test_never_block_ranges_are_withheld_whatever_the_level() -> None:
    policy = BlockPolicy(BlocklistSettings(never_block=["8.8.8.0/24"]))
    for address, reason in [
        ("10.1.2.3", "special"),
        ("127.0.0.1", "special"),
        ("169.254.1.1", "special"),
        ("100.64.0.9", "special"),
        ("224.0.0.5", "special"),
        ("192.0.2.1", "special"),
        ("::ffff:192.168.1.3", "special"),
        ("fe80::1", "special"),
        ("2001:db8::5", "special"),
        ("8.8.8.8", "never-block"),
        ("9.9.9.9", None),
    ]:
        assert policy.withheld(address, "Critical", False, T0) == reason, address


def test_lifetime_grows_with_level_and_recurrence_up_to_the_cap() -> None:
    policy = BlockPolicy(BlocklistSettings())
    hour = 3600.0
    assert policy.lifetime("Dangerous", 1) == 24 * hour
    assert policy.lifetime("Critical", 1) == 72 * hour
    assert policy.lifetime("Dangerous", 3) == 48 * hour
    assert policy.lifetime("Critical", 30) == 72 * 4 * hour, (
        "recurrence counts 7 days at most"
    )
    capped = BlockPolicy(BlocklistSettings(max_lifetime=timedelta(days=2)))
    assert capped.lifetime("Critical", 30) == 48 * hour
