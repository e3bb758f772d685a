"""The one Redis seam: a client per process, and driver errors turned into trendflow's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from redis import exceptions as redis_errors

from trendflow.errors import TransientError

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
    ConnectionError,
    OSError,
)


def open_redis(redis_url: str, *, socket_timeout: float = 10.0) -> redis.Redis:
    """A client for this process; connections are made lazily, so this never fails on a down server."""
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=socket_timeout,
        health_check_interval=15,
        max_connections=64,
    )


@asynccontextmanager
async def redis_errors_as_transient() -> AsyncIterator[None]:
    """Run Redis calls; a connection problem comes out as TransientError."""
    try:
        yield
    except TRANSIENT_ERRORS as exc:
        raise TransientError(f"Redis unavailable: {exc.__class__.__name__}") from exc
    except redis_errors.ResponseError as exc:
        if is_transient_response(exc):
            raise TransientError(f"Redis not ready: {exc}") from exc
        raise


def is_transient_response(exc: redis_errors.ResponseError) -> bool:
    """An error reply that passes: Redis full (maxmemory; the API spools, the workers back off, until it
    drains), loading, or a cluster/replica not ready. redis-py strips the code into a class for some; inside a
    script, Redis 6 reports the OOM in the message of a plain error."""
    if isinstance(exc, redis_errors.OutOfMemoryError | redis_errors.TryAgainError):
        return True
    message = str(exc)
    return message.startswith(("MASTERDOWN", "CLUSTERDOWN")) or "-OOM command not allowed" in message
