"""The monitor: replays the fallback spool once Redis is back, removes dead consumers, and raises alerts.

Claiming idle entries is done by the live workers themselves (XAUTOCLAIM in their loop); the monitor tidies
and watches: a non-empty spool, consumers whose pending entries age past TRENDFLOW_CLAIM_IDLE_MS (stalled:
nobody live is reclaiming them), and an embedding backlog past its threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import redis.asyncio as redis
import structlog
from psycopg_pool import AsyncConnectionPool

from trendflow.alerts import EMBEDDING_BACKLOG, SPOOL_NOT_EMPTY, STALLED_CONSUMER, Alerter
from trendflow.db.embeddings import embedding_backlog
from trendflow.db.pool import connection
from trendflow.errors import TransientError
from trendflow.spool import Spool
from trendflow.streams import names
from trendflow.streams.backlog import StreamInfo, stream_info
from trendflow.streams.client import redis_errors_as_transient
from trendflow.streams.producer import publish_raw_events

log = structlog.get_logger()

DEAD_CONSUMER_IDLE_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    claim_idle_ms: int
    backlog_alert_at: int = 10_000
    interval_s: float = 1.0


async def replay_spool(client: redis.Redis, spool: Spool) -> int:
    """Publish every spooled event, in order; returns how many were replayed."""

    async def publish(batch: list[bytes], accepted_at_ms: int) -> None:
        await publish_raw_events(client, batch, accepted_at_ms=accepted_at_ms)

    replayed = await spool.replay(publish)
    if replayed:
        log.info("spool_replayed", events=replayed)
    return replayed


def stalled_consumers(streams: dict[str, StreamInfo], idle_ms: int) -> list[tuple[str, str, int]]:
    """(stream, consumer, pending) for consumers holding entries while silent longer than idle_ms."""
    return [
        (stream, consumer.name, consumer.pending)
        for stream, info in streams.items()
        for group in info.groups.values()
        for consumer in group.consumers
        if consumer.pending and consumer.idle_ms > idle_ms
    ]


async def remove_dead_consumers(
    client: redis.Redis, streams: dict[str, StreamInfo], idle_ms: int = DEAD_CONSUMER_IDLE_MS
) -> list[str]:
    """Delete consumers that own nothing and have been silent for a long time."""
    removed = []
    for stream, group in names.GROUPS.items():
        found = streams[stream].groups.get(group)
        for consumer in found.consumers if found else ():
            if consumer.pending == 0 and consumer.idle_ms > idle_ms:
                async with redis_errors_as_transient():
                    await client.xgroup_delconsumer(stream, group, consumer.name)
                removed.append(consumer.name)
    return removed


async def check_once(
    pool: AsyncConnectionPool, client: redis.Redis, spool: Spool, alerter: Alerter, settings: MonitorSettings
) -> None:
    spooled = (await asyncio.to_thread(spool.status)).events
    if spooled:
        alerter.alert(
            SPOOL_NOT_EMPTY, "spool", count=spooled, summary=f"{spooled} events wait in the fallback spool"
        )
        await replay_spool(client, spool)
    streams = {stream: await stream_info(client, stream) for stream in names.GROUPS}
    for stream, consumer, pending in stalled_consumers(streams, settings.claim_idle_ms):
        alerter.alert(
            STALLED_CONSUMER, f"{stream}:{consumer}", details={"stream": stream, "consumer": consumer, "pending": pending},
            summary=f"consumer {consumer} holds {pending} entries of {stream} and has gone quiet",
        )  # fmt: skip
    await remove_dead_consumers(client, streams)
    async with connection(pool) as conn:
        backlog = await embedding_backlog(conn)
    if backlog > settings.backlog_alert_at:
        alerter.alert(
            EMBEDDING_BACKLOG, "embedding", summary=f"{backlog} stored trends wait for their embedding"
        )


async def run_monitor(
    pool: AsyncConnectionPool,
    client: redis.Redis,
    spool: Spool,
    alerter: Alerter,
    settings: MonitorSettings,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            await check_once(pool, client, spool, alerter, settings)
        except TransientError as exc:
            log.warning("monitor_dependency_unavailable", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.interval_s)
