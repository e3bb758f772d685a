"""How far behind each consumer group is, and trimming what every group has acknowledged.

Each stream has one consumer group, and after every batch the stream is trimmed below its oldest unacknowledged
entry (never past it). So the stream holds exactly the pending entries plus those not yet delivered, and the
group's lag is the stream's length less its pending count: exact and O(1), on Redis 6.2 as on 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from redis import exceptions as redis_errors

from trendflow.streams.client import redis_errors_as_transient


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    name: str
    pending: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    lag: int
    pending: int
    last_delivered_id: str
    consumers: tuple[ConsumerInfo, ...]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    length: int
    groups: dict[str, GroupInfo]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _next_id(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


async def stream_info(client: redis.Redis, stream: str) -> StreamInfo:
    async with redis_errors_as_transient():
        length = await client.xlen(stream)
        try:
            raw_groups = await client.xinfo_groups(stream)
        except redis_errors.ResponseError:  # no such stream yet
            return StreamInfo(length, {})
        groups = {}
        for group in raw_groups:
            name = _text(group["name"])
            consumers = await client.xinfo_consumers(stream, name)
            pending = int(group["pending"])
            lag = group.get("lag")
            groups[name] = GroupInfo(
                lag=int(lag) if lag is not None else max(0, length - pending),
                pending=pending,
                last_delivered_id=_text(group["last-delivered-id"]),
                consumers=tuple(
                    ConsumerInfo(_text(c["name"]), int(c["pending"]), int(c["idle"])) for c in consumers
                ),
            )
    return StreamInfo(length, groups)


async def trim_acknowledged(client: redis.Redis, stream: str, group: str) -> None:
    """Drop entries below the group's oldest unacknowledged one (or all delivered and acked ones).

    The last-delivered id is read BEFORE the pending summary: if nothing is pending at that later moment,
    everything delivered up to the id read first has been acked, whatever was delivered in between. Read the
    other way round, an entry delivered between the two reads could be trimmed while still pending.
    """
    async with redis_errors_as_transient():
        groups = await client.xinfo_groups(stream)
        last = next((_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == group), None)
        summary = await client.xpending(stream, group)
        if summary["pending"]:
            floor = _text(summary["min"])
        elif last is None or last == "0-0":
            return
        else:
            floor = _next_id(last)
        await client.xtrim(stream, minid=floor, approximate=False)


async def group_lag(client: redis.Redis, stream: str, group: str) -> int:
    info = await stream_info(client, stream)
    found = info.groups.get(group)
    return found.lag if found else info.length
