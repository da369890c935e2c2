"""Records written to break l4s pass the streaming path, every one accounted for."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.detect_worker import DEAD_LETTER_VALUE_BYTES
from pipeline.store import TOTAL_FIELDS
from tests.integration.conftest import Supervisor
from tests.integration.harness import (
    GEO,
    error_lines,
    redis_totals,
    topic_records,
)
from tests.integration.test_faults import drain, scanned, stop_all
from tests.integration.workload import write_hostile_workload

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ten_thousand_hostile_records_are_each_counted_or_dead_lettered_with_a_reason(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    ns = supervisor.ns
    hostile = write_hostile_workload(tmp_path / "hostile.log")
    assert hostile.lines >= 10_000
    ns.l4s("topics", "create")
    replayed = ns.l4s("replay", "--no-progress", str(hostile.path))
    assert f"replayed {hostile.lines} records" in replayed.stderr
    detect = supervisor.worker("detect", "detect")
    enrich = supervisor.worker("enrich", "enrich", *GEO)
    started = time.monotonic()
    drain(ns, hostile.lines, [detect, enrich])
    print(json.dumps({"hostile_drain_seconds": round(time.monotonic() - started, 1)}))
    stop_all([detect, enrich])

    totals = redis_totals(ns)
    assert totals["lines"] == hostile.lines
    assert totals["parsed"] + totals["dead_letters"] == totals["lines"]
    dead = topic_records(ns, ns.env["L4S_TOPICS__DEAD_LETTER"])
    by_source = {headers["l4s-source"]: (value, headers) for value, headers in dead}
    assert len(by_source) == totals["dead_letters"]
    reasons = Counter(
        headers["l4s-reason"].decode() for _value, headers in by_source.values()
    )
    print(json.dumps({"hostile_counts": totals, "dead_letter_reasons": reasons}))
    assert all(reasons), "every dead letter names its reason"
    assert "internal_error" not in reasons, "no record hit a bug in l4s"
    assert reasons["too_large"] == hostile.huge
    for value, headers in by_source.values():
        assert value is not None and len(value) <= DEAD_LETTER_VALUE_BYTES
        if headers["l4s-reason"] == b"too_large":
            assert int(headers["l4s-original-bytes"]) > 10_000_000
    # Neither worker crashed or restarted, and l4s logged no error of its own.
    assert detect.starts == enrich.starts == 1
    assert not error_lines([detect, enrich])
    # The same records give the same counters through l4s scan.
    _report, _blocklist, scan_totals, _store = scanned(ns, hostile.path)
    assert {name: totals.get(name, 0) for name in TOTAL_FIELDS} == scan_totals
