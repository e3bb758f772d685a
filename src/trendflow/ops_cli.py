"""`trendflow status`: the operator's view in a terminal, from any process on the same engines."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from trendflow.config import Settings
from trendflow.runtime import open_runtime
from trendflow.spool import Spool
from trendflow.status import collect_status


async def read_status(settings: Settings) -> dict[str, Any]:
    async with open_runtime(settings, pool_size=1) as runtime:
        return await collect_status(runtime.pool, runtime.redis, Spool(settings.spool_path))


def print_status(report: dict[str, Any], console: Console) -> None:
    table = Table(title="streams")
    for column in ("stream", "length", "group", "lag", "pending", "consumers (pending, idle)"):
        table.add_column(column)
    for name, stream in report["streams"].items():
        groups = stream["groups"] or {"-": {"lag": "-", "pending": "-", "consumers": []}}
        for group, info in groups.items():
            consumers = ", ".join(f"{c['name']} ({c['pending']}, {c['idle_ms'] / 1000:.0f}s)" for c in info["consumers"])
            table.add_row(name, str(stream["length"]), group, str(info["lag"]), str(info["pending"]), consumers or "-")
    console.print(table)
    spool = report["spool"]
    console.print(
        f"dead letters: {report['dead_letters']}   spool: {spool['events']} events ({spool['bytes']} bytes)"
        f"{'  TORN RECORD: run `trendflow spool verify`' if spool.get('torn') else ''}"
        f"   embedding backlog: {report['embedding_backlog']}"
    )
