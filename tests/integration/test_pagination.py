"""Keyset pagination over a topic while new rows arrive: every row that was there is returned exactly once."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from tests.conftest import FIXED_NOW
from trendflow.db.pool import connection
from trendflow.db.trends import TrendFilters, TrendRow, list_trends, upsert_trends
from trendflow.domain.enrich import Enrichment
from trendflow.domain.models import TrendEvent

FOUND = Enrichment(0.1, "neutral", ("paging",), "en", None, 0.5, {})


def rows(prefix: str, minutes: list[int]) -> list[TrendRow]:
    return [
        TrendRow(
            TrendEvent("pages", f"{prefix}-{i}", f"text {prefix} {i}", FIXED_NOW - timedelta(minutes=m)),
            FOUND,
        )
        for i, m in enumerate(minutes)
    ]


async def page_through(runtime: Any, *, oldest_first: bool) -> tuple[list[str], set[str]]:
    """Read every page of the topic, inserting rows (older, newer, same time) between pages."""
    rng = random.Random(7)
    seen: list[str] = []
    inserted: set[str] = set()
    cursor = None
    page = 0
    async with connection(runtime.pool) as conn:
        while True:
            items, cursor = await list_trends(
                conn, TrendFilters(topic="paging"), limit=7, cursor=cursor, oldest_first=oldest_first
            )
            seen += [item["external_id"] for item in items]
            if cursor is None:
                return seen, inserted
            newcomers = rows(f"new{page}", [rng.randrange(-30, 90) for _ in range(4)])
            await upsert_trends(conn, newcomers)
            inserted |= {row.event.external_id for row in newcomers}
            page += 1


async def test_paging_newest_first_returns_each_row_once_while_rows_arrive(runtime: Any) -> None:
    async with connection(runtime.pool) as conn:
        await upsert_trends(conn, rows("orig", [i * 2 for i in range(30)]))
    seen, inserted = await page_through(runtime, oldest_first=False)
    assert len(seen) == len(set(seen))  # never twice
    assert {f"orig-{i}" for i in range(30)} <= set(seen)  # nothing that was there is skipped
    assert set(seen) - {f"orig-{i}" for i in range(30)} <= inserted


async def test_paging_oldest_first_is_the_same_rows_in_time_order(runtime: Any) -> None:
    async with connection(runtime.pool) as conn:
        await upsert_trends(conn, rows("orig", [i * 2 for i in range(30)]))
        oldest, _ = await list_trends(conn, TrendFilters(topic="paging"), limit=100, oldest_first=True)
        newest, _ = await list_trends(conn, TrendFilters(topic="paging"), limit=100)
    assert [r["id"] for r in oldest] == [r["id"] for r in reversed(newest)]
    seen, _ = await page_through(runtime, oldest_first=True)
    assert len(seen) == len(set(seen)) and {f"orig-{i}" for i in range(30)} <= set(seen)
