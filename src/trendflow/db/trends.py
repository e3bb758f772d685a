"""The enriched_trends repository: idempotent batch upsert and the read side's filtered, keyset-paged lists."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from trendflow.db import queries
from trendflow.db.pool import fetch_count
from trendflow.domain.enrich import Enrichment
from trendflow.domain.models import TrendEvent
from trendflow.errors import PermanentError

STAGING_TYPES = [
    "text", "text", "text", "timestamptz", "text[]", "jsonb", "jsonb", "text", "float4", "text", "float4",
    "jsonb", "text", "timestamptz", "int4",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrendRow:
    """One event ready to store: the canonical event, what enrichment found, when the API accepted it."""

    event: TrendEvent
    enrichment: Enrichment
    accepted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredTrend:
    id: UUID
    source: str
    external_id: str
    embedding_status: str

    @property
    def needs_embedding(self) -> bool:
        return self.embedding_status != "succeeded"


async def upsert_trends(conn: psycopg.AsyncConnection, rows: Sequence[TrendRow]) -> list[StoredTrend]:
    """Insert or update a batch in the caller's transaction; one row per (source, external_id) comes back."""
    if not rows:
        return []
    async with conn.transaction(), conn.cursor() as cur:  # the staging table lives until commit
        await cur.execute(queries.CREATE_TREND_STAGING)
        async with cur.copy(queries.COPY_TREND_STAGING) as copy:
            copy.set_types(STAGING_TYPES)
            for position, row in enumerate(rows):
                await copy.write_row((*_staging_values(row), position))
        await cur.execute(queries.UPSERT_TRENDS_FROM_STAGING)
        return [StoredTrend(*record) for record in await cur.fetchall()]


def _staging_values(row: TrendRow) -> tuple[Any, ...]:
    event, found = row.event, row.enrichment
    return (
        event.source,
        event.external_id,
        event.text,
        event.timestamp,
        list(found.topics),
        Jsonb(event.metadata),
        Jsonb(found.geo.to_json()) if found.geo else None,
        found.language,
        found.sentiment_score,
        found.sentiment_label,
        found.confidence_score,
        Jsonb(found.metadata),
        event.content_hash,
        row.accepted_at,
    )


@dataclass(frozen=True, slots=True)
class TrendFilters:
    source: str | None = None
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    sentiment: str | None = None
    language: str | None = None


def filter_conditions(filters: TrendFilters, alias: str = "t") -> tuple[list[sql.Composable], dict[str, Any]]:
    """WHERE conditions for the read side's filters, shared by lists and search."""
    column = sql.Identifier
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if filters.source is not None:
        conditions.append(sql.SQL("{} = %(source)s").format(column(alias, "source")))
        params["source"] = filters.source.strip().lower()
    if filters.topic is not None:
        conditions.append(sql.SQL("{} @> ARRAY[%(topic)s]::text[]").format(column(alias, "topics")))
        params["topic"] = filters.topic.strip().lower().lstrip("#")
    if filters.since is not None:
        conditions.append(sql.SQL("{} >= %(since)s").format(column(alias, "timestamp")))
        params["since"] = filters.since
    if filters.until is not None:
        conditions.append(sql.SQL("{} < %(until)s").format(column(alias, "timestamp")))
        params["until"] = filters.until
    if filters.sentiment is not None:
        conditions.append(sql.SQL("{} = %(sentiment)s").format(column(alias, "sentiment_label")))
        params["sentiment"] = filters.sentiment
    if filters.language is not None:
        conditions.append(sql.SQL("{} = %(language)s").format(column(alias, "language")))
        params["language"] = filters.language
    return conditions, params


async def list_trends(
    conn: psycopg.AsyncConnection,
    filters: TrendFilters,
    *,
    limit: int,
    cursor: str | None = None,
    oldest_first: bool = False,
) -> tuple[list[dict[str, Any]], str | None]:
    """By event time, newest first unless asked; the cursor is a keyset position, so paging never repeats a
    row, even while new rows arrive (rows that land behind the cursor are simply not on later pages)."""
    conditions, params = filter_conditions(filters)
    if cursor is not None:
        position = decode_cursor(cursor)
        beyond = sql.SQL(">" if oldest_first else "<")
        conditions.append(sql.SQL("(t.timestamp, t.id) {} (%(after_ts)s, %(after_id)s)").format(beyond))
        params["after_ts"], params["after_id"] = position
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    direction = sql.SQL("ASC" if oldest_first else "DESC")
    query = sql.SQL(
        "SELECT {columns} FROM enriched_trends t{where} ORDER BY t.timestamp {dir}, t.id {dir} LIMIT %(limit)s"
    )
    params["limit"] = limit + 1
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            query.format(columns=sql.SQL(queries.TREND_COLUMNS), where=where, dir=direction), params
        )
        rows = await cur.fetchall()
    next_cursor = (
        encode_cursor(rows[limit - 1]["timestamp"], rows[limit - 1]["id"]) if len(rows) > limit else None
    )
    return rows[:limit], next_cursor


async def get_trend(conn: psycopg.AsyncConnection, trend_id: UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.GET_TREND, {"id": trend_id})
        return await cur.fetchone()


async def count_trends(conn: psycopg.AsyncConnection) -> int:
    return await fetch_count(conn, queries.COUNT_TRENDS)


def encode_cursor(timestamp: datetime, trend_id: UUID) -> str:
    return base64.urlsafe_b64encode(f"{timestamp.isoformat()}|{trend_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, trend_id = raw.partition("|")
        return datetime.fromisoformat(stamp), UUID(trend_id)
    except (ValueError, UnicodeDecodeError):
        raise PermanentError("bad_cursor", "cursor is not one this API returned") from None


async def progress_of(
    conn: psycopg.AsyncConnection, identities: Sequence[tuple[str, str]]
) -> tuple[int, int]:
    """(stored, embedded) among these (source, external_id) identities."""
    cur = await conn.execute(
        queries.PROGRESS_OF_IDENTITIES,
        {"sources": [s for s, _ in identities], "external_ids": [e for _, e in identities]},
    )
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
