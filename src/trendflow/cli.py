"""The `trendflow` command. Thin: each command calls the same service functions as the API."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from trendflow.config import Settings, load_settings
from trendflow.errors import ConfigError, TrendflowError
from trendflow.logs import configure_logging

app = typer.Typer(
    help="trendflow: ingest, enrich, store, embed and rank social-media trend events.", no_args_is_help=True
)
worker_app = typer.Typer(help="Run one worker role in this process.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
spool_app = typer.Typer(help="The fallback spool used while Redis is unreachable.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys issued at run time.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
app.add_typer(dlq_app, name="dlq")
app.add_typer(spool_app, name="spool")
app.add_typer(keys_app, name="keys")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
MetricsPort = Annotated[
    int | None,
    typer.Option("--metrics-port", min=1, max=65535, help="serve /metrics on this port (default: off)"),
]


def handles_errors(func: F) -> F:
    """The one error handler: trendflow's exceptions become a clean message and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[red]configuration error:[/red] {exc}")
            raise typer.Exit(2) from None
        except TrendflowError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    loaded = load_settings()
    configure_logging(loaded.log_level)
    return loaded


# -- processes ----------------------------------------------------------------------------------------------


@app.command()
@handles_errors
def up() -> None:
    """API + ETL + embed + monitor in one process tree, on the embedded engines when no URLs are set."""
    from trendflow.processes import ProcessTree, multiprocess_metrics_env
    from trendflow.runtime import prepare_database

    config = settings()
    prepare_database(config)  # start (or join) the engines and migrate once, before the children race to
    tree = ProcessTree(env=multiprocess_metrics_env(config.data_dir))
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    tree.start()
    console.print(
        f"trendflow is up: API on http://{config.api_host}:{config.api_port} (Ctrl-C stops everything)"
    )
    while not stopping:
        time.sleep(0.5)
        tree.restart_dead()
    console.print("stopping: each process finishes its batch in hand")
    tree.stop()


@app.command()
@handles_errors
def api() -> None:
    """The HTTP API alone (run as many as you like against the same engines)."""
    import uvicorn

    from trendflow.api.app import create_app

    config = settings()
    uvicorn.run(create_app(config), host=config.api_host, port=config.api_port, log_level="warning")


@worker_app.command("etl")
@handles_errors
def worker_etl(metrics_port: MetricsPort = None) -> None:
    """Consumer group `etl`: normalize, enrich, upsert, publish embed jobs."""
    from trendflow.workers.run import run_worker

    run_worker("etl", settings(), metrics_port=metrics_port)


@worker_app.command("embed")
@handles_errors
def worker_embed(metrics_port: MetricsPort = None) -> None:
    """Consumer group `embedder`: embed stored trends with all-MiniLM-L6-v2."""
    from trendflow.workers.run import run_worker

    run_worker("embed", settings(), metrics_port=metrics_port)


@worker_app.command("monitor")
@handles_errors
def worker_monitor(metrics_port: MetricsPort = None) -> None:
    """Replay the spool, remove dead consumers, watch lag."""
    from trendflow.workers.run import run_worker

    run_worker("monitor", settings(), metrics_port=metrics_port)


@app.command()
@handles_errors
def migrate() -> None:
    """Apply database migrations (every process also does this on start)."""
    from trendflow.config import redact_url
    from trendflow.db.migrate import head_revision
    from trendflow.runtime import prepare_database

    endpoints = prepare_database(settings())
    console.print(f"schema at revision {head_revision()} on {redact_url(endpoints.database_url)}")


@app.command("import")
@handles_errors
def import_file(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, a JSON array, or CSV")
    ],
    source: Annotated[str | None, typer.Option(help="source for events that name none")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Send a file's events into the pipeline, through the same checks as the API."""
    from trendflow.importer import import_events

    summary = asyncio.run(
        import_events(settings(), file, default_source=source, batch_size=batch_size, console=console)
    )
    summary.print(console)
    if summary.accepted == 0 and summary.rejected:
        raise typer.Exit(1)


@app.command()
@handles_errors
def demo() -> None:
    """Run the whole pipeline over the bundled sample, show what is trending and one search, then stop."""
    from trendflow.demo import run_demo

    run_demo(settings(), console)


@app.command()
@handles_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="refresh every 2 s until Ctrl-C")] = False,
) -> None:
    """Stream lengths, lag and pending per group, consumers, dead letters, spool, embedding backlog."""
    from trendflow.ops_cli import print_status, read_status, watch_status

    if watch:
        asyncio.run(watch_status(settings(), console))
        return
    report = asyncio.run(read_status(settings()))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_status(report, console)


@app.command()
@handles_errors
def search(
    query: Annotated[str, typer.Argument(help="what to look for, in plain words")],
    k: Annotated[int, typer.Option(min=1, max=100, help="how many trends to show")] = 10,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    topic: Annotated[str | None, typer.Option(help="only trends with this topic")] = None,
    since: Annotated[str | None, typer.Option(help="event time from (ISO 8601, naive means UTC)")] = None,
    until: Annotated[str | None, typer.Option(help="event time before (ISO 8601, naive means UTC)")] = None,
    sentiment: Annotated[str | None, typer.Option(help="negative, neutral or positive")] = None,
) -> None:
    """Semantic search from a terminal: the stored trends nearest in meaning to QUERY."""
    from trendflow.search import run_search, terminal_filters
    from trendflow.tables import search_table

    filters = terminal_filters(source, topic, since, until, sentiment)
    rows = asyncio.run(run_search(settings(), query, k, filters))
    if not rows:
        console.print("no stored trend matches (are events embedded yet? see `trendflow status`)")
        return
    console.print(search_table(query, rows))


@app.command()
@handles_errors
def trending(
    window: Annotated[str, typer.Option(help="15m, 1h, 6h, 24h: any multiple of 5m up to 7d")] = "1h",
    limit: Annotated[int, typer.Option(min=1, max=100, help="how many topics to show")] = 10,
    source: Annotated[str | None, typer.Option(help="only this source")] = None,
    at: Annotated[str | None, typer.Option(help="window end, ISO 8601 (naive = UTC); default now")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
) -> None:
    """What is trending: topics whose volume in the window stands out against the windows before it."""
    from datetime import UTC, datetime

    from trendflow.clock import system_clock
    from trendflow.db.pool import connection
    from trendflow.db.topics import TrendingReport, find_trending
    from trendflow.domain.trending import parse_window
    from trendflow.runtime import open_runtime
    from trendflow.tables import trending_table

    try:
        length = parse_window(window)
        moment = datetime.fromisoformat(at) if at else system_clock()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    async def read() -> TrendingReport:
        async with open_runtime(settings(), pool_size=1) as runtime, connection(runtime.pool) as conn:
            return await find_trending(conn, window=length, at=moment, limit=limit, source=source)

    report = asyncio.run(read()).to_json()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    console.print(trending_table(report) if report["items"] else "nothing stands out in this window")


@app.command()
@handles_errors
def reembed(
    model: Annotated[
        str | None, typer.Option(help="the model to backfill (default: the configured one)")
    ] = None,
    since: Annotated[str | None, typer.Option(help="only trends with event time from (ISO 8601)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="trends per committed batch")] = 256,
) -> None:
    """Backfill embeddings: every trend without an embedding of its current text by the model. Resumable."""
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from trendflow.embedding.model import MODEL_NAME, shared_embedder
    from trendflow.reembed import count_candidates
    from trendflow.reembed import reembed as backfill
    from trendflow.runtime import open_runtime

    if model is not None and model != MODEL_NAME:
        raise typer.BadParameter(
            f"only {MODEL_NAME} ships with trendflow; its records are the ones search uses"
        )
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(f"--since: {exc}") from None
    start = start.replace(tzinfo=UTC) if start is not None and start.tzinfo is None else start
    config = settings()

    async def run() -> None:
        embedder = shared_embedder(config.embed_device)
        async with open_runtime(config, pool_size=3) as runtime:
            total = await count_candidates(runtime.pool, embedder.name, start)
            columns = (TextColumn("re-embedding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("reembed", total=total)
                summary = await backfill(
                    runtime.pool, embedder, since=start, batch_size=batch_size,
                    model_batch_size=config.embed_batch_size, progress=lambda n: bar.advance(task, n),
                )  # fmt: skip
        console.print(
            f"{summary.embedded} trends embedded with {embedder.name} "
            f"({summary.model_inputs} texts through the model, the rest from the content-hash cache)"
        )

    asyncio.run(run())


@app.command()
@handles_errors
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: under 3 minutes on 2 cores")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report")] = False,
    corpus: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="texts to use, one per line")
    ] = None,
    events: Annotated[int | None, typer.Option(min=1, help="events for the ingest and ETL stages")] = None,
    e2e_seconds: Annotated[
        float | None, typer.Option(min=0, help="seconds of steady 100 events/s end to end (0 skips)")
    ] = None,
    search_vectors: Annotated[
        int | None,
        typer.Option(
            min=0, help="vectors stored for the search stage: 10,000 with --quick, else 100,000 (0 skips)"
        ),
    ] = None,
) -> None:
    """The benchmark suite: each stage as a ratio to its raw limit, measured in the same run."""
    from trendflow.bench import (
        BenchPlan,
        generated_texts,
        load_corpus,
        print_report,
        run_bench,
        step_progress,
    )

    configure_logging("warning")
    plan = BenchPlan.of(quick=quick, events=events, e2e_seconds=e2e_seconds, search_vectors=search_vectors)
    texts = load_corpus(corpus) if corpus else generated_texts(plan.events)
    with step_progress(err_console) as step:
        report = run_bench(plan, texts, step=step)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report, console)


@dlq_app.command("list")
@handles_errors
def dlq_list(
    stage: Annotated[str | None, typer.Option(help="api, etl or embed")] = None,
    reason: Annotated[str | None, typer.Option(help="a reason code, e.g. bad_json")] = None,
    since: Annotated[
        str | None, typer.Option(help="last seen at or after: ISO 8601, or an age (30m, 2h, 7d)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the previous page printed it")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
) -> None:
    """List dead letters, most recently seen first."""
    from trendflow import dlq
    from trendflow.clock import system_clock

    config = settings()
    moment = dlq.parse_moment(since, now=system_clock()) if since else None
    rows, next_cursor = asyncio.run(
        dlq.run_with_engines(
            config,
            lambda conn, _: dlq.list_dead_letters(
                conn, stage=stage, reason=reason, since=moment, limit=limit, cursor=cursor
            ),
        )
    )
    items = [dlq.dead_letter_json(row) for row in rows]
    if as_json:
        sys.stdout.write(
            json.dumps({"items": items, "next_cursor": next_cursor}, indent=2, ensure_ascii=False) + "\n"
        )
        return
    console.print(dead_letter_table(items, more=next_cursor is not None, width=console.width))
    if next_cursor:
        console.print(f"more: trendflow dlq list --cursor {next_cursor}", markup=False)


# Below this many columns the payload preview is left out (`dlq show ID` prints it whole) and the table loses its
# borders, so that an 80-column terminal still shows every id whole and every reason.
DLQ_PAYLOAD_MIN_WIDTH = 110


def dead_letter_table(items: list[dict[str, Any]], *, more: bool, width: int) -> Any:
    """Dead letters as a Rich table for a console `width` columns wide; ids are shown whole (they are copied)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    wide = width >= DLQ_PAYLOAD_MIN_WIDTH
    table = Table(
        title=f"dead letters ({len(items)}{'+' if more else ''})",
        box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
        show_edge=wide,
        pad_edge=wide,
        collapse_padding=not wide,
    )
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("stage", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    table.add_column("seen", no_wrap=True, justify="right")
    table.add_column("last seen (UTC)" if wide else "last seen", no_wrap=True)
    if wide:  # the fixed columns keep their width; the payload preview gets what is left
        table.add_column("payload", no_wrap=True, max_width=max(16, width - 110))
    for item in items:
        last_seen = item["last_seen"][:16].replace("T", " ")
        cells = [item["id"], item["stage"], Text(item["reason"]), f"{item['occurrences']}×"]
        if wide:
            shown = ("base64:" if item["payload_encoding"] == "base64" else "") + item["payload"][:200]
            table.add_row(*cells, last_seen, Text(shown))
        else:
            table.add_row(*cells, last_seen[5:])
    return table


@dlq_app.command("show")
@handles_errors
def dlq_show(letter_id: str) -> None:
    """Show one dead letter, its payload as received included."""
    from trendflow import dlq

    parsed = dlq.parse_letter_id(letter_id)
    row = asyncio.run(dlq.run_with_engines(settings(), lambda conn, _: dlq.get(conn, parsed)))
    sys.stdout.write(json.dumps(dlq.dead_letter_json(row), indent=2, ensure_ascii=False) + "\n")


@dlq_app.command("replay")
@handles_errors
def dlq_replay(
    letter_id: Annotated[
        str | None, typer.Argument(help="one letter; without it, every letter the filters match")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="only letters with this reason code")] = None,
    stage: Annotated[str | None, typer.Option(help="api, etl or embed")] = None,
    since: Annotated[
        str | None, typer.Option(help="last seen at or after: ISO 8601, or an age (30m, 2h, 7d)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="last seen before: ISO 8601, or an age")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would happen, change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Replay dead letters through the current normalizer: what passes goes back into the pipeline."""
    from trendflow import dlq
    from trendflow.clock import system_clock
    from trendflow.domain.normalize import Limits

    config = settings()
    now = system_clock()
    limits = Limits(max_text_chars=config.max_text_chars)
    parsed = dlq.parse_letter_id(letter_id) if letter_id else None
    if parsed and (reason or stage or since or until):
        err_console.print("[red]error:[/red] give one id, or filters, not both")
        raise typer.Exit(2)
    first, last = (dlq.parse_moment(value, now=now) if value else None for value in (since, until))

    async def replay(conn: Any, client: Any) -> list[dlq.ReplayResult]:
        if parsed is not None:
            return [
                await dlq.replay_dead_letter(conn, client, parsed, dry_run=dry_run, now=now, limits=limits)
            ]
        return await dlq.replay_many(
            conn,
            client,
            reason=reason,
            stage=stage,
            since=first,
            until=last,
            dry_run=dry_run,
            now=now,
            limits=limits,
        )

    results = asyncio.run(dlq.run_with_engines(config, replay))
    replayed = sum(r.outcome == "replayed" for r in results)
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2, ensure_ascii=False) + "\n")
    else:
        for result in results[:50]:
            became = (
                f"{result.source}/{result.external_id}" if result.outcome == "replayed" else result.reason
            )
            outcome = "would replay" if dry_run and result.outcome == "replayed" else result.outcome
            line = f"{outcome:<13} {result.id}  {result.stage:<5} {result.previous_reason} → {became}"
            console.print(line, markup=False, highlight=False)
        if len(results) > 50:
            console.print(f"… and {len(results) - 50} more (--json lists them all)")
        verb = "would be replayed" if dry_run else "replayed"
        note = " (dry run: nothing was changed)" if dry_run else ""
        console.print(f"{replayed} {verb}, {len(results) - replayed} still failing{note}")
    if results and not replayed:
        raise typer.Exit(1)


@dlq_app.command("purge")
@handles_errors
def dlq_purge(
    letter_ids: Annotated[list[str] | None, typer.Argument(help="the letters to delete")] = None,
    reason: Annotated[str | None, typer.Option(help="only letters with this reason code")] = None,
    stage: Annotated[str | None, typer.Option(help="api, etl or embed")] = None,
    before: Annotated[
        str | None, typer.Option(help="last seen before: ISO 8601, or an age (30m, 2h, 7d)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="delete without asking")] = False,
) -> None:
    """Delete dead letters matching every criterion given (at least one is required)."""
    from trendflow import dlq
    from trendflow.clock import system_clock

    ids = [dlq.parse_letter_id(text) for text in letter_ids or []]
    moment = dlq.parse_moment(before, now=system_clock()) if before else None
    criteria: dict[str, Any] = {"ids": ids, "reason": reason, "stage": stage, "before": moment}

    async def purge(conn: Any, _: Any) -> tuple[int, int]:
        matching = await dlq.purge(conn, **criteria, dry_run=True)
        if not matching or not (yes or await asyncio.to_thread(confirm_purge, matching)):
            return matching, 0
        return matching, await dlq.purge(conn, **criteria)

    def confirm_purge(matching: int) -> bool:
        if not sys.stdin.isatty():
            err_console.print(f"{matching} dead letters match; add --yes to delete them")
            return False
        return typer.confirm(f"delete {matching} dead letters?", default=False)

    matching, deleted = asyncio.run(dlq.run_with_engines(settings(), purge))
    console.print(f"deleted {deleted} of {matching} matching dead letters")
    if matching and not deleted:
        raise typer.Exit(1)


@spool_app.command("status")
@handles_errors
def spool_status(
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
) -> None:
    """How many events wait in the spool, its size, whether a record is torn, and the files set aside."""
    from trendflow.spool import Spool

    spool = Spool(settings().spool_path)
    found, aside = spool.status(), spool.aside_files()
    if as_json:
        report = {"path": str(spool.path), "events": found.events, "bytes": found.bytes, "torn": found.torn,
                  "aside_files": [str(p) for p in aside]}  # fmt: skip
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    console.print(f"spool {spool.path}: {found.events} events waiting ({found.bytes} bytes)")
    if found.torn:
        console.print(
            "[yellow]a torn record (a writer died mid-write): `trendflow spool verify` shows where[/yellow]"
        )
    for file in aside:
        console.print(f"set aside by an earlier replay, for inspection: {file}")


@spool_app.command("verify")
@handles_errors
def spool_verify() -> None:
    """Check every spooled record's checksum and shape; exit 1 and list the problems when one is invalid."""
    from trendflow.spool import Spool

    spool = Spool(settings().spool_path)
    report = spool.verify()
    console.print(f"spool {spool.path}: {report.events} valid events ({report.bytes} bytes)")
    if report.ok:
        console.print("ok: every record is intact")
        return
    for problem in report.problems:
        console.print(f"line {problem.line} (byte {problem.offset}): {problem.reason}")
    err_console.print(
        f"[red]{len(report.problems)} invalid record(s).[/red] `trendflow spool replay` publishes the valid ones"
        " and sets the invalid ones aside, byte for byte, beside the spool."
    )
    raise typer.Exit(1)


@spool_app.command("replay")
@handles_errors
def spool_replay() -> None:
    """Replay the spool into the stream now (the monitor also does it every second while Redis is up)."""
    from trendflow.runtime import open_runtime
    from trendflow.spool import Spool
    from trendflow.workers.monitor import replay_spool

    config = settings()
    spool = Spool(config.spool_path)

    async def replay() -> int:
        async with open_runtime(config, pool_size=1) as runtime:
            return await replay_spool(runtime.redis, spool)

    replayed = asyncio.run(replay())
    console.print(f"replayed {replayed} events from {spool.path} into the stream")
    left = spool.status()
    if left.events:
        console.print(f"{left.events} events still wait (appended meanwhile, or another replay is running)")
    for file in spool.aside_files():
        console.print(f"[yellow]invalid records were set aside into {file}[/yellow]")


@keys_app.command("create")
@handles_errors
def keys_create(
    sources: Annotated[
        str | None, typer.Option(help="comma-separated sources the key may post as (default: any source)")
    ] = None,
    name: Annotated[str | None, typer.Option(help="a label to recognise the key by in `keys list`")] = None,
) -> None:
    """Issue an API key; the key itself is printed once and only its SHA-256 hash is stored."""
    from trendflow import dlq
    from trendflow.api.auth import canonical_source
    from trendflow.clock import system_clock
    from trendflow.db import api_keys

    bound = sorted({canonical_source(s) for s in sources.split(",") if s.strip()}) if sources else None
    key = api_keys.new_api_key()
    row = asyncio.run(
        dlq.run_with_engines(
            settings(),
            lambda conn, _: api_keys.create_api_key(conn, key, name=name, sources=bound, now=system_clock()),
        )
    )
    console.print(f"created API key {row['id']}" + (f" for sources {', '.join(bound)}" if bound else ""))
    console.print("the key (shown only this once; store it now):")
    sys.stdout.write(key + "\n")


@keys_app.command("list")
@handles_errors
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False,
) -> None:
    """List API keys issued at run time (never the keys themselves; TRENDFLOW_API_KEYS are not listed)."""
    from rich.table import Table

    from trendflow import dlq
    from trendflow.db import api_keys

    rows = asyncio.run(dlq.run_with_engines(settings(), lambda conn, _: api_keys.list_api_keys(conn)))
    if as_json:
        sys.stdout.write(json.dumps([api_keys.api_key_json(row) for row in rows], indent=2) + "\n")
        return
    if not rows:
        console.print("no API keys issued (`trendflow keys create` issues one)")
        return
    table = Table("id", "name", "sources", "created", "revoked")
    for row in rows:
        shown = api_keys.api_key_json(row)
        table.add_row(
            shown["id"], shown["name"] or "", ", ".join(shown["sources"] or ["any"]), shown["created_at"],
            shown["revoked_at"] or "",
        )  # fmt: skip
    console.print(table)


@keys_app.command("revoke")
@handles_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the id `trendflow keys list` shows")]) -> None:
    """Revoke an API key: the API refuses it within TRENDFLOW_API_KEY_CACHE_S seconds."""
    from uuid import UUID

    from trendflow import dlq
    from trendflow.clock import system_clock
    from trendflow.db import api_keys

    try:
        parsed = UUID(key_id)
    except ValueError:
        raise typer.BadParameter(
            f"{key_id!r} is not a key id (a UUID, as `trendflow keys list` shows)"
        ) from None
    row = asyncio.run(
        dlq.run_with_engines(
            settings(), lambda conn, _: api_keys.revoke_api_key(conn, parsed, now=system_clock())
        )
    )
    if row is None:
        err_console.print(f"[red]error:[/red] no API key has the id {parsed}")
        raise typer.Exit(1)
    console.print(f"revoked API key {parsed} at {row['revoked_at'].isoformat()}")


def main() -> None:
    app()
