"""The dead_letters repository: one durable row per failing payload and stage, updated when it fails again."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from trendflow.db import queries


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
    cur = await conn.execute(queries.COUNT_DEAD_LETTERS)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def payload_view(payload: bytes) -> dict[str, str]:
    """How a payload is shown: as text when it is UTF-8, else base64, saying which."""
    try:
        return {"payload": payload.decode("utf-8"), "payload_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payload_encoding": "base64"}
