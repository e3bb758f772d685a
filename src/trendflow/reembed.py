"""`trendflow reembed`: backfill embeddings for a model, in batches, resumable.

Each batch commits on its own, and the candidates are the trends that still lack an embedding of their current
text by the model, so a run that is stopped (Ctrl-C, a crash) and started again continues where it stopped;
within a run a keyset cursor on (created_at, id) walks the table once. Vectors go through the same path as
the embedding worker: the content-hash cache, one model call per batch, storing while the next batch encodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from trendflow.db import queries
from trendflow.db.embeddings import TrendToEmbed
from trendflow.db.pool import connection, fetch_count
from trendflow.embedding.model import Embedder
from trendflow.workers.embed import embed_trends

CURSOR_START = (datetime(1970, 1, 1, tzinfo=UTC), UUID(int=0))


@dataclass
class ReembedSummary:
    candidates: int = 0
    embedded: int = 0
    model_inputs: int = 0


async def count_candidates(pool: AsyncConnectionPool, model: str, since: datetime | None) -> int:
    async with connection(pool) as conn:
        return await fetch_count(conn, queries.COUNT_REEMBED_CANDIDATES, {"model": model, "since": since})


async def reembed(
    pool: AsyncConnectionPool,
    embedder: Embedder,
    *,
    since: datetime | None = None,
    batch_size: int = 256,
    model_batch_size: int = 64,
    progress: Callable[[int], None] = lambda done: None,
) -> ReembedSummary:
    """Embed every trend (with event time ≥ since) that has no current embedding by `embedder`'s model."""
    summary = ReembedSummary(candidates=await count_candidates(pool, embedder.name, since))
    after_created, after_id = CURSOR_START
    while True:
        async with connection(pool) as conn:
            cur = await conn.execute(
                queries.REEMBED_CANDIDATES,
                {"model": embedder.name, "since": since, "after_created": after_created,
                 "after_id": after_id, "limit": batch_size},
            )  # fmt: skip
            rows = await cur.fetchall()
        if not rows:
            return summary
        trends = [TrendToEmbed(*row[:4]) for row in rows]
        marked, inputs = await embed_trends(pool, embedder, trends, model_batch_size=model_batch_size)
        summary.embedded += len(marked)
        summary.model_inputs += inputs
        after_created, after_id = rows[-1][4], rows[-1][0]
        progress(len(rows))
