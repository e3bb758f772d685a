"""`trendflow status`: the operator's view in a terminal, from any process on the same engines."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from trendflow.config import Settings
from trendflow.runtime import open_runtime
from trendflow.spool import Spool
from trendflow.status import collect_status


async def read_status(settings: Settings) -> dict[str, Any]:
    async with open_runtime(settings, pool_size=1) as runtime:
        return await collect_status(runtime.pool, runtime.redis, Spool(settings.spool_path))


async def watch_status(settings: Settings, console: Console, *, interval_s: float = 2.0) -> None:
    """Redraw the status every interval until Ctrl-C."""
    spool = Spool(settings.spool_path)
    async with open_runtime(settings, pool_size=1) as runtime:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                report = await collect_status(runtime.pool, runtime.redis, spool)
                live.update(Group(*status_renderables(report)), refresh=True)
                await asyncio.sleep(interval_s)


def print_status(report: dict[str, Any], console: Console) -> None:
    for renderable in status_renderables(report):
        console.print(renderable)


def status_renderables(report: dict[str, Any]) -> list[Any]:
    table = Table(title="streams")
    for column in ("stream", "length", "group", "lag", "pending", "consumers (pending, idle)"):
        table.add_column(column)
    for name, stream in report["streams"].items():
        groups = stream["groups"] or {"-": {"lag": "-", "pending": "-", "consumers": []}}
        for group, info in groups.items():
            consumers = ", ".join(
                f"{c['name']} ({c['pending']}, {c['idle_ms'] / 1000:.0f}s)" for c in info["consumers"]
            )
            table.add_row(
                name, str(stream["length"]), group, str(info["lag"]), str(info["pending"]), consumers or "-"
            )
    spool = report["spool"]
    summary = (
        f"dead letters: {report['dead_letters']}   spool: {spool['events']} events ({spool['bytes']} bytes)"
        f"{'  TORN RECORD: run `trendflow spool verify`' if spool.get('torn') else ''}"
        f"   embedding backlog: {report['embedding_backlog']}"
    )
    return [table, summary]
