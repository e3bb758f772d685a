"""The thin loop around a worker's process_batch: read, process, back off on a dependency failure, stop cleanly.

Entries a batch leaves unacked (a transient failure, or an embed job whose row is not there yet) stay in this
consumer's pending list and are read again after a backoff; entries idle too long under other consumers (dead or
stalled ones) are claimed with XAUTOCLAIM. Either way the entry's delivery count grows, and process_batch turns an
entry delivered more than TRENDFLOW_MAX_DELIVERIES times into a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as redis
import structlog

from trendflow.domain.retry import Backoff
from trendflow.errors import TransientError
from trendflow.streams.consumer import Entry, claim_idle, ensure_group, read_new, read_own_pending

log = structlog.get_logger()

ProcessBatch = Callable[[list[Entry]], Awaitable[int]]  # returns how many entries were left unacked


def consumer_name(role: str) -> str:
    return f"{role}-{socket.gethostname()}-{os.getpid()}"


@dataclass(slots=True)
class LoopSettings:
    stream: str
    group: str
    consumer: str
    batch_size: int
    claim_idle_ms: int
    block_ms: int = 1000
    claim_every_s: float = 1.0


async def run_consumer(
    client: redis.Redis, settings: LoopSettings, process_batch: ProcessBatch, stop: asyncio.Event
) -> None:
    """Consume until `stop` is set; the batch in hand is always finished (processed and acked) first."""
    backoff = Backoff()
    retry = PendingRetry()
    next_claim_at = 0.0
    group_ready = False
    while not stop.is_set():
        retrying = False
        try:
            if not group_ready:
                await ensure_group(client, settings.stream, settings.group)
                group_ready = True
            now = time.monotonic()
            entries: list[Entry] = []
            if retry.is_due(now):
                count = 1 if retry.one_at_a_time else settings.batch_size
                entries = await read_own_pending(
                    client, settings.stream, settings.group, settings.consumer, count=count
                )
                retrying = bool(entries)
                if not entries:
                    retry = PendingRetry(due_at=None)
            if not entries and now >= next_claim_at:
                next_claim_at = now + settings.claim_every_s
                entries = await claim_idle(
                    client, settings.stream, settings.group, settings.consumer,
                    min_idle_ms=settings.claim_idle_ms, count=settings.batch_size,
                )  # fmt: skip
            if not entries:
                entries = await read_new(
                    client, settings.stream, settings.group, settings.consumer,
                    count=settings.batch_size, block_ms=settings.block_ms,
                )  # fmt: skip
            if not entries:
                continue
            if await process_batch(entries):
                retry.failed(time.monotonic(), backoff.next_delay(), retrying)
            elif retrying:
                retry.due_at = time.monotonic()  # drain the rest of the pending list now
            else:
                backoff.reset()
        except TransientError as exc:
            delay = backoff.next_delay()
            log.warning(
                "dependency_unavailable", stream=settings.stream, error=str(exc), retry_in_s=round(delay, 2)
            )
            retry.failed(time.monotonic(), delay, retrying)
            group_ready = False
            await _sleep_unless_stopped(stop, delay)
        except Exception:
            # A bug must not kill the worker: the batch stays pending, is retried after a backoff, and an entry
            # that keeps failing ends as a dead letter once it passes TRENDFLOW_MAX_DELIVERIES.
            delay = backoff.next_delay()
            log.exception("batch_failed_unexpectedly", stream=settings.stream, retry_in_s=round(delay, 2))
            retry.failed(time.monotonic(), delay, retrying)
            await _sleep_unless_stopped(stop, delay)


@dataclass(slots=True)
class PendingRetry:
    """When to re-read this consumer's own unacked entries, and how many at a time.

    A failed batch is first retried whole (an outage fails every entry alike, and the whole batch goes
    through once it is over). If the retry fails too, the entries are retried one at a time, so that one
    poison entry reaches TRENDFLOW_MAX_DELIVERIES alone instead of taking its batch-mates with it.
    """

    due_at: float | None = 0.0  # None: nothing to retry; 0.0 at start: re-read what this name owned before
    one_at_a_time: bool = False

    def is_due(self, now: float) -> bool:
        return self.due_at is not None and now >= self.due_at

    def failed(self, now: float, delay: float, was_retry: bool) -> None:
        self.one_at_a_time = self.one_at_a_time or was_retry
        self.due_at = now + delay


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
