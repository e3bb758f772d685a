"""The one PostgreSQL seam: a pool per process, and driver errors turned into trendflow's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from trendflow.errors import PermanentError, TransientError


async def _configure(connection: psycopg.AsyncConnection) -> None:
    await register_vector_async(connection)
    # Autocommit by default: a function that wants a transaction says so with `connection.transaction()`.
    await connection.set_autocommit(True)


async def open_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 8, open_timeout_s: float = 10.0
) -> AsyncConnectionPool:
    """Open the process's pool; the schema (and so the vector type) must already exist."""
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        timeout=open_timeout_s,
        configure=_configure,
        # A connection that died with its server (a PostgreSQL restart) is replaced before it is lent out,
        # instead of failing the first request that borrows it.
        check=AsyncConnectionPool.check_connection,
        open=False,
        kwargs={"connect_timeout": 5},
    )
    try:
        await pool.open(wait=True, timeout=open_timeout_s)
    except PoolTimeout:
        await pool.close()
        raise TransientError("PostgreSQL unreachable: could not open a connection") from None
    return pool


@asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection]:
    """Borrow a connection; driver errors come out as TransientError or PermanentError."""
    try:
        async with pool.connection() as conn:
            yield conn
    except (psycopg.OperationalError, psycopg.errors.AdminShutdown, PoolTimeout) as exc:
        raise TransientError(f"PostgreSQL unavailable: {exc.__class__.__name__}") from exc
    except psycopg.errors.SerializationFailure as exc:
        raise TransientError("PostgreSQL serialization failure") from exc
    except psycopg.errors.DeadlockDetected as exc:
        raise TransientError("PostgreSQL deadlock") from exc
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        raise PermanentError(
            "database_rejected", f"{exc.__class__.__name__}: {exc.diag.message_primary}"
        ) from exc
    except psycopg.InterfaceError as exc:
        raise TransientError(f"PostgreSQL connection lost: {exc}") from exc


async def fetch_count(
    conn: psycopg.AsyncConnection, query: str | sql.Composed, params: dict[str, Any] | None = None
) -> int:
    """The single integer a count(*) query answers."""
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0
