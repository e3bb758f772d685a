"""The HTTP API: ingest, the read side, and the operator's view. Thin: every route calls a service function."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from trendflow.alerts import Alerter
from trendflow.api import auth
from trendflow.api.dlq_routes import dlq_router
from trendflow.api.errors import ApiError, install_error_handlers
from trendflow.api.limits import BodyLimitMiddleware, check_batch_size, parse_body_json
from trendflow.api.search_routes import router as search_router
from trendflow.api.serialize import trend_json
from trendflow.api.topics_routes import router as topics_router
from trendflow.clock import Clock, system_clock
from trendflow.config import Settings
from trendflow.db import queries
from trendflow.db.pool import connection
from trendflow.db.trends import TrendFilters, get_trend, list_trends
from trendflow.domain.models import FieldError
from trendflow.domain.normalize import Limits
from trendflow.errors import TransientError
from trendflow.ingest import Ingestor, Received, received_items
from trendflow.metrics import export_status, render_metrics
from trendflow.runtime import Runtime, open_runtime, prepare_database
from trendflow.spool import Spool
from trendflow.status import collect_status
from trendflow.streams import names
from trendflow.streams.backlog import group_lag

NDJSON = "application/x-ndjson"
LAG_CACHE_S = 0.5
LAG_READ_TIMEOUT_S = 0.25


class Backpressure:
    """Refuses new work while the raw stream's lag is past TRENDFLOW_MAX_LAG; the lag is read at most twice a second."""

    def __init__(self, runtime: Runtime, max_lag: int) -> None:
        self.runtime, self.max_lag = runtime, max_lag
        self._lag, self._read_at = 0, 0.0

    async def check(self) -> None:
        now = time.monotonic()
        if now - self._read_at > LAG_CACHE_S:
            self._read_at = now
            try:
                async with asyncio.timeout(LAG_READ_TIMEOUT_S):
                    self._lag = await group_lag(self.runtime.redis, names.RAW_STREAM, names.ETL_GROUP)
            except (TransientError, TimeoutError):  # Redis down is the spool's business, not backpressure's
                self._lag = 0
        if self._lag > self.max_lag:
            raise ApiError(
                429, "backpressure", f"the pipeline is {self._lag} events behind; retry shortly",
                headers={"Retry-After": "2"},
            )  # fmt: skip


def create_app(settings: Settings, *, clock: Clock = system_clock) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        endpoints = await asyncio.to_thread(prepare_database, settings)
        async with open_runtime(settings, endpoints) as runtime:
            spool = Spool(settings.spool_path)
            app.state.runtime = runtime
            app.state.spool = spool
            app.state.backpressure = Backpressure(runtime, settings.max_lag)
            app.state.keyring = keyring = auth.KeyRing(settings.api_keys, cache_s=settings.api_key_cache_s)
            await keyring.stored_keys(runtime.pool)  # read once while PostgreSQL is known to be up
            alerter = Alerter.from_settings(settings, clock=clock)
            app.state.ingestor = Ingestor(
                runtime.pool, runtime.redis, spool, Limits(max_text_chars=settings.max_text_chars),
                publish_budget_s=settings.ingest_timeout_ms / 1000, clock=clock, alerter=alerter,
            )  # fmt: skip
            try:
                yield
            finally:
                await keyring.aclose()
                await alerter.aclose()

    app = FastAPI(title="trendflow", version="0.1.0", lifespan=lifespan)
    app.state.clock = clock
    app.state.access = auth.AccessPolicy.from_settings(settings)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(dlq_router, dependencies=[Depends(auth.writer)])
    app.include_router(topics_router, dependencies=[Depends(auth.reader)])
    app.include_router(search_router, dependencies=[Depends(auth.reader)])

    def ingestor(request: Request) -> Ingestor:
        return request.app.state.ingestor

    def runtime(request: Request) -> Runtime:
        return request.app.state.runtime

    @app.post("/v1/events", status_code=202)
    async def post_event(request: Request, principal: auth.Writer) -> Any:
        body = await request.body()
        await request.app.state.backpressure.check()
        item = auth.restrict_sources(
            [(parse_body_json(body), body)], principal, now=clock(), limits=ingestor(request).limits
        )
        auth.forbid_foreign_source(item[0])
        outcome = await ingestor(request).ingest_events(item)
        if outcome.rejected:
            errors = [{"field": e.field, "reason": e.reason} for e in outcome.rejected[0].errors]
            raise ApiError(422, errors[0]["reason"], "the event was refused", errors)
        source, external_id = outcome.accepted[0]
        status = "spooled" if outcome.spooled else "queued"
        return {"status": status, "source": source, "external_id": external_id}

    @app.post("/v1/events/batch", status_code=202)
    async def post_batch(request: Request, principal: auth.Writer) -> Any:
        body = await request.body()
        items = split_batch(body, ndjson=request.headers.get("content-type", "").startswith(NDJSON))
        check_batch_size(len(items), settings.max_batch_events)
        items = auth.restrict_sources(items, principal, now=clock(), limits=ingestor(request).limits)
        await request.app.state.backpressure.check()
        outcome = await ingestor(request).ingest_events(items)
        result = {
            "accepted": len(outcome.accepted),
            "spooled": outcome.spooled,
            "rejected": [r.to_json() for r in outcome.rejected],
        }
        return JSONResponse(result, status_code=202 if outcome.accepted else 422)

    @app.get("/v1/trends", dependencies=[Depends(auth.reader)])
    async def get_trends(
        request: Request,
        source: str | None = None,
        topic: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sentiment: Literal["negative", "neutral", "positive"] | None = None,
        language: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
        order: Literal["newest", "oldest"] = "newest",
    ) -> Any:
        filters = TrendFilters(source, topic, since, until, sentiment, language)
        async with connection(runtime(request).pool) as conn:
            rows, next_cursor = await list_trends(
                conn, filters, limit=limit, cursor=cursor, oldest_first=order == "oldest"
            )
        return {"items": [trend_json(r) for r in rows], "next_cursor": next_cursor}

    @app.get("/v1/trends/{trend_id}", dependencies=[Depends(auth.reader)])
    async def get_one_trend(request: Request, trend_id: UUID) -> Any:
        async with connection(runtime(request).pool) as conn:
            row = await get_trend(conn, trend_id)
        if row is None:
            raise ApiError(404, "not_found", f"no trend with id {trend_id}")
        return trend_json(row)

    @app.get("/v1/ops/status", dependencies=[Depends(auth.writer)])
    async def ops_status(request: Request) -> Any:
        return await collect_status(runtime(request).pool, runtime(request).redis, request.app.state.spool)

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> Any:
        checks: dict[str, str] = {}
        try:
            await runtime(request).redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {exc.__class__.__name__}"
        try:
            async with connection(runtime(request).pool) as conn:
                cur = await conn.execute(queries.MIGRATION_REVISION)
                checks["postgres"] = "ok" if await cur.fetchone() else "not migrated"
        except Exception as exc:
            checks["postgres"] = f"unreachable: {exc.__class__.__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(auth.metrics_reader)])
    async def metrics_endpoint(request: Request) -> Response:
        # The counters and histograms are still worth scraping while an engine is down.
        with contextlib.suppress(TransientError):
            export_status(
                await collect_status(runtime(request).pool, runtime(request).redis, request.app.state.spool)
            )
        return Response(render_metrics(), media_type=CONTENT_TYPE_LATEST)

    return app


def split_batch(body: bytes, *, ndjson: bool) -> list[Received]:
    """A batch body → one item per event: (parsed event or why not, its bytes as received)."""
    if ndjson:
        items = [(parse_body_json(line), line) for line in body.splitlines() if line.strip()]
        if not items:
            raise ApiError(422, "empty_batch", "the batch holds no events")
        return items
    parsed = parse_body_json(body)
    if isinstance(parsed, FieldError):
        raise ApiError(422, parsed.reason, "the body is not a JSON array of events", [parsed.to_json()])
    if not isinstance(parsed, list):
        raise ApiError(
            422,
            "bad_type:batch",
            "a batch is a JSON array (or NDJSON with Content-Type application/x-ndjson)",
        )
    if not parsed:
        raise ApiError(422, "empty_batch", "the batch holds no events")
    return received_items(parsed)
