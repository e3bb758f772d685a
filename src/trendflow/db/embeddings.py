"""The embedding_records repository: the content-hash cache, batch upsert, and nearest neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import numpy as np
import psycopg

from trendflow.db import queries
from trendflow.db.pool import fetch_count


@dataclass(frozen=True, slots=True)
class TrendToEmbed:
    id: UUID
    text: str
    content_hash: str
    accepted_at: datetime | None


@dataclass(frozen=True, slots=True)
class EmbeddingWrite:
    trend_id: UUID
    content_hash: str
    vector: np.ndarray


async def load_trends_to_embed(
    conn: psycopg.AsyncConnection, ids: Sequence[UUID]
) -> dict[UUID, TrendToEmbed]:
    cur = await conn.execute(queries.LOAD_TRENDS_TO_EMBED, {"ids": list(ids)})
    return {row[0]: TrendToEmbed(*row) for row in await cur.fetchall()}


async def load_cached_embeddings(
    conn: psycopg.AsyncConnection, model: str, hashes: Sequence[str]
) -> dict[str, np.ndarray]:
    """Vectors already computed for these texts by this model, anywhere in the table."""
    if not hashes:
        return {}
    cur = await conn.execute(queries.LOAD_CACHED_EMBEDDINGS, {"model": model, "hashes": list(hashes)})
    return {content_hash: as_array(vector) for content_hash, vector in await cur.fetchall()}


def as_array(vector: object) -> np.ndarray:
    """pgvector hands back a Vector (binary results) or an ndarray (text results); callers get an ndarray."""
    to_numpy = getattr(vector, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else vector, dtype=np.float32)


async def store_embeddings(
    conn: psycopg.AsyncConnection, model: str, writes: Sequence[EmbeddingWrite]
) -> list[tuple[UUID, datetime | None]]:
    """Upsert the vectors and mark their trends embedded, in one transaction; returns (id, accepted_at) marked.
    A trend written twice keeps its last vector."""
    if not writes:
        return []
    latest = {w.trend_id: w for w in writes}
    async with conn.transaction(), conn.cursor() as cur:  # the staging table lives until commit
        await cur.execute(queries.CREATE_EMBEDDING_STAGING)
        async with cur.copy(queries.COPY_EMBEDDING_STAGING) as copy:
            copy.set_types(["uuid", "vector", "text"])
            for write in latest.values():
                await copy.write_row((write.trend_id, write.vector, write.content_hash))
        await cur.execute(queries.UPSERT_EMBEDDINGS_FROM_STAGING, {"model": model})
        await cur.execute(queries.MARK_EMBEDDED, {"model": model, "ids": list(latest)})
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def embedding_backlog(conn: psycopg.AsyncConnection) -> int:
    return await fetch_count(conn, queries.EMBEDDING_BACKLOG)


async def latest_activity(conn: psycopg.AsyncConnection) -> tuple[datetime | None, datetime | None]:
    """(newest trend stored, newest embedding written), None before the first."""
    cur = await conn.execute(queries.LATEST_ACTIVITY)
    row = await cur.fetchone()
    return (row[0], row[1]) if row else (None, None)
