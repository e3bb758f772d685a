"""`trendflow reembed`: backfill on real PostgreSQL with the real model; interrupted runs resume."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from trendflow.db.pool import connection
from trendflow.db.trends import TrendRow, upsert_trends
from trendflow.domain.enrich import Enrichment
from trendflow.domain.models import TrendEvent
from trendflow.embedding.model import shared_embedder
from trendflow.reembed import count_candidates, reembed

FOUND = Enrichment(0.0, "neutral", (), "en", None, 0.5, {})


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    return shared_embedder("cpu")


async def store(runtime: Any, texts: list[str]) -> None:
    rows = [
        TrendRow(TrendEvent("backfill", str(i), text, FIXED_NOW - timedelta(hours=i)), FOUND)
        for i, text in enumerate(texts)
    ]
    async with connection(runtime.pool) as conn:
        await upsert_trends(conn, rows)


async def embedded(runtime: Any) -> int:
    async with connection(runtime.pool) as conn:
        cur = await conn.execute("SELECT count(*) FROM enriched_trends WHERE embedding_status = 'succeeded'")
        return (await cur.fetchone())[0]


async def test_backfill_embeds_what_is_missing_once(runtime: Any, embedder: Any) -> None:
    await store(runtime, [f"text {i % 10} about the harbour" for i in range(30)])
    summary = await reembed(runtime.pool, embedder, batch_size=8)
    assert (summary.candidates, summary.embedded, summary.model_inputs) == (30, 30, 10)
    assert await embedded(runtime) == 30
    again = await reembed(runtime.pool, embedder, batch_size=8)
    assert (again.candidates, again.embedded, again.model_inputs) == (0, 0, 0)


async def test_an_interrupted_backfill_resumes_where_it_stopped(runtime: Any, embedder: Any) -> None:
    await store(runtime, [f"distinct text number {i}" for i in range(20)])

    def stop_after_first_batch(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await reembed(runtime.pool, embedder, batch_size=5, progress=stop_after_first_batch)
    assert await embedded(runtime) == 5
    resumed = await reembed(runtime.pool, embedder, batch_size=5)
    assert (resumed.candidates, resumed.embedded, resumed.model_inputs) == (15, 15, 15)


async def test_since_limits_the_backfill_to_recent_events(runtime: Any, embedder: Any) -> None:
    await store(runtime, [f"recent or old text {i}" for i in range(6)])  # one per hour back from FIXED_NOW
    since = FIXED_NOW - timedelta(hours=2, minutes=30)
    assert await count_candidates(runtime.pool, embedder.name, since) == 3
    summary = await reembed(runtime.pool, embedder, since=since)
    assert summary.embedded == 3 and await embedded(runtime) == 3
