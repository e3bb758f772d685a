"""`GET /v1/search` and `GET /v1/trends/{id}/similar`: trends with a cosine `score`, best first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request

from trendflow.api.errors import ApiError
from trendflow.api.serialize import trend_json
from trendflow.db.pool import connection
from trendflow.db.trends import TrendFilters
from trendflow.runtime import Runtime
from trendflow.search import (
    MAX_K,
    MAX_QUERY_CHARS,
    NotEmbeddedYet,
    TrendNotFound,
    embed_query,
    load_query_embedder,
    nearest_to_vector,
    similar_trends,
)

router = APIRouter(tags=["search"])


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def search_filters(
    source: str | None = None,
    topic: str | None = None,
    since: Annotated[datetime | None, Query(description="inclusive; naive means UTC")] = None,
    until: Annotated[datetime | None, Query(description="exclusive; naive means UTC")] = None,
    sentiment: Literal["negative", "neutral", "positive"] | None = None,
    language: str | None = None,
) -> TrendFilters:
    return TrendFilters(source, topic, _utc(since), _utc(until), sentiment, language)


Filters = Annotated[TrendFilters, Depends(search_filters)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many trends to return")]


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _page(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"items": [trend_json(row) for row in rows], "next_cursor": None}


@router.get("/v1/search")
async def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for")],
    filters: Filters,
    k: K = 10,
) -> Any:
    """The stored trends nearest in meaning to `q`."""
    if not q.strip():
        raise ApiError(
            422, "invalid_request", "the request's parameters are invalid",
            [{"field": "q", "reason": "blank", "message": "the query holds only whitespace"}],
        )  # fmt: skip
    runtime = _runtime(request)
    # The model runs before a connection is borrowed: inference never holds one of the pool's connections.
    embedder = await load_query_embedder(runtime.settings.embed_device)
    vector = await embed_query(embedder, q.strip())
    async with connection(runtime.pool) as conn:
        rows = await nearest_to_vector(
            conn, vector, k, filters, runtime.settings.hnsw_ef_search, model=embedder.name
        )
    return _page(rows)


@router.get("/v1/trends/{trend_id}/similar")
async def similar(request: Request, trend_id: UUID, filters: Filters, k: K = 10) -> Any:
    """The trends nearest in meaning to one stored trend, never the trend itself."""
    runtime = _runtime(request)
    try:
        async with connection(runtime.pool) as conn:
            rows = await similar_trends(conn, trend_id, k, filters, runtime.settings.hnsw_ef_search)
    except TrendNotFound as exc:
        raise ApiError(404, exc.reason, str(exc)) from None
    except NotEmbeddedYet as exc:
        raise ApiError(409, exc.reason, str(exc)) from None
    return _page(rows)
