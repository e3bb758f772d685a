"""Appending to the streams: pipelined XADD, one round trip per batch."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import redis.asyncio as redis

from trendflow.streams import names
from trendflow.streams.client import redis_errors_as_transient


async def publish_raw_events(
    client: redis.Redis, payloads: Sequence[bytes], *, accepted_at_ms: int
) -> list[str]:
    """Append raw events (JSON bytes, as posted) to trends:raw; returns the entry ids."""
    return await _xadd_many(
        client,
        names.RAW_STREAM,
        [{names.EVENT_FIELD: payload, names.ACCEPTED_AT_FIELD: accepted_at_ms} for payload in payloads],
    )


async def publish_embed_jobs(client: redis.Redis, trend_ids: Sequence[UUID]) -> list[str]:
    """One job per stored trend that needs its embedding."""
    return await _xadd_many(
        client, names.EMBED_STREAM, [{names.TREND_ID_FIELD: str(tid)} for tid in trend_ids]
    )


async def _xadd_many(client: redis.Redis, stream: str, entries: Sequence[dict]) -> list[str]:
    if not entries:
        return []
    async with redis_errors_as_transient():
        pipe = client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(stream, fields)
        ids = await pipe.execute()
    return [i.decode() if isinstance(i, bytes) else i for i in ids]
