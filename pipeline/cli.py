"""The ``l4s`` command line."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import msgspec
from prometheus_client import CollectorRegistry
from rich.console import Console

from pipeline import __version__, config, log
from pipeline.config import Settings
from pipeline.errors import ConfigError, L4sError, PoisonRecord, ServiceUnavailable
from pipeline.metrics import Metrics, serve

_DAY = click.DateTime(formats=["%Y-%m-%d"])
_FILE = click.Path(dir_okay=False, path_type=Path)


def _override(settings: Settings, **changes: Any) -> Settings:
    """A copy of ``settings`` with ``section__name=value`` changes that are not None."""
    sections: dict[str, dict[str, Any]] = {}
    for dotted, value in changes.items():
        if value is None:
            continue
        section, _, name = dotted.partition("__")
        if name:
            sections.setdefault(section, {})[name] = value
        else:
            sections.setdefault("", {})[section] = value
    updated = settings.model_copy(update=sections.pop("", {}))
    for section, values in sections.items():
        current = getattr(updated, section)
        updated = updated.model_copy(update={section: current.model_copy(update=values)})
    return updated


def _metrics(settings: Settings, port: int | None) -> Metrics:
    metrics = Metrics(CollectorRegistry())
    port = port if port is not None else settings.metrics_port
    try:
        serve(metrics, port)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror}") from None
    return metrics


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=_FILE, help="TOML settings file (or $L4S_CONFIG).")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto")
@click.version_option(__version__, prog_name="l4s")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_level: str, log_format: str) -> None:
    """Find Log4Shell exploitation in HTTP logs, rate the attackers, feed firewalls."""
    log.configure(log_level, log_format)
    ctx.obj = config.load(config_path)


@cli.group()
def topics() -> None:
    """Manage the Kafka topics l4s uses."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(1, 1000), help="Partitions per topic.")
@click.pass_obj
def topics_create(settings: Settings, partitions: int | None) -> None:
    """Create the input, detections, events, blocklist and dead-letter topics."""
    from pipeline.kafka_io import create_topics

    settings = _override(settings, kafka__partitions=partitions)
    for name, state in create_topics(settings):
        click.echo(f"{name}\t{state}")


@cli.command()
@click.option("--yes", is_flag=True, help="Confirm: this deletes data.")
@click.pass_obj
def reset(settings: Settings, yes: bool) -> None:
    """Delete l4s's topics, consumer groups and Redis keys (under the configured names)."""
    from pipeline.kafka_io import delete_everything
    from pipeline.store import RedisStore

    if not yes:
        raise click.UsageError("reset deletes topics and counters; add --yes to confirm")
    store = RedisStore.connect(settings.redis.url, settings.redis.prefix)
    deleted = delete_everything(settings, [settings.detect.group, settings.enrich.app_id])
    keys = store.clear()
    click.echo(f"deleted {len(deleted)} topics/groups and {keys} Redis keys", err=True)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Records per second at most.")
@click.option("--format", "fmt", help="Format name sent in the l4s-format header.")
@click.option("--topic", help="Topic to produce to (default: the input topic).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.pass_obj
def replay(settings: Settings, files: tuple[str, ...], rate: float | None, fmt: str | None, topic: str | None, progress: bool | None) -> None:
    """Produce log records from FILES (plain or gzip; - for stdin) into Kafka."""
    from pipeline.formats import FormatRouter
    from pipeline.kafka_io import MAX_INPUT_RECORD_BYTES
    from pipeline.replay import replay as run

    if fmt is not None:
        try:
            FormatRouter.from_settings(settings.formats).parser(fmt)
        except PoisonRecord:
            raise click.BadParameter(f"unknown format {fmt!r}", param_hint="--format") from None
    result = run(files, settings, rate=rate, fmt=fmt, topic=topic, progress=progress)
    click.echo(f"replayed {result.records} records from {result.files} file(s)", err=True)
    if result.oversize:
        click.echo(
            f"not sent: {result.oversize} record(s) over the input topic's limit of "
            f"{MAX_INPUT_RECORD_BYTES} bytes (first at {result.first_oversize})",
            err=True,
        )


_IDLE = click.option(
    "--stop-when-idle",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Exit cleanly once the input has been idle this long.",
)
_METRICS = click.option("--metrics-port", type=click.IntRange(0, 65535), help="Serve /metrics on this port.")
_ENRICH_FILES = [
    click.option("--geoip-db", type=_FILE, help="MaxMind-format country or city database."),
    click.option("--asn-db", type=_FILE, help="MaxMind-format ASN database."),
    click.option("--tor-exits", type=_FILE, help="Tor exit list (bulk, exit-addresses or Onionoo)."),
]


def _enrich_files(func: Any) -> Any:
    for option in reversed(_ENRICH_FILES):
        func = option(func)
    return func


@cli.command()
@_IDLE
@_METRICS
@click.option("--batch-size", type=click.IntRange(1, 100_000), help="Records per consume call.")
@click.option("--format", "fmt", help="Log format of the input (default: auto).")
@click.pass_obj
def detect(settings: Settings, stop_when_idle: float | None, metrics_port: int | None, batch_size: int | None, fmt: str | None) -> None:
    """Run the detect worker: raw logs in, detections and dead letters out."""
    from pipeline.detect_worker import DetectWorker

    settings = _override(settings, detect__batch_size=batch_size, formats__default=fmt)
    worker = DetectWorker(settings, _metrics(settings, metrics_port), stop_when_idle)
    sys.exit(worker.run())


@cli.command()
@_IDLE
@_METRICS
@_enrich_files
@click.pass_obj
def enrich(settings: Settings, stop_when_idle: float | None, metrics_port: int | None, geoip_db: Path | None, asn_db: Path | None, tor_exits: Path | None) -> None:
    """Run the enrich worker: detections in; Redis, events and blocklist out."""
    from pipeline.enrich_app import EnrichWorker
    from pipeline.enrich_stage import EnrichStage
    from pipeline.kafka_io import check_broker
    from pipeline.store import RedisStore

    settings = _override(settings, enrich__geoip_db=geoip_db, enrich__asn_db=asn_db, enrich__tor_exits=tor_exits)
    stage = EnrichStage.from_settings(settings)
    check_broker(settings)
    store = RedisStore.connect(settings.redis.url, settings.redis.prefix, settings.redis.dedup_days)
    worker = EnrichWorker(settings, stage, store, _metrics(settings, metrics_port), stop_when_idle)
    sys.exit(worker.run())


def _report_output(report: Any, as_json: bool, html_out: Path | None = None) -> None:
    from pipeline import report as reports

    if html_out is not None:
        from pipeline.report_html import write_html

        try:
            write_html(report, html_out)
        except OSError as exc:
            raise click.FileError(str(html_out), hint=exc.strerror) from None
        click.echo(f"wrote the HTML report to {html_out}", err=True)
    if as_json:
        click.echo(reports.to_json(report))
    elif html_out is None:
        reports.render(report, Console())


def _writable(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """Refuse an output path that cannot be written, before the work starts."""
    if value is not None:
        parent = value.parent if str(value.parent) else Path(".")
        if not parent.is_dir():
            raise click.BadParameter(f"{value}: directory {parent} does not exist", ctx, param)
        if not os.access(parent, os.W_OK) or (value.exists() and not os.access(value, os.W_OK)):
            raise click.BadParameter(f"{value} cannot be written", ctx, param)
    return value


_HTML = click.option(
    "--html",
    "html_out",
    type=_FILE,
    callback=_writable,
    help="Write the report as one self-contained HTML page with charts.",
)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--from", "first", type=_DAY, help="First day (YYYY-MM-DD, event time).")
@click.option("--to", "last", type=_DAY, help="Last day (YYYY-MM-DD, event time).")
@_HTML
@click.pass_obj
def report(settings: Settings, as_json: bool, first: datetime | None, last: datetime | None, html_out: Path | None) -> None:
    """Print the attack analysis from Redis."""
    from pipeline import report as reports
    from pipeline.store import RedisStore

    days = _day_range(first, last)
    store = RedisStore.connect(settings.redis.url, settings.redis.prefix)
    _report_output(reports.build(store, *days), as_json, html_out)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--from", "first", type=_DAY, help="First day of the report.")
@click.option("--to", "last", type=_DAY, help="Last day of the report.")
@click.option("--blocklist", "blocklist_out", type=_FILE, callback=_writable, help="Also write the blocklist as JSON lines here.")
@click.option("--format", "fmt", help="Log format of the input (default: auto).")
@_HTML
@_enrich_files
@click.pass_obj
def scan(settings: Settings, files: tuple[str, ...], as_json: bool, first: datetime | None, last: datetime | None, blocklist_out: Path | None, fmt: str | None, html_out: Path | None, geoip_db: Path | None, asn_db: Path | None, tor_exits: Path | None) -> None:
    """Run every stage in this process over FILES (no Kafka, no Redis)."""
    from pipeline import report as reports
    from pipeline.scan import scan as run

    days = _day_range(first, last)
    settings = _override(settings, formats__default=fmt, enrich__geoip_db=geoip_db, enrich__asn_db=asn_db, enrich__tor_exits=tor_exits)
    result = run(files, settings, fmt=fmt)
    built = reports.build(result.store, *days)
    _report_output(built, as_json, html_out)
    if blocklist_out is not None:
        with blocklist_out.open("w") as out:
            for entry in sorted(result.blocklist.values(), key=lambda e: e.address):
                out.write(msgspec.json.encode(entry).decode() + "\n")


@cli.command()
@click.argument("values", nargs=-1)
@click.option("--json-input", is_flag=True, help='Each stdin line is {"value": ..., "field": ...}.')
@click.option("--field", default="value", show_default=True, help="Field name to report.")
def inspect(values: tuple[str, ...], json_input: bool, field: str) -> None:
    """Show what Log4j would make of each VALUE (or each stdin line)."""
    from pipeline.inspect import inputs, verdict_json

    for value, name in inputs(values, json_input, field, sys.stdin):
        click.echo(verdict_json(value, name))


def _register_groups() -> None:
    from pipeline.cli_blocklist import blocklist_group
    from pipeline.cli_data import data_group

    cli.add_command(data_group)
    cli.add_command(blocklist_group)


_register_groups()


def _date(value: datetime | None) -> Any:
    return value.date() if value is not None else None


def _day_range(first: datetime | None, last: datetime | None) -> tuple[Any, Any]:
    if first is not None and last is not None and first > last:
        raise click.BadParameter(
            f"--from {first:%Y-%m-%d} is after --to {last:%Y-%m-%d}", param_hint="--from/--to"
        )
    return _date(first), _date(last)


def main() -> None:
    """Entry point: every failure becomes one line on stderr and an exit status."""
    try:
        cli.main(standalone_mode=False, prog_name="l4s")
    except click.exceptions.Abort:
        click.echo("l4s: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        path = exc.ctx.command_path.split(" ", 1) if exc.ctx is not None else []
        command = f" {path[1]}" if len(path) > 1 else ""
        click.echo(f"l4s: error: {exc.format_message()} (see: l4s{command} --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"l4s: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"l4s: error: {exc}", err=True)
        sys.exit(2)
    except ServiceUnavailable as exc:
        click.echo(f"l4s: error: {exc}", err=True)
        sys.exit(3)
    except L4sError as exc:
        click.echo(f"l4s: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (l4s report | head): not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except OSError as exc:
        # Writing the output failed (a full disk, /dev/full), or a file vanished.
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"l4s: error: {exc.strerror or exc}{where}", err=True)
        sys.exit(1)
    except Exception as exc:
        # A bug of ours: one line for the operator, the traceback for a report.
        log.get("cli").debug("unexpected_error", exc_info=True)
        click.echo(
            f"l4s: internal error: {type(exc).__name__}: {str(exc)[:200]} "
            "(run with --log-level debug for the traceback)",
            err=True,
        )
        sys.exit(70)
