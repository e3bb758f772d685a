"""The api_keys repository: keys issued at run time, stored as SHA-256 hashes only.

key = new_api_key()                       # "tf_…", shown to the operator once
row = await create_api_key(conn, key, name="ci", sources=["web"], now=now)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from trendflow.db import queries

KEY_PREFIX = "tf_"


def new_api_key() -> str:
    """A fresh key: the prefix and 32 url-safe random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest that is stored and compared in place of the key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


async def create_api_key(
    conn: psycopg.AsyncConnection,
    key: str,
    *,
    name: str | None,
    sources: Sequence[str] | None,
    now: datetime,
) -> dict[str, Any]:
    """Store the key's hash; `sources` None means the key may post as any source."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            queries.INSERT_API_KEY,
            {
                "name": name,
                "key_hash": hash_api_key(key),
                "sources": list(sources) if sources else None,
                "now": now,
            },
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_api_keys(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    """Every key, revoked ones included, oldest first (hashes are not returned)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.LIST_API_KEYS)
        return await cur.fetchall()


async def active_api_keys(conn: psycopg.AsyncConnection) -> list[tuple[UUID, str, list[str] | None]]:
    """(id, key hash, sources) of every key not revoked."""
    cur = await conn.execute(queries.ACTIVE_API_KEY_HASHES)
    return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


async def revoke_api_key(
    conn: psycopg.AsyncConnection, key_id: UUID, *, now: datetime
) -> dict[str, Any] | None:
    """Revoke a key (a second revoke keeps the first time); None when no key has that id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.REVOKE_API_KEY, {"id": key_id, "now": now})
        return await cur.fetchone()


def api_key_json(row: dict[str, Any]) -> dict[str, Any]:
    """A key row as `keys list --json` prints it."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "sources": row["sources"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }
