"""``l4s blocklist``: export, follow and serve the blocklist and egress topics."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click
from prometheus_client import CollectorRegistry

from pipeline import log
from pipeline.blocklist import LEVELS, BlocklistEntry
from pipeline.config import Settings
from pipeline.egress import EgressEntry
from pipeline.errors import ConfigError, L4sError
from pipeline.exporters import EXPORTERS, Listing
from pipeline.firewall import Applier
from pipeline.metrics import Metrics

_log = log.get("blocklist")
_FORMAT = click.Choice(sorted(EXPORTERS))
_LEVEL = click.Choice(list(LEVELS))


@click.group("blocklist")
def blocklist_group() -> None:
    """Read the blocklist (and egress) topics: export, follow, serve."""


def _listing(
    settings: Settings,
    entries: list[BlocklistEntry],
    egress: list[EgressEntry],
    egress_only: bool,
    min_level: str | None,
    now: float,
) -> Listing:
    return Listing(entries, egress, settings.blocklist, now, egress_only, min_level)


@blocklist_group.command("export")
@click.option("--format", "fmt", type=_FORMAT, default="plain", show_default=True)
@click.option(
    "--egress", is_flag=True, help="Export callback hosts (the egress topic) instead."
)
@click.option(
    "--min-level", type=_LEVEL, help="Firewall formats: only this level and above."
)
@click.pass_obj
def export(settings: Settings, fmt: str, egress: bool, min_level: str | None) -> None:
    """Read the topic to its end and print the current list once.

    plain, nftables and ipset hold what a firewall should block (no dry-run or
    tag entries; addresses inside a blocked prefix left out); json, csv and stix
    hold every live entry. stix always has both sources and callback hosts.
    """
    from pipeline.follower import Follower

    now = time.time()
    entries: list[BlocklistEntry] = []
    hosts: list[EgressEntry] = []
    if not egress or fmt == "stix":
        sources = Follower(settings, settings.topics.blocklist, BlocklistEntry)
        try:
            sources.catch_up()
        finally:
            sources.close()
        entries = sources.view.live(now)
    if egress or fmt == "stix":
        callbacks = Follower(settings, settings.topics.egress, EgressEntry)
        try:
            callbacks.catch_up()
        finally:
            callbacks.close()
        hosts = callbacks.view.live(now)
    listing = _listing(settings, entries, hosts, egress, min_level, now)
    click.echo(EXPORTERS[fmt](listing), nl=False)
    for note in listing.notes:
        click.echo(f"l4s: {note}", err=True)


class _Stop:
    """Set by SIGTERM/SIGINT so the loop finishes its current step and exits."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a complete new file: readers see the old or the new one."""
    directory = path.parent if str(path.parent) else Path()
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@blocklist_group.command("follow")
@click.option("--format", "fmt", type=_FORMAT, default="plain", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to keep in sync (rewritten atomically on change).",
)
@click.option(
    "--apply",
    "apply_",
    is_flag=True,
    help="Apply changes to the kernel with nft or ipset (--format nftables|ipset).",
)
@click.option(
    "--command", "command", help="How to run nft/ipset, e.g. 'ip netns exec fw nft'."
)
@click.option(
    "--egress", is_flag=True, help="Follow callback hosts (the egress topic) instead."
)
@click.option("--min-level", type=_LEVEL, help="Only this level and above.")
@click.option(
    "--reconcile",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="With --apply: re-check the kernel set this often.",
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics on this port."
)
@click.pass_obj
def follow(
    settings: Settings,
    fmt: str,
    output: Path | None,
    apply_: bool,
    command: str | None,
    egress: bool,
    min_level: str | None,
    reconcile: float,
    metrics_port: int | None,
) -> None:
    """Keep a local copy of the list in sync with the topic until stopped.

    Starts from the beginning of the compacted topic (a restart rebuilds the
    list), writes or applies only once caught up, then follows changes, lease
    expiries and tombstones as they come.
    """
    from pipeline.cli import _metrics
    from pipeline.firewall import FirewallError, applier
    from pipeline.follower import Follower

    if apply_ == (output is not None):
        raise click.UsageError("give either --output FILE or --apply")
    kind: type[BlocklistEntry] | type[EgressEntry] = (
        EgressEntry if egress else BlocklistEntry
    )
    topic = settings.topics.egress if egress else settings.topics.blocklist
    target = applier(fmt, settings.blocklist, command, egress) if apply_ else None
    metrics = _metrics(settings, metrics_port)
    follower: Follower[Any] = Follower(settings, topic, kind, must_exist=True)
    stop = _Stop()
    label = "egress" if egress else "blocklist"
    try:
        follower.catch_up()
        metrics.follower_caught_up.set(1)
        _log.info("follower_caught_up", topic=topic, entries=len(follower.view.entries))
        signature: object = None
        last_apply = 0.0
        while not stop.event.is_set():
            now = time.time()
            live = follower.view.live(now)
            metrics.follower_entries.labels(list=label).set(len(live))
            current = tuple((_key(e), e.expires_at, e.content()) for e in live)
            due = current != signature or (
                target is not None and now - last_apply >= reconcile
            )
            if due:
                entries = [e for e in live if isinstance(e, BlocklistEntry)]
                hosts = [e for e in live if isinstance(e, EgressEntry)]
                listing = _listing(settings, entries, hosts, egress, min_level, now)
                try:
                    _deliver(listing, fmt, output, target, metrics)
                    signature, last_apply = current, now
                except FirewallError as exc:
                    metrics.follower_applies.labels(target=fmt, result="error").inc()
                    _log.error("follower_apply_failed", error=str(exc))
                    last_apply = now
            # Wake up for the next lease that ends by itself, at the latest.
            wake = follower.view.next_expiry(now)
            timeout = 1.0 if wake is None else max(0.05, min(1.0, wake - now + 0.01))
            follower.poll(timeout)
    finally:
        follower.close()
        _log.info("follower_stopped", topic=topic)


def _key(entry: BlocklistEntry | EgressEntry) -> str:
    return entry.address if isinstance(entry, BlocklistEntry) else entry.host


def _deliver(
    listing: Listing,
    fmt: str,
    output: Path | None,
    target: Applier | None,
    metrics: Metrics,
) -> None:
    if output is not None:
        write_atomically(output, EXPORTERS[fmt](listing))
        metrics.follower_applies.labels(target="file", result="ok").inc()
        _log.info(
            "follower_file_written",
            path=str(output),
            entries=len(listing.entries) + len(listing.egress),
        )
        return
    assert target is not None
    change = target.sync(listing.firewall())
    metrics.follower_applies.labels(target=fmt, result="ok").inc()
    if not change.empty:
        _log.info(
            "follower_applied",
            target=fmt,
            added=change.added,
            removed=change.removed,
            refreshed=change.refreshed,
        )


@blocklist_group.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.pass_obj
def serve(settings: Settings, host: str, port: int) -> None:
    """Serve the list as plain text for firewalls that poll (ETag, health, metrics)."""
    from pipeline.feed import Feed, Snapshot, make_server
    from pipeline.follower import Follower

    metrics = Metrics(CollectorRegistry())
    feed = Feed(metrics)
    try:
        server = make_server(feed, host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = _Stop()
    failure: list[BaseException] = []

    def run() -> None:
        sources = Follower(settings, settings.topics.blocklist, BlocklistEntry)
        hosts = Follower(settings, settings.topics.egress, EgressEntry)
        try:
            sources.catch_up()
            hosts.catch_up()
            metrics.follower_caught_up.set(1)
            while not stop.event.is_set():
                now = time.time()
                feed.update(
                    Snapshot(
                        tuple(sources.view.live(now)),
                        tuple(hosts.view.live(now)),
                        True,
                        now,
                    )
                )
                metrics.follower_entries.labels(list="blocklist").set(
                    len(sources.view.entries)
                )
                metrics.follower_entries.labels(list="egress").set(
                    len(hosts.view.entries)
                )
                sources.poll(0.5)
                hosts.poll(0.1)
        except Exception as exc:
            # The thread's end must reach the main thread: the feed stops rather
            # than serve a list that no longer follows the topic.
            failure.append(exc)
            _log.error("feed_follower_failed", error=str(exc))
        finally:
            sources.close()
            hosts.close()
            server.shutdown()

    thread = threading.Thread(target=run, name="l4s-feed-follower", daemon=True)
    thread.start()

    def shut_down_on_signal() -> None:
        stop.event.wait()
        server.shutdown()

    threading.Thread(target=shut_down_on_signal, daemon=True).start()
    _log.info("feed_serving", host=host, port=server.server_address[1])
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    stop.event.set()
    thread.join(timeout=10)
    if failure:
        error = failure[0]
        raise (
            error
            if isinstance(error, L4sError)
            else L4sError(f"follower failed: {error}")
        )
