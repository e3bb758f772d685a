"""Topic counts over a time window (the read side of what is trending)."""

from __future__ import annotations

from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from trendflow.db import queries


async def topic_window_counts(
    conn: psycopg.AsyncConnection, since: datetime, until: datetime, *, limit: int = 10
) -> list[dict]:
    """Topics by event count in [since, until), each with its count in the window just before."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.TOPIC_WINDOW_COUNTS, {"since": since, "until": until, "limit": limit})
        return await cur.fetchall()
