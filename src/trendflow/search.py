"""Semantic search and similar trends: the read side over the HNSW index of embedding_records.

    embedder = await load_query_embedder(settings.embed_device)
    rows = await search_trends(conn, embedder, "rates go up again", 10, TrendFilters(source="news"), 100)
    rows[0]["score"]  # cosine similarity, best first

Both queries run in one transaction that sets `hnsw.ef_search` and pgvector 0.8's iterative scan, so a
selective filter still returns k rows, and both read only the vectors of the configured model.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from trendflow.config import Settings
from trendflow.db import queries
from trendflow.db.embeddings import as_array
from trendflow.db.pool import connection
from trendflow.db.trends import TrendFilters, filter_conditions
from trendflow.embedding.model import MODEL_NAME, Embedder, shared_embedder
from trendflow.errors import PermanentError

MAX_K = 100
MAX_QUERY_CHARS = 1000
QUERY_CACHE_SIZE = 256
SENTIMENT_LABELS = ("negative", "neutral", "positive")


class TrendNotFound(PermanentError):
    def __init__(self, trend_id: UUID) -> None:
        super().__init__("not_found", f"no trend with id {trend_id}")


class NotEmbeddedYet(PermanentError):
    def __init__(self, trend_id: UUID) -> None:
        super().__init__(
            "not_embedded",
            f"trend {trend_id} has no embedding for its current text yet; retry once its embedding_status is succeeded",
        )


class QueryVectorCache:
    """The most recent query vectors by (model, text): a repeated search skips the model. Thread-safe."""

    def __init__(self, size: int = QUERY_CACHE_SIZE) -> None:
        self.size = size
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get((model, text))
            if vector is not None:
                self._vectors.move_to_end((model, text))
            return vector

    def put(self, model: str, text: str, vector: np.ndarray) -> None:
        vector.setflags(write=False)  # shared between requests
        with self._lock:
            self._vectors[(model, text)] = vector
            self._vectors.move_to_end((model, text))
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)


query_vectors = QueryVectorCache()
_embedder_lock = threading.Lock()


def _load_embedder(device: str) -> Embedder:
    with _embedder_lock:  # two first searches at once must not load the model twice
        return shared_embedder(device)


async def load_query_embedder(device: str) -> Embedder:
    """The process's one Embedder, loaded on first use off the event loop (seconds, once)."""
    return await asyncio.to_thread(_load_embedder, device)


def check_query(query: str, k: int) -> str:
    """The query as searched (trimmed); a blank or overlong query or a k out of bounds is refused."""
    text = query.strip()
    if not text:
        raise PermanentError("empty_query", "the search query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise PermanentError(
            "query_too_long", f"the search query is {len(text)} characters; at most {MAX_QUERY_CHARS}"
        )
    check_k(k)
    return text


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise PermanentError("bad_k", f"k must be between 1 and {MAX_K} (got {k})")


async def embed_query(embedder: Embedder, query: str, cache: QueryVectorCache = query_vectors) -> np.ndarray:
    """The query's unit vector, computed off the event loop unless the cache holds it."""
    vector = cache.get(embedder.name, query)
    if vector is None:
        vector = (await asyncio.to_thread(embedder.encode, [query]))[0]
        cache.put(embedder.name, query, vector)
    return vector


async def search_trends(
    conn: psycopg.AsyncConnection,
    embedder: Embedder,
    query: str,
    k: int,
    filters: TrendFilters,
    ef_search: int,
) -> list[dict[str, Any]]:
    """The k stored trends nearest in meaning to `query` that pass the filters, best first, each with `score`."""
    text = check_query(query, k)
    vector = await embed_query(embedder, text)
    return await nearest_to_vector(conn, vector, k, filters, ef_search, model=embedder.name)


async def similar_trends(
    conn: psycopg.AsyncConnection, trend_id: UUID, k: int, filters: TrendFilters, ef_search: int = 100
) -> list[dict[str, Any]]:
    """The k trends nearest to one stored trend, never the trend itself; raises TrendNotFound or NotEmbeddedYet."""
    check_k(k)
    cur = await conn.execute(queries.TREND_EMBEDDING, {"model": MODEL_NAME, "id": trend_id})
    row = await cur.fetchone()
    if row is None:
        raise TrendNotFound(trend_id)
    if row[0] is None:
        raise NotEmbeddedYet(trend_id)
    return await nearest_to_vector(
        conn, as_array(row[0]), k, filters, ef_search, model=MODEL_NAME, exclude=trend_id
    )


async def nearest_to_vector(
    conn: psycopg.AsyncConnection,
    vector: np.ndarray,
    k: int,
    filters: TrendFilters,
    ef_search: int,
    *,
    model: str = MODEL_NAME,
    exclude: UUID | None = None,
) -> list[dict[str, Any]]:
    """Trends whose `model` vector is nearest to `vector` (cosine), filtered, best first, each with `score`."""
    check_k(k)
    conditions, params = filter_conditions(filters)
    conditions.insert(0, sql.SQL("e.model = %(model)s"))
    if exclude is not None:
        conditions.append(sql.SQL("e.enriched_trend_id <> %(exclude)s"))
        params["exclude"] = exclude
    params.update(model=model, vector=vector, k=k)
    query = sql.SQL(queries.NEAREST_FILTERED).format(
        columns=sql.SQL(queries.TREND_COLUMNS), where=sql.SQL(" AND ").join(conditions)
    )
    # Without an iterative scan (pgvector < 0.8) the index yields at most ef_search rows: never fewer than k.
    tuning = sql.SQL(queries.SET_HNSW_EF_SEARCH).format(ef_search=sql.Literal(max(ef_search, k)))
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(tuning)
        await cur.execute(queries.SET_HNSW_ITERATIVE_SCAN)
        await cur.execute(query, params)
        return await cur.fetchall()


def time_bound(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 time given on the command line; naive means UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PermanentError(
            "bad_time", f"{option} {text!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def terminal_filters(
    source: str | None, topic: str | None, since: str | None, until: str | None, sentiment: str | None
) -> TrendFilters:
    """The CLI's filter options, checked: times parsed, sentiment one of the labels."""
    if sentiment is not None and sentiment not in SENTIMENT_LABELS:
        raise PermanentError("bad_sentiment", f"--sentiment must be one of {', '.join(SENTIMENT_LABELS)}")
    return TrendFilters(source, topic, time_bound(since, "--since"), time_bound(until, "--until"), sentiment)


async def run_search(settings: Settings, query: str, k: int, filters: TrendFilters) -> list[dict[str, Any]]:
    """`trendflow search`: open the engines, load the model, search once."""
    from trendflow.runtime import open_runtime

    check_query(query, k)  # refuse a bad query before loading anything
    embedder = await load_query_embedder(settings.embed_device)
    async with open_runtime(settings, pool_size=1) as runtime, connection(runtime.pool) as conn:
        return await search_trends(conn, embedder, query, k, filters, settings.hnsw_ef_search)
