"""The operator's dead-letter endpoints: list, show, replay one, replay by reason and time range."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from trendflow import dlq
from trendflow.api.errors import ApiError
from trendflow.db.pool import connection
from trendflow.ingest import Ingestor
from trendflow.runtime import Runtime

Stage = Literal["api", "etl", "embed"]

dlq_router = APIRouter(prefix="/v1/dlq", tags=["dead letters"])


class ReplayRequest(BaseModel):
    """Which letters to replay: every given criterion must match (since ≤ last_seen < until)."""

    reason: str | None = None
    stage: Stage | None = None
    since: datetime | None = None
    until: datetime | None = None
    dry_run: bool = False


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _ingestor(request: Request) -> Ingestor:
    # Replay judges payloads exactly as ingest does: the same clock and the same limits.
    return request.app.state.ingestor


@dlq_router.get("")
async def list_letters(
    request: Request,
    stage: Stage | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> Any:
    async with connection(_runtime(request).pool) as conn:
        rows, next_cursor = await dlq.list_dead_letters(
            conn, stage=stage, reason=reason, since=since, limit=limit, cursor=cursor
        )
    return {"items": [dlq.dead_letter_json(row) for row in rows], "next_cursor": next_cursor}


@dlq_router.post("/replay")
async def replay_letters(request: Request, body: ReplayRequest) -> Any:
    ingestor = _ingestor(request)
    async with connection(_runtime(request).pool) as conn:
        results = await dlq.replay_many(
            conn, _runtime(request).redis, reason=body.reason, stage=body.stage, since=body.since,
            until=body.until, dry_run=body.dry_run, now=ingestor.clock(), limits=ingestor.limits,
        )  # fmt: skip
    return {
        "dry_run": body.dry_run,
        "replayed": sum(r.outcome == "replayed" for r in results),
        "still_failing": sum(r.outcome == "still_failing" for r in results),
        "items": [r.to_json() for r in results],
    }


@dlq_router.get("/{letter_id}")
async def get_letter(request: Request, letter_id: UUID) -> Any:
    try:
        async with connection(_runtime(request).pool) as conn:
            return dlq.dead_letter_json(await dlq.get(conn, letter_id))
    except dlq.DeadLetterNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None


@dlq_router.post("/{letter_id}/replay")
async def replay_letter(request: Request, letter_id: UUID, dry_run: bool = False) -> Any:
    ingestor = _ingestor(request)
    try:
        async with connection(_runtime(request).pool) as conn:
            result = await dlq.replay_dead_letter(
                conn, _runtime(request).redis, letter_id, dry_run=dry_run, now=ingestor.clock(),
                limits=ingestor.limits,
            )  # fmt: skip
    except dlq.DeadLetterNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return result.to_json()
