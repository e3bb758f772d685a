"""`trendflow demo`: the whole pipeline over the bundled sample, on the embedded engines, then stop.

Imports the sample through the ingest path, runs the ETL, embedding and monitor workers as real processes,
shows progress until every accepted event is enriched and embedded, prints what was trending in the sample's
last hour and one semantic search, stops everything and exits 0.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from importlib import resources
from pathlib import Path

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from trendflow.config import Settings
from trendflow.db import queries
from trendflow.db.pool import connection
from trendflow.db.topics import find_trending
from trendflow.db.trends import TrendFilters, progress_of
from trendflow.errors import TrendflowError
from trendflow.importer import ImportSummary, import_events
from trendflow.processes import ProcessTree
from trendflow.runtime import Endpoints, open_runtime, prepare_database
from trendflow.search import load_query_embedder, search_trends
from trendflow.tables import search_table, trending_table

DEMO_QUERY = "people watching the sun disappear behind the moon"
WAIT_LIMIT_S = 300.0


def sample_path() -> Path:
    return Path(str(resources.files("trendflow") / "sample" / "events.jsonl"))


def run_demo(settings: Settings, console: Console) -> None:
    console.print(f"[bold]trendflow demo[/bold]: engines under {settings.data_dir.resolve()}")
    endpoints = prepare_database(settings)
    tree = ProcessTree(roles=(("worker", "etl"), ("worker", "embed"), ("worker", "monitor")))
    tree.start()
    try:
        summary = asyncio.run(
            import_events(settings, sample_path(), default_source=None, batch_size=100, console=console)
        )
        summary.print(console)
        asyncio.run(_wait_and_show(settings, endpoints, summary, tree, console))
    finally:
        console.print("stopping the workers and the engines")
        tree.stop()


async def _wait_and_show(
    settings: Settings, endpoints: Endpoints, summary: ImportSummary, tree: ProcessTree, console: Console
) -> None:
    async with open_runtime(settings, endpoints, pool_size=2) as runtime:
        columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn())
        deadline = time.monotonic() + WAIT_LIMIT_S
        with Progress(*columns, console=console) as progress:
            enriched = progress.add_task("enriched", total=summary.accepted)
            embedded = progress.add_task("embedded", total=summary.accepted)
            while True:
                async with connection(runtime.pool) as conn:
                    stored, done = await progress_of(conn, summary.identities)
                progress.update(enriched, completed=stored)
                progress.update(embedded, completed=done)
                if done >= summary.accepted:
                    break
                if time.monotonic() > deadline:
                    raise TrendflowError(
                        f"the sample was not processed within {WAIT_LIMIT_S:.0f} s; see the worker logs"
                    )
                tree.restart_dead()
                await asyncio.sleep(0.5)
        async with connection(runtime.pool) as conn:
            await _show_trending(conn, console)
            await _show_search(conn, settings, console)


async def _show_trending(conn: psycopg.AsyncConnection, console: Console) -> None:
    """What was trending in the sample's last hour (the sample is history: its end stands in for now)."""
    cur = await conn.execute(queries.LATEST_EVENT_TIME)
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return
    report = await find_trending(conn, window=timedelta(hours=1), at=row[0], limit=8)
    console.print(trending_table(report.to_json()))


async def _show_search(conn: psycopg.AsyncConnection, settings: Settings, console: Console) -> None:
    embedder = await load_query_embedder(settings.embed_device)
    rows = await search_trends(conn, embedder, DEMO_QUERY, 5, TrendFilters(), settings.hnsw_ef_search)
    console.print(search_table(DEMO_QUERY, rows))
