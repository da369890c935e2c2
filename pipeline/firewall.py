"""Keeping a kernel set (nftables or ipset) equal to the blocklist, change by change.

Each sync reads what the kernel holds, and sends the difference in one
transaction: elements to remove, elements to add, and elements whose timeout
differs from the record's ``expires_at`` (a refresh) removed and added again.
The kernel's own timeouts drop an element when its lease ends, even if l4s is
gone by then.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline import log
from pipeline.config import BlocklistSettings
from pipeline.errors import L4sError
from pipeline.exporters import (
    ipset_names,
    nft_elements,
    nft_set_declarations,
    set_names,
    split_families,
)

_log = log.get("firewall")
#: Seconds an element's remaining timeout may differ from its record before it
#: is re-added (the kernel counts down between syncs).
TOLERANCE = 5
_ATTEMPTS = 3


class FirewallError(L4sError):
    """The firewall command failed; the follower retries on its next sync."""


@dataclass(frozen=True, slots=True)
class Change:
    """What one sync did."""

    added: int = 0
    removed: int = 0
    refreshed: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.refreshed)


class Applier(Protocol):
    """Makes a kernel set hold exactly ``elements`` with their timeouts."""

    target: str

    def sync(self, elements: Sequence[tuple[str, int]]) -> Change: ...

    def current(self) -> dict[str, int]: ...


def _canonical(text: str) -> str:
    net = ipaddress.ip_network(text, strict=False)
    full = net.prefixlen == net.max_prefixlen
    return str(net.network_address) if full else str(net)


def diff(
    current: dict[str, int], desired: Sequence[tuple[str, int]]
) -> tuple[list[str], list[tuple[str, int]], int]:
    """``(remove, add, refreshed)``: a refreshed element is both removed and added."""
    wanted = {_canonical(a): s for a, s in desired}
    remove = [e for e in current if e not in wanted]
    add = []
    refreshed = 0
    for element, seconds in wanted.items():
        have = current.get(element)
        if have is None:
            add.append((element, seconds))
        elif abs(have - seconds) > TOLERANCE:
            remove.append(element)
            add.append((element, seconds))
            refreshed += 1

    return remove, add, refreshed


class _Runner:
    def __init__(self, command: str) -> None:
        self.command = shlex.split(command)

    def run(
        self, args: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(  # noqa: S603 - the operator's own command, no shell
                [*self.command, *args],
                input=stdin,
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
        except FileNotFoundError:
            raise FirewallError(
                f"{self.command[0]} not found; install it (Debian: apt-get install "
                f"{'nftables' if 'nft' in self.command[-1] else 'ipset'})"
            ) from None


class NftApplier:
    """Syncs two nftables sets (IPv4, IPv6) with ``flags interval, timeout``.

    Args:
        command: how to run nft, e.g. ``nft`` or ``ip netns exec fw nft``.

    Example:
        >>> applier = NftApplier(BlocklistSettings())
        >>> applier.sync([("198.51.100.7", 3600)])  # doctest: +SKIP
        Change(added=1, removed=0, refreshed=0)
    """

    target = "nftables"

    def __init__(
        self, settings: BlocklistSettings, command: str = "nft", egress: bool = False
    ) -> None:
        self.settings = settings
        self.egress = egress
        self.runner = _Runner(command)
        self.names = set_names(settings, egress)

    def current(self) -> dict[str, int]:
        """Element → seconds left, of both sets (empty when they do not exist)."""
        out: dict[str, int] = {}
        for name in self.names:
            result = self.runner.run(
                ["-j", "list", "set", "inet", self.settings.nft_table, name]
            )
            if result.returncode != 0:
                continue
            for item in json.loads(result.stdout).get("nftables", []):
                for elem in item.get("set", {}).get("elem", []):
                    element, left = _nft_element(elem)
                    out[element] = left

        return out

    def sync(self, elements: Sequence[tuple[str, int]]) -> Change:
        last = ""
        for _ in range(_ATTEMPTS):
            remove, add, refreshed = diff(self.current(), elements)
            script = self._script(remove, add)
            result = self.runner.run(["-f", "-"], stdin=script)
            if result.returncode == 0:
                return Change(len(add) - refreshed, len(remove) - refreshed, refreshed)
            # An element may have timed out between listing and deleting it.
            last = (
                result.stderr.strip().splitlines()[0]
                if result.stderr.strip()
                else "failed"
            )
        raise FirewallError(f"nft refused the update: {last}")

    def _script(self, remove: list[str], add: list[tuple[str, int]]) -> str:
        table = self.settings.nft_table
        lines = nft_set_declarations(self.settings, self.egress)
        for name, gone in zip(
            self.names, split_families([(r, 0) for r in remove]), strict=True
        ):
            if gone:
                elements = ", ".join(address for address, _ in gone)
                lines.append(f"delete element inet {table} {name} {{ {elements} }}")
        for name, new in zip(self.names, split_families(add), strict=True):
            if new:
                lines.append(
                    f"add element inet {table} {name} {{ {nft_elements(new)} }}"
                )

        return "\n".join(lines) + "\n"


def _nft_element(elem: Any) -> tuple[str, int]:
    body = elem.get("elem", elem) if isinstance(elem, dict) else elem
    value = body.get("val", body) if isinstance(body, dict) else body
    left = int(body.get("expires", 0)) if isinstance(body, dict) else 0
    if isinstance(value, dict) and "prefix" in value:
        value = f"{value['prefix']['addr']}/{value['prefix']['len']}"

    return _canonical(str(value)), left


class IpsetApplier:
    """Syncs two ipsets (``hash:net``, IPv4 and IPv6) with per-element timeouts.

    Args:
        command: how to run ipset, e.g. ``ipset`` or ``ip netns exec fw ipset``.
    """

    target = "ipset"

    def __init__(
        self, settings: BlocklistSettings, command: str = "ipset", egress: bool = False
    ) -> None:
        self.runner = _Runner(command)
        self.names = ipset_names(settings, egress)

    def current(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in self.names:
            result = self.runner.run(["list", name, "-output", "save"])
            if result.returncode != 0:
                continue
            for line in result.stdout.splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "add":
                    left = (
                        int(parts[parts.index("timeout") + 1])
                        if "timeout" in parts
                        else 0
                    )
                    out[_canonical(parts[2])] = left

        return out

    def sync(self, elements: Sequence[tuple[str, int]]) -> Change:
        current = self.current()
        remove, add, refreshed = diff(current, elements)
        lines = []
        for name, family in zip(self.names, ("inet", "inet6"), strict=True):
            lines.append(f"create {name} hash:net family {family} timeout 0 -exist")
        for name, gone in zip(
            self.names, split_families([(r, 0) for r in remove]), strict=True
        ):
            lines += [f"del {name} {address} -exist" for address, _ in gone]
        for name, new in zip(self.names, split_families(add), strict=True):
            # -exist on add replaces the timeout of an element already there.
            lines += [
                f"add {name} {address} timeout {seconds} -exist"
                for address, seconds in new
            ]
        result = self.runner.run(["restore"], stdin="\n".join(lines) + "\n")
        if result.returncode != 0:
            raise FirewallError(
                f"ipset refused the update: {result.stderr.strip()[:200]}"
            )

        return Change(len(add) - refreshed, len(remove) - refreshed, refreshed)


def applier(
    kind: str, settings: BlocklistSettings, command: str | None, egress: bool
) -> Applier:
    """The applier for ``nftables`` or ``ipset``."""
    if kind == "nftables":
        return NftApplier(settings, command or "nft", egress)
    if kind == "ipset":
        return IpsetApplier(settings, command or "ipset", egress)
    raise FirewallError(f"--apply works with --format nftables or ipset, not {kind}")
