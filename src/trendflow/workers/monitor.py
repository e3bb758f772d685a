"""The monitor: drains the fallback spool into the stream when Redis is back, and removes dead consumers.

Claiming idle entries is done by the live workers themselves (XAUTOCLAIM in their loop); the monitor only
tidies and watches.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio as redis
import structlog

from trendflow.clock import epoch_ms, system_clock
from trendflow.errors import TransientError
from trendflow.spool import Spool
from trendflow.streams import names
from trendflow.streams.backlog import stream_info
from trendflow.streams.client import redis_errors_as_transient
from trendflow.streams.producer import publish_raw_events

log = structlog.get_logger()

DEAD_CONSUMER_IDLE_MS = 10 * 60 * 1000


async def replay_spool(client: redis.Redis, spool: Spool) -> int:
    """Publish every spooled event, in order; returns how many were replayed."""

    async def publish(batch: list[bytes]) -> None:
        await publish_raw_events(client, batch, accepted_at_ms=epoch_ms(system_clock()))

    replayed = await spool.replay(publish)
    if replayed:
        log.info("spool_replayed", events=replayed)
    return replayed


async def remove_dead_consumers(client: redis.Redis, idle_ms: int = DEAD_CONSUMER_IDLE_MS) -> list[str]:
    """Delete consumers that own nothing and have been silent for a long time."""
    removed = []
    for stream, group in names.GROUPS.items():
        found = (await stream_info(client, stream)).groups.get(group)
        for consumer in found.consumers if found else ():
            if consumer.pending == 0 and consumer.idle_ms > idle_ms:
                async with redis_errors_as_transient():
                    await client.xgroup_delconsumer(stream, group, consumer.name)
                removed.append(consumer.name)
    return removed


async def run_monitor(
    client: redis.Redis, spool: Spool, stop: asyncio.Event, *, interval_s: float = 1.0
) -> None:
    while not stop.is_set():
        try:
            if spool.status().events:
                await replay_spool(client, spool)
            await remove_dead_consumers(client)
        except TransientError as exc:
            log.warning("monitor_dependency_unavailable", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
