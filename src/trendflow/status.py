"""The operator's view (DESIGN §6 shape), read straight from the engines: works from any process."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from psycopg_pool import AsyncConnectionPool

from trendflow.db.dead_letters import count_dead_letters
from trendflow.db.embeddings import embedding_backlog, latest_activity
from trendflow.db.pool import connection
from trendflow.spool import Spool
from trendflow.streams import names
from trendflow.streams.backlog import stream_info


async def collect_status(pool: AsyncConnectionPool, client: redis.Redis, spool: Spool) -> dict[str, Any]:
    streams = {}
    for stream in (names.RAW_STREAM, names.EMBED_STREAM):
        info = await stream_info(client, stream)
        streams[stream] = {
            "length": info.length,
            "groups": {
                name: {
                    "lag": group.lag,
                    "pending": group.pending,
                    "consumers": [
                        {"name": c.name, "pending": c.pending, "idle_ms": c.idle_ms} for c in group.consumers
                    ],
                }
                for name, group in info.groups.items()
            },
        }
    async with connection(pool) as conn:
        dead_letters = await count_dead_letters(conn)
        backlog = await embedding_backlog(conn)
        ingested_at, embedded_at = await latest_activity(conn)
    spooled = await asyncio.to_thread(spool.status)
    return {
        "streams": streams,
        "dead_letters": dead_letters,
        "spool": {"events": spooled.events, "bytes": spooled.bytes, "torn": spooled.torn},
        "embedding_backlog": backlog,
        "latest": {
            "ingested_at": ingested_at.isoformat() if ingested_at else None,
            "embedded_at": embedded_at.isoformat() if embedded_at else None,
        },
    }
