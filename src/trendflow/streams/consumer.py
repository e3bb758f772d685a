"""Consumer-group reads, acks and claims on a stream; no knowledge of what the entries mean."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis import exceptions as redis_errors

from trendflow.streams.client import redis_errors_as_transient


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as delivered to this consumer; fields is None when the entry was trimmed away."""

    id: str
    fields: Mapping[bytes, bytes] | None
    deliveries: int = 1


async def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing; reading starts at the beginning of the stream."""
    async with redis_errors_as_transient():
        try:
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def _entries(response: Any) -> list[Entry]:
    if not response:
        return []
    _, messages = response[0]
    return [Entry(_id(message_id), fields or None) for message_id, fields in messages]


def _id(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_new(
    client: redis.Redis, stream: str, group: str, consumer: str, *, count: int, block_ms: int
) -> list[Entry]:
    """Entries never delivered to anyone in the group."""
    async with redis_errors_as_transient():
        response = await client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    return _entries(response)


async def read_own_pending(
    client: redis.Redis, stream: str, group: str, consumer: str, *, count: int
) -> list[Entry]:
    """Entries this consumer was given but did not ack (a transient failure), with their delivery counts."""
    async with redis_errors_as_transient():
        response = await client.xreadgroup(group, consumer, {stream: "0"}, count=count)
        entries = _entries(response)
        return await with_delivery_counts(client, stream, group, entries)


async def with_delivery_counts(
    client: redis.Redis, stream: str, group: str, entries: list[Entry]
) -> list[Entry]:
    if not entries:
        return entries
    async with redis_errors_as_transient():
        details = await client.xpending_range(
            stream, group, min=entries[0].id, max=entries[-1].id, count=len(entries) * 2
        )
    counts = {_id(d["message_id"]): int(d["times_delivered"]) for d in details}
    return [Entry(e.id, e.fields, counts.get(e.id, e.deliveries)) for e in entries]


async def claim_idle(
    client: redis.Redis, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
) -> list[Entry]:
    """Take over entries other consumers left idle (dead or stalled); each comes with its delivery count."""
    async with redis_errors_as_transient():
        _, messages, *_ = await client.xautoclaim(
            stream, group, consumer, min_idle_time=min_idle_ms, count=count
        )
    entries = [Entry(_id(message_id), fields or None) for message_id, fields in messages]
    return await with_delivery_counts(client, stream, group, entries)


async def ack(client: redis.Redis, stream: str, group: str, ids: list[str]) -> None:
    if ids:
        async with redis_errors_as_transient():
            await client.xack(stream, group, *ids)


def fields_as_bytes(entry: Entry) -> bytes:
    """Every field of an entry as `name=value` lines: how an entry with no usable payload is kept."""
    return b"\n".join(k + b"=" + v for k, v in sorted((entry.fields or {}).items()))
