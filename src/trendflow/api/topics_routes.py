"""The topic endpoints: what is trending, and topic counts over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from trendflow.api.errors import ApiError
from trendflow.clock import system_clock
from trendflow.db.pool import connection
from trendflow.db.topics import find_trending, topic_counts
from trendflow.domain.trending import parse_window

router = APIRouter(tags=["topics"])

DEFAULT_RANGE = timedelta(hours=24)


def _now(request: Request) -> datetime:
    """The app's clock when one was installed on app.state, else the system's."""
    return getattr(request.app.state, "clock", system_clock)()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/v1/topics/trending")
async def get_trending(
    request: Request,
    window: str = "1h",
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    source: str | None = None,
    at: Annotated[
        datetime | None, Query(description="end of the window (default now); naive means UTC")
    ] = None,
) -> Any:
    """Topics whose volume in the window up to `at` stands out against the preceding windows."""
    try:
        length = parse_window(window)
    except ValueError as exc:
        raise ApiError(
            422, "invalid_request", str(exc), [{"field": "window", "reason": "bad_window"}]
        ) from None
    moment = _utc(at) if at is not None else _now(request)
    async with connection(request.app.state.runtime.pool) as conn:
        report = await find_trending(conn, window=length, at=moment, limit=limit, source=source)
    return report.to_json()


@router.get("/v1/topics")
async def get_topics(
    request: Request,
    since: datetime | None = None,
    until: datetime | None = None,
    source: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """Topics by event count in [since, until) (default: the last 24 hours), widened to 5-minute buckets."""
    end = _utc(until) if until is not None else _now(request)
    start = _utc(since) if since is not None else end - DEFAULT_RANGE
    if start >= end:
        raise ApiError(
            422, "invalid_request", "since must be before until", [{"field": "since", "reason": "bad_range"}]
        )
    async with connection(request.app.state.runtime.pool) as conn:
        return await topic_counts(conn, start, end, source=source, limit=limit)
