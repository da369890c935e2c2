"""Blocklist sweep cost: the enrich worker's full sweep beside a bare decode loop.

The timer decodes every slot of the sources table once a minute (and only due
ones in between). This times, over ``--slots`` published slots (default 100,000):

- decode: ``msgspec`` decoding of every slot (the floor of a full sweep)
- sweep: decode + ``Ledger.sweep`` (policy review, allowlist, refresh check),
  nothing due, as most sweeps find
- refresh: decode + sweep with every slot due, building the new records

Prints one JSON line and writes bench/results/blocklist_sweep.json. Each figure
is the median of ``--repeat`` runs; ratios are against the decode loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.blocklist import BlocklistEntry, BlockPolicy
from pipeline.config import BlocklistSettings
from pipeline.ledger import Breaker, Ledger, Slot


def slots(
    policy: BlockPolicy, ledger: Ledger[BlocklistEntry], n: int, now: float
) -> list[bytes]:
    out = []
    for i in range(n):
        address = f"{11 + i // 65536}.{(i // 256) % 256}.{i % 256}.7"
        entry = policy.entry(
            address=address,
            level="Critical",
            score=80.0,
            reasons=("1 working JNDI lookup", "hosting network"),
            first_seen=now - 3600,
            last_seen=now - 60,
            hits=3,
            days=1,
            now=now,
            country="NL",
            asn=14061,
            org="DigitalOcean, LLC",
            kind="hosting",
        )
        outcome = ledger.decide(address, None, entry, i % 12, now=now)
        assert outcome is not None and outcome.slot is not None
        out.append(msgspec.json.encode(outcome.slot))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    settings = BlocklistSettings(lease=timedelta(hours=6), breaker_per_minute=0)
    policy = BlockPolicy(settings)
    ledger: Ledger[BlocklistEntry] = Ledger(policy, policy.review, Breaker(0, 0), 86400)
    now = time.time()
    data = slots(policy, ledger, args.slots, now)
    decoder = msgspec.json.Decoder(Slot[BlocklistEntry])

    def decode() -> None:
        for raw in data:
            decoder.decode(raw)

    def sweep_at(at: float) -> int:
        changed = 0
        for raw in data:
            slot = decoder.decode(raw)
            if ledger.sweep(slot.entry.address, slot, at) is not None:
                changed += 1
        return changed

    figures: dict[str, list[float]] = {"decode": [], "sweep": [], "refresh": []}
    for _ in range(args.repeat):
        for name, run in (
            ("decode", decode),
            ("sweep", lambda: sweep_at(now + 1)),
            ("refresh", lambda: sweep_at(now + 5.9 * 3600)),
        ):
            start = time.perf_counter()
            run()
            figures[name].append(time.perf_counter() - start)
    assert sweep_at(now + 1) == 0 and sweep_at(now + 5.9 * 3600) == args.slots

    medians = {name: statistics.median(values) for name, values in figures.items()}
    result = {
        "bench": "blocklist_sweep",
        "slots": args.slots,
        "repeat": args.repeat,
        "seconds": {k: round(v, 4) for k, v in medians.items()},
        "per_slot_us": {k: round(v / args.slots * 1e6, 2) for k, v in medians.items()},
        "ratio_to_decode": {
            k: round(v / medians["decode"], 2) for k, v in medians.items()
        },
    }
    line = json.dumps(result, sort_keys=True)
    print(line)
    out = Path(__file__).resolve().parent / "results" / "blocklist_sweep.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
