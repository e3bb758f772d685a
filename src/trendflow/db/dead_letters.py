"""The dead_letters repository: one durable row per failing payload and stage, updated when it fails again."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from trendflow.db import queries
from trendflow.db.pool import fetch_count


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload that could not be processed, with why and where."""

    stage: str  # api | etl | embed
    reason: str  # a stable reason code, e.g. missing_field:text
    payload: bytes  # exactly as received
    error_class: str = "permanent"  # permanent | transient
    message: str = ""
    deliveries: int = 1
    source: str | None = None
    external_id: str | None = None
    stream_id: str | None = None


def lost_entry(stage: str, entry_id: str, deliveries: int) -> DeadLetter:
    """A stream entry that came back without its fields: it was deleted while still pending, its payload gone.

    trendflow never trims past an unacknowledged entry, so this means someone else did (XTRIM MAXLEN, XDEL):
    it is recorded loudly rather than acked in silence."""
    return DeadLetter(
        stage=stage,
        reason="entry_lost",
        payload=entry_id.encode(),
        error_class="transient",
        message="the stream entry was deleted before it was processed; its payload is gone",
        deliveries=deliveries,
        stream_id=entry_id,
    )


async def record_dead_letters(
    conn: psycopg.AsyncConnection, letters: list[DeadLetter], now: datetime
) -> list[tuple[UUID, bool]]:
    """Upsert each letter; returns (id, created) where created is False for a payload already dead-lettered."""
    results = []
    async with conn.cursor() as cur:
        for letter in letters:
            await cur.execute(
                queries.UPSERT_DEAD_LETTER,
                {
                    "stage": letter.stage,
                    "reason": letter.reason,
                    "error_class": letter.error_class,
                    "message": letter.message,
                    "payload": letter.payload,
                    "payload_hash": hashlib.sha256(letter.payload).hexdigest(),
                    "source": letter.source,
                    "external_id": letter.external_id,
                    "stream_id": letter.stream_id,
                    "deliveries": letter.deliveries,
                    "now": now,
                },
            )
            row = await cur.fetchone()
            assert row is not None
            results.append((row[0], bool(row[1])))
    return results


async def get_dead_letter(conn: psycopg.AsyncConnection, letter_id: UUID) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.GET_DEAD_LETTER, {"id": letter_id})
        return await cur.fetchone()


async def count_dead_letters(conn: psycopg.AsyncConnection) -> int:
    return await fetch_count(conn, queries.COUNT_DEAD_LETTERS)


def payload_view(payload: bytes) -> dict[str, str]:
    """How a payload is shown: as text when it is UTF-8, else base64, saying which."""
    try:
        return {"payload": payload.decode("utf-8"), "payload_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payload_encoding": "base64"}


# -- listing, replay and purge ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetterFilters:
    """Which letters an operator means; times are compared with last_seen (since ≤ last_seen < until)."""

    stage: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    seen_by: datetime | None = None  # last_seen ≤ seen_by: what existed when a bulk replay started
    ids: Sequence[UUID] | None = None


def _where(
    filters: DeadLetterFilters, extra: Sequence[sql.Composable] = ()
) -> tuple[sql.Composable, dict[str, Any]]:
    conditions: list[sql.Composable] = []
    params: dict[str, Any] = {}
    for name, condition in (
        ("stage", "stage = %(stage)s"),
        ("reason", "reason = %(reason)s"),
        ("since", "last_seen >= %(since)s"),
        ("until", "last_seen < %(until)s"),
        ("seen_by", "last_seen <= %(seen_by)s"),
        ("ids", "id = ANY(%(ids)s)"),
    ):
        value = getattr(filters, name)
        if value is not None:
            conditions.append(sql.SQL(condition))
            params[name] = list(value) if name == "ids" else value
    conditions += extra
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    return where, params


async def select_dead_letters(
    conn: psycopg.AsyncConnection,
    filters: DeadLetterFilters,
    *,
    limit: int,
    before: tuple[datetime, UUID] | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `before` is the keyset position (last_seen, id) of the previous page's last row."""
    extra = [sql.SQL("(last_seen, id) < (%(before_seen)s, %(before_id)s)")] if before else []
    where, params = _where(filters, extra)
    if before:
        params["before_seen"], params["before_id"] = before
    params["limit"] = limit
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL(queries.LIST_DEAD_LETTERS).format(where=where), params)
        return await cur.fetchall()


async def select_dead_letters_to_replay(
    conn: psycopg.AsyncConnection,
    filters: DeadLetterFilters,
    *,
    limit: int,
    after: tuple[datetime, UUID] | None = None,
    lock: bool,
) -> list[dict[str, Any]]:
    """Oldest first after the keyset position `after`; with `lock`, rows another replay holds are skipped."""
    extra = [sql.SQL("(last_seen, id) > (%(after_seen)s, %(after_id)s)")] if after else []
    where, params = _where(filters, extra)
    if after:
        params["after_seen"], params["after_id"] = after
    params["limit"] = limit
    lock_clause = sql.SQL(" FOR UPDATE SKIP LOCKED" if lock else "")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(queries.SELECT_DEAD_LETTERS_TO_REPLAY).format(where=where, lock=lock_clause), params
        )
        return await cur.fetchall()


async def lock_dead_letter(conn: psycopg.AsyncConnection, letter_id: UUID) -> dict[str, Any] | None:
    """The letter, locked until the caller's transaction ends (a concurrent replay of it waits)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.LOCK_DEAD_LETTER, {"id": letter_id})
        return await cur.fetchone()


async def mark_still_failing(
    conn: psycopg.AsyncConnection, letter_id: UUID, *, reason: str, message: str, error_class: str
) -> None:
    await conn.execute(
        queries.MARK_DEAD_LETTER_STILL_FAILING,
        {"id": letter_id, "reason": reason, "message": message, "error_class": error_class},
    )


async def delete_dead_letters(conn: psycopg.AsyncConnection, ids: Sequence[UUID]) -> int:
    if not ids:
        return 0
    cur = await conn.execute(queries.DELETE_DEAD_LETTERS, {"ids": list(ids)})
    return cur.rowcount


async def purge_dead_letters(
    conn: psycopg.AsyncConnection, filters: DeadLetterFilters, *, dry_run: bool
) -> int:
    """Delete the matching letters (or only count them); returns how many."""
    where, params = _where(filters)
    if dry_run:
        return await fetch_count(
            conn, sql.SQL(queries.COUNT_MATCHING_DEAD_LETTERS).format(where=where), params
        )
    cur = await conn.execute(sql.SQL(queries.PURGE_DEAD_LETTERS).format(where=where), params)
    return cur.rowcount


async def existing_trend_ids(conn: psycopg.AsyncConnection, ids: Sequence[UUID]) -> set[UUID]:
    if not ids:
        return set()
    cur = await conn.execute(queries.EXISTING_TRENDS, {"ids": list(ids)})
    return {row[0] for row in await cur.fetchall()}
