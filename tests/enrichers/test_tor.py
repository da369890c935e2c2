"""Tor exit lists in the three public formats."""

from __future__ import annotations

import calendar
import os
import shutil
import time
from pathlib import Path

import pytest

from enrichers.tor import TorExitList
from pipeline.errors import DataFileError

DATA = Path(__file__).resolve().parents[1] / "data" / "tor"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("bulk.txt", "bulk"),
        ("exit-addresses.txt", "exit-addresses"),
        ("onionoo-details.json", "onionoo"),
    ],
)
def test_each_format_yields_ipv4_and_ipv6_exits(name: str, fmt: str) -> None:
    exits = TorExitList.from_file(DATA / name)

    assert exits.format == fmt
    assert "192.0.2.10" in exits
    assert "198.51.100.20" in exits
    assert "2001:db8::abcd" in exits
    assert "2001:DB8:0:0::ABCD" in exits  # any spelling of the same address
    assert "::ffff:192.0.2.10" in exits
    assert "203.0.113.50" not in exits


def test_onionoo_counts_exit_flagged_or_addresses_and_exit_addresses_only() -> None:
    exits = TorExitList.from_file(DATA / "onionoo-details.json")

    assert "203.0.113.99" not in exits  # OR address of a relay without the Exit flag
    assert len(exits) == 3


def test_published_date_sets_the_age() -> None:
    exits = TorExitList.from_file(DATA / "exit-addresses.txt")
    published = calendar.timegm((2021, 12, 14, 10, 30, 2, 0, 0, 0))

    assert exits.age_seconds() == pytest.approx(time.time() - published, abs=5)


def test_bulk_list_age_comes_from_the_file_time(tmp_path: Path) -> None:
    path = tmp_path / "exits.txt"
    shutil.copyfile(DATA / "bulk.txt", path)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))

    assert TorExitList.from_file(path).age_seconds() == pytest.approx(3600, abs=5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no exit address"),
        (b"<html><body>Service unavailable</body></html>", "HTML page"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b'{"relays": 3}', "Onionoo"),
        (b"{not json", "not valid JSON"),
        (b"\n".join(b"word%d" % i for i in range(20)), "not a bulk exit list"),
    ],
)
def test_bad_list_is_one_clear_data_file_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "exits.txt"
    path.write_bytes(content)

    with pytest.raises(DataFileError, match=message):
        TorExitList.from_file(path)


def test_missing_list_is_a_data_file_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="does not exist"):
        TorExitList.from_file(tmp_path / "none.txt")


def test_replaced_list_is_swapped_whole(tmp_path: Path) -> None:
    path = tmp_path / "exits.txt"
    path.write_text("192.0.2.1\n")
    exits = TorExitList.from_file(path)
    assert exits.reload_if_changed() is False

    staged = tmp_path / "exits.new"
    staged.write_text("192.0.2.2\n192.0.2.3\n")
    os.replace(staged, path)

    assert exits.reload_if_changed() is True
    assert "192.0.2.1" not in exits
    assert "192.0.2.3" in exits


def test_broken_replacement_keeps_the_last_good_list(tmp_path: Path) -> None:
    path = tmp_path / "exits.txt"
    path.write_text("192.0.2.1\n")
    exits = TorExitList.from_file(path)
    staged = tmp_path / "exits.new"
    staged.write_text("<html>error</html>")
    os.replace(staged, path)

    assert exits.reload_if_changed() is False
    assert "192.0.2.1" in exits


def test_non_string_is_never_a_member() -> None:
    exits = TorExitList.from_file(DATA / "bulk.txt")

    assert 42 not in exits
    assert "not-an-ip" not in exits
