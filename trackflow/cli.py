"""The ``trackflow`` command.

Every command reads one frozen :class:`Settings` (``TRACKFLOW_*`` env, flags win) and
reports bad input as ``trackflow: error: ...`` with exit code 1 (usage errors: 2).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.codec import describe_validation_error
from trackflow.profiles import profile_group
from trackflow.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

T = TypeVar("T")


class Failure(click.ClickException):
    """An operational error: printed as ``trackflow: error: ...``, exit code 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"trackflow: error: {self.format_message()}", err=True)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise Failure(str(exc)) from None


def _run(coro: Coroutine[Any, Any, T], bootstrap: str) -> T:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the error below says it all
    try:
        return asyncio.run(asyncio.wait_for(coro, 60))
    except (KafkaError, TimeoutError, OSError) as exc:
        raise Failure(f"cannot reach Kafka at {bootstrap}: {exc!r}") from None


def _kafka_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--kafka", "kafka_bootstrap", help="Kafka bootstrap servers [TRACKFLOW_KAFKA_BOOTSTRAP]"
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trackflow")
def main() -> None:
    """trackflow: collect behavioural events, process them in stages, store them."""


@main.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="[TRACKFLOW_STATE_DIR]")
@click.option("--gateway-port", type=int, help="[TRACKFLOW_GATEWAY_PORT]")
@click.option("--worker-port", type=int, help="[TRACKFLOW_WORKER_PORT]")
@click.option("--kafka-port", type=int, help="[TRACKFLOW_KAFKA_PORT]")
@click.option("--kafka-controller-port", type=int, help="[TRACKFLOW_KAFKA_CONTROLLER_PORT]")
@click.option("--postgres-port", type=int, help="[TRACKFLOW_POSTGRES_PORT]")
def up(**flags: Any) -> None:
    """Run the whole local stack in the foreground: broker, database, gateway, worker."""
    from trackflow.up import StackFailed, run_stack

    try:
        sys.exit(run_stack(_settings(**flags)))
    except StackFailed as exc:
        raise Failure(str(exc)) from None


@main.command()
@_kafka_option
@click.option("--host", "gateway_host", help="[TRACKFLOW_GATEWAY_HOST]")
@click.option("--port", "gateway_port", type=int, help="[TRACKFLOW_GATEWAY_PORT]")
@click.option(
    "--workers", "gateway_workers", type=int, help="processes [TRACKFLOW_GATEWAY_WORKERS]"
)
@click.option(
    "--inline",
    "gateway_inline",
    is_flag=True,
    default=None,
    help="run every stage in the request and write to PostgreSQL; no Kafka"
    " [TRACKFLOW_GATEWAY_INLINE]",
)
@click.option("--database-url", help="for --inline [TRACKFLOW_DATABASE_URL]")
def gateway(**flags: Any) -> None:
    """Run the HTTP gateway against an existing Kafka (or inline, against PostgreSQL)."""
    import uvicorn

    from trackflow.logs import logging_config

    settings = _settings(**flags)
    common: dict[str, Any] = {
        "host": settings.gateway_host,
        "port": settings.gateway_port,
        "log_level": settings.log_level,
        "access_log": settings.log_level == "debug",
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,  # X-Forwarded-For is read by the gateway, trusted proxies only
        "log_config": logging_config(settings),
    }
    if settings.gateway_workers > 1:
        _prepare_multiprocess_metrics()
        for name, value in flags.items():  # flags reach the worker processes as env
            if value is not None:
                os.environ[f"TRACKFLOW_{name.upper()}"] = str(value)
        uvicorn.run(
            "ingest_gateway.app:kafka_app_from_env",
            factory=True,
            workers=settings.gateway_workers,
            **common,
        )
        return
    from ingest_gateway import inline_app, kafka_app
    from trackflow.logs import configure_logging

    configure_logging(settings)
    app = inline_app(settings) if settings.gateway_inline else kafka_app(settings)
    uvicorn.run(app, **common)


def _prepare_multiprocess_metrics() -> None:
    """Each uvicorn process writes its samples into one fresh folder, merged on scrape."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
        prefix="trackflow-metrics-"
    )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    for stale in Path(folder).glob("*.db"):
        stale.unlink()


@main.command()
@_kafka_option
@click.option("--database-url", help="[TRACKFLOW_DATABASE_URL]")
@click.option("--port", "worker_port", type=int, help="health/metrics port [TRACKFLOW_WORKER_PORT]")
def worker(**flags: Any) -> None:
    """Run the stream processors (Faust worker) against existing Kafka and PostgreSQL."""
    import faust

    from processors.app import create_worker_app

    settings = _settings(**flags)
    from trackflow.logs import logging_config

    app = create_worker_app(settings)
    faust.Worker(
        app,
        loglevel=settings.log_level.upper(),
        logging_config=logging_config(settings),
        quiet=True,
    ).execute_from_commandline()


@main.command()
@click.option("--database-url", help="[TRACKFLOW_DATABASE_URL]")
def migrate(**flags: Any) -> None:
    """Apply pending database migrations."""
    import psycopg

    from processors.migrate import apply_migrations

    settings = _settings(**flags)
    try:
        applied = apply_migrations(settings.dsn())
    except psycopg.Error as exc:
        raise Failure(f"migration failed: {exc}") from None
    for m in applied:
        click.echo(f"applied {m.version:04d}_{m.name}")
    click.echo(f"database schema up to date ({len(applied)} applied now)")


@main.command()
@_kafka_option
@click.option("--partitions", "topic_partitions", type=int, help="[TRACKFLOW_TOPIC_PARTITIONS]")
def topics(**flags: Any) -> None:
    """Create trackflow's Kafka topics (existing ones are left alone)."""
    from trackflow.kafka_admin import ensure_topics

    settings = _settings(**flags)
    created = _run(
        ensure_topics(
            settings.kafka_bootstrap, settings.topic_partitions, settings.topic_replication_factor
        ),
        settings.kafka_bootstrap,
    )
    for name in created:
        click.echo(f"created {name}")
    click.echo(f"topics ready ({len(created)} created now)")


@main.command()
@click.option("--gateway", "gateway_url", help="gateway base URL (default from settings)")
@click.option("--worker", "worker_urls", multiple=True, help="worker base URL; repeat")
@click.option("--interval", default=2.0, show_default=True, help="seconds between scrapes")
def status(gateway_url: str | None, worker_urls: tuple[str, ...], interval: float) -> None:
    """Summarise a running stack: throughput per stage, lag, failures, readiness."""
    import time

    from trackflow.status import Samples, StatusError, render, scrape, summarise

    settings = _settings()
    gateway_url = gateway_url or f"http://{settings.gateway_host}:{settings.gateway_port}"
    workers = worker_urls or (f"http://{settings.worker_host}:{settings.worker_port}",)

    def workers_scrape() -> Samples:
        merged: Samples = {}
        for url in workers:
            for key, value in scrape(url).items():
                merged[key] = merged.get(key, 0.0) + value
        return merged

    try:
        click.echo(f"reading metrics for {interval:.0f}s ...", err=True)
        gw_before, wk_before = scrape(gateway_url), workers_scrape()
        time.sleep(interval)
        gw_after, wk_after = scrape(gateway_url), workers_scrape()
    except StatusError as exc:
        raise Failure(str(exc)) from None
    summary = summarise(gw_before, gw_after, wk_before, wk_after, interval)
    click.echo(render(summary, gateway_url, workers))


@main.group()
def schemas() -> None:
    """JSON Schema files for producing messages straight to Kafka."""


@schemas.command("export")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("schemas/json"),
    show_default=True,
    help="folder to write into",
)
def schemas_export(out: Path) -> None:
    """Write one JSON Schema per topic message."""
    from schemas.export import export_schemas

    for path in export_schemas(out):
        click.echo(f"wrote {path}")


@main.group()
def sources() -> None:
    """Register, list and disable event sources."""


def _source_command(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        from trackflow.sources import SourceCommandError

        try:
            return f(**kwargs)
        except SourceCommandError as exc:
            raise Failure(str(exc)) from None
        except ValidationError as exc:
            raise Failure("invalid source: " + describe_validation_error(exc)) from None

    return _kafka_option(wrapper)


@sources.command("add")
@click.argument("name")
@click.option("--id", "source_id", help="source id (default: a new UUID)")
@click.option("--origin", "origins", multiple=True, help="allowed Origin; repeat; default any")
@click.option("--rate-limit", type=float, help="events per second (429 above); default none")
@click.option(
    "--ip",
    "ip_policy",
    type=click.Choice(["full", "anonymized", "none"]),
    default="anonymized",
    show_default=True,
    help="what is stored of the client IP (after the geo lookup)",
)
@click.option(
    "--disable-enricher",
    "disabled",
    multiple=True,
    help="geo, device, campaign, referrer, language or timezone; repeat",
)
@click.option("--write-key", help="require this key (HTTP Basic user or X-Write-Key header)")
@click.option(
    "--hash-field",
    "hash_fields",
    multiple=True,
    help="properties.* or context.* path stored as a salted SHA-256; repeat",
)
@_source_command
def sources_add(
    name: str,
    source_id: str | None,
    origins: tuple[str, ...],
    rate_limit: float | None,
    ip_policy: str,
    disabled: tuple[str, ...],
    hash_fields: tuple[str, ...],
    write_key: str | None,
    kafka_bootstrap: str | None,
) -> None:
    """Register a new, enabled event source and print its id."""
    from schemas.enrichment import EnrichOptions
    from trackflow.sources import add_source

    bootstrap = _settings(kafka_bootstrap=kafka_bootstrap).kafka_bootstrap
    new_id = source_id or str(uuid.uuid4())
    options = EnrichOptions.model_validate(
        {"ip": ip_policy, "disabled": disabled, "hash_fields": hash_fields}
    )
    source = _run(
        add_source(bootstrap, new_id, name, origins, rate_limit, options, write_key), bootstrap
    )
    click.echo(source.id)


@sources.command("list")
@_source_command
def sources_list(kafka_bootstrap: str | None) -> None:
    """List event sources."""
    from trackflow.sources import list_sources

    bootstrap = _settings(kafka_bootstrap=kafka_bootstrap).kafka_bootstrap
    found = _run(list_sources(bootstrap), bootstrap)
    click.echo(f"{'ID':<38} {'ENABLED':<8} {'NAME':<24} ORIGINS")
    for s in found:
        enabled = "yes" if s.enabled else "no"
        click.echo(f"{s.id:<38} {enabled:<8} {s.name:<24} {','.join(s.allowed_origins)}")


@sources.command("disable")
@click.argument("source_id")
@_source_command
def sources_disable(source_id: str, kafka_bootstrap: str | None) -> None:
    """Disable a source: its events are refused with 403 within seconds."""
    _set_enabled(source_id, False, kafka_bootstrap)


@sources.command("enable")
@click.argument("source_id")
@_source_command
def sources_enable(source_id: str, kafka_bootstrap: str | None) -> None:
    """Enable a disabled source again."""
    _set_enabled(source_id, True, kafka_bootstrap)


def _set_enabled(source_id: str, enabled: bool, kafka_bootstrap: str | None) -> None:
    from trackflow.sources import set_source_enabled

    bootstrap = _settings(kafka_bootstrap=kafka_bootstrap).kafka_bootstrap
    source = _run(set_source_enabled(bootstrap, source_id, enabled), bootstrap)
    click.echo(f"{source.id} {'enabled' if source.enabled else 'disabled'}")


# --------------------------------------------------------------------------------------------
# trackflow failed list | replay
# --------------------------------------------------------------------------------------------


@main.group()
def failed() -> None:
    """List failed events; replay them after a fix."""


def _since_option(f: Callable[..., Any]) -> Callable[..., Any]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
        from trackflow.failed import parse_since

        try:
            return None if value is None else parse_since(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return click.option(
        "--since", callback=parse, help="failed at or after this ISO-8601 time (UTC if no zone)"
    )(f)


def _failed_filters(f: Callable[..., Any]) -> Callable[..., Any]:
    f = _since_option(f)
    f = click.option("--stage", help="only failures of this stage (e.g. store)")(f)
    return click.option("--database-url", help="[TRACKFLOW_DATABASE_URL]")(f)


def _read_failed(dsn: str, query: Any) -> tuple[list[Any], int, bool]:
    """(rows, how many match without the limit, whether failed_events has replayed_at)."""
    import psycopg

    from trackflow.failed import FailedRow

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            marked = _has_replayed_at(conn)
            sql, params = query.select(with_replayed_at=marked)
            rows = [FailedRow.from_db(r) for r in conn.execute(sql, params).fetchall()]
            sql, params = query.count()
            [(total,)] = conn.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        raise Failure(f"cannot read failed events from PostgreSQL: {exc}") from None
    return rows, int(total), marked


def _has_replayed_at(conn: Any) -> bool:
    found = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'failed_events' AND column_name = 'replayed_at'"
    ).fetchone()
    return found is not None


@failed.command("list")
@_failed_filters
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="the newest N"
)
def failed_list(stage: str | None, since: Any, limit: int, database_url: str | None) -> None:
    """List failed events, oldest first: when, where, why."""
    from trackflow.failed import FailedFilter, table

    settings = _settings(database_url=database_url)
    rows, total, _ = _read_failed(settings.dsn(), FailedFilter(stage, since, limit))
    headers = ("ID", "FAILED AT", "STAGE", "TOPIC", "AT", "EVENT ID", "REPLAYED", "REASON")
    click.echo(table(headers, [_list_line(r) for r in rows]))
    click.echo(f"{len(rows)} of {total} failed events shown")


def _list_line(r: Any) -> tuple[object, ...]:
    at = f"{r.partition}@{r.offset}"
    return (r.id, r.failed_at, r.stage, r.topic, at, r.event_id, r.replayed_at, r.reason)


@failed.command("replay")
@_failed_filters
@_kafka_option
@click.option("--dry-run", is_flag=True, help="show what would be replayed; publish nothing")
@click.option(
    "--force",
    is_flag=True,
    help="publish also payloads the running code would refuse again, and ones replayed before",
)
def failed_replay(
    stage: str | None,
    since: Any,
    database_url: str | None,
    kafka_bootstrap: str | None,
    dry_run: bool,
    force: bool,
) -> None:
    """Re-publish failed events to the topic they failed on, for a pipeline fixed since.

    Failures read from an event topic (raw, enriched) are replayed when the running code
    would store their payload. Storing is idempotent by event id, so replaying twice stores
    nothing twice; with a replayed_at column in failed_events, replayed rows are marked and
    skipped later.
    """
    from trackflow.failed import FailedFilter, plan_replay, table

    settings = _settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    query = FailedFilter(stage, since, event_topics_only=True)
    rows, _, marked = _read_failed(settings.dsn(), query)
    decisions = plan_replay(rows, force=force)
    chosen = [d for d in decisions if d.publish]
    if chosen and not dry_run:
        bootstrap = settings.kafka_bootstrap
        _run(_publish_replays(bootstrap, chosen), bootstrap)
        if marked:
            _mark_replayed(settings.dsn(), [d.row.id for d in chosen])
    done = "would replay" if dry_run else "replayed"
    lines = [_replay_line(d, done) for d in decisions]
    click.echo(table(("ID", "TOPIC", "EVENT ID", "KEY", "ACTION"), lines, width=100))
    skipped = len(decisions) - len(chosen)
    prefix = "dry run: " if dry_run else ""
    click.echo(f"{prefix}{done} {len(chosen)}, skipped {skipped}")


def _replay_line(d: Any, done: str) -> tuple[object, ...]:
    key = d.key.decode(errors="replace") if d.key else None
    action = done if d.publish else f"skipped: {d.skip}"
    return (d.row.id, d.topic, d.row.event_id, key, action)


async def _publish_replays(bootstrap: str, decisions: Any) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        pending = [
            await producer.send(
                d.topic,
                key=d.key,
                value=d.value,
                headers=[("trackflow-replay-of", str(d.row.id).encode())],
            )
            for d in decisions
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _mark_replayed(dsn: str, ids: list[int]) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("UPDATE failed_events SET replayed_at = now() WHERE id = ANY(%s)", [ids])
    except psycopg.Error as exc:
        raise Failure(f"replayed, but could not mark the rows as replayed: {exc}") from None


from trackflow.rules import rules  # noqa: E402  (`trackflow rules apply|list|enable|disable`)

main.add_command(rules)


main.add_command(profile_group)  # trackflow profile show ID
