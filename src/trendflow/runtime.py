"""What every trendflow process opens: the engines (embedded or given), the schema, a pool and a Redis client.

async with open_runtime(settings) as runtime:
    async with connection(runtime.pool) as conn: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as redis
from psycopg_pool import AsyncConnectionPool

from trendflow.config import Settings
from trendflow.db.migrate import migrate
from trendflow.db.pool import open_pool
from trendflow.streams.client import open_redis


@dataclass(frozen=True, slots=True)
class Endpoints:
    database_url: str
    redis_url: str


@dataclass(slots=True)
class Runtime:
    settings: Settings
    endpoints: Endpoints
    pool: AsyncConnectionPool
    redis: redis.Redis


def resolve_endpoints(settings: Settings) -> Endpoints:
    """The URLs to use: the settings' own, or the embedded engines', started (or joined) under the data dir.

    The embedded engines stay up while this process lives and stop after the last process using them exits.
    """
    database_url, redis_url = settings.database_url, settings.redis_url
    if database_url is None or redis_url is None:
        from trendflow.engines import acquire_engines

        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handle = acquire_engines(settings.data_dir.resolve())
        database_url = database_url or handle.database_url
        redis_url = redis_url or handle.redis_url
    return Endpoints(database_url, redis_url)


def prepare_database(settings: Settings) -> Endpoints:
    """Resolve the engines and bring the schema up to date (blocking; run it before the event loop's work)."""
    endpoints = resolve_endpoints(settings)
    migrate(endpoints.database_url)
    return endpoints


@asynccontextmanager
async def open_runtime(
    settings: Settings, endpoints: Endpoints | None = None, *, pool_size: int = 8
) -> AsyncIterator[Runtime]:
    endpoints = endpoints or prepare_database(settings)
    pool = await open_pool(endpoints.database_url, max_size=pool_size)
    client = open_redis(endpoints.redis_url)
    try:
        yield Runtime(settings, endpoints, pool, client)
    finally:
        await client.aclose()
        await pool.close()
