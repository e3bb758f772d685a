"""The embedding stage: embed jobs → rows loaded → one model call per batch → vectors stored → ack.

A job whose row is not there yet (its ETL transaction has not committed) stays pending and is retried; after
TRENDFLOW_MAX_DELIVERIES deliveries it becomes a dead letter. Identical text is embedded once: vectors are
cached by content hash across the whole table, and a row whose text did not change is never re-embedded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import numpy as np
import redis.asyncio as redis
import structlog
from psycopg_pool import AsyncConnectionPool

from trendflow import metrics
from trendflow.alerts import Alerter
from trendflow.clock import Clock, system_clock
from trendflow.db.dead_letters import DeadLetter, lost_entry, record_dead_letters
from trendflow.db.embeddings import (
    EmbeddingWrite,
    TrendToEmbed,
    load_cached_embeddings,
    load_trends_to_embed,
    store_embeddings,
)
from trendflow.db.pool import connection
from trendflow.embedding.model import Embedder
from trendflow.streams import names
from trendflow.streams.backlog import trim_acknowledged
from trendflow.streams.consumer import Entry, ack, fields_as_bytes

log = structlog.get_logger()

# Jobs read per batch, in model batches: the worker encodes one while it stores the one before.
MODEL_BATCHES_PER_READ = 4


@dataclass(slots=True)
class EmbedPlan:
    """What one batch needs: jobs by trend, the distinct texts to encode, what to retry or dead-letter."""

    jobs: dict[UUID, list[str]] = field(default_factory=dict)  # trend id -> entry ids (duplicates collapse)
    bad_entries: list[Entry] = field(default_factory=list)
    lost_entries: list[Entry] = field(default_factory=list)


def plan_jobs(entries: Sequence[Entry]) -> EmbedPlan:
    plan = EmbedPlan()
    for entry in entries:
        if entry.fields is None:
            plan.lost_entries.append(entry)
            continue
        try:
            trend_id = UUID(entry.fields[names.TREND_ID_FIELD.encode()].decode())
        except (KeyError, ValueError, UnicodeDecodeError):
            plan.bad_entries.append(entry)
            continue
        plan.jobs.setdefault(trend_id, []).append(entry.id)
    return plan


class EmbedWorker:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        client: redis.Redis,
        embedder: Embedder,
        *,
        max_deliveries: int,
        model_batch_size: int = 64,
        clock: Clock = system_clock,
        alerter: Alerter | None = None,
    ) -> None:
        self.alerter = alerter
        self.pool = pool
        self.redis = client
        self.embedder = embedder
        self.max_deliveries = max_deliveries
        self.model_batch_size = model_batch_size
        self.clock = clock
        self.model_inputs = 0  # texts given to the model by this worker, for tests and benchmarks

    async def process_batch(self, entries: list[Entry]) -> int:
        started = time.perf_counter()
        plan = plan_jobs(entries)
        deliveries = {e.id: e.deliveries for e in entries}
        async with connection(self.pool) as conn:
            trends = await load_trends_to_embed(conn, list(plan.jobs))
        missing = [tid for tid in plan.jobs if tid not in trends]
        marked, model_inputs = await embed_trends(
            self.pool, self.embedder, list(trends.values()), model_batch_size=self.model_batch_size
        )
        self.model_inputs += model_inputs
        letters = [
            DeadLetter(
                "embed", "bad_job", fields_as_bytes(e), message="entry has no valid trend_id", stream_id=e.id
            )
            for e in plan.bad_entries
        ] + [lost_entry("embed", e.id, e.deliveries) for e in plan.lost_entries]
        exhausted = [
            tid for tid in missing if max(deliveries[i] for i in plan.jobs[tid]) >= self.max_deliveries
        ]
        letters += [
            DeadLetter("embed", "trend_not_found", str(tid).encode(), error_class="transient",
                       message="the trend never appeared in PostgreSQL",
                       deliveries=max(deliveries[i] for i in plan.jobs[tid]), stream_id=plan.jobs[tid][0])
            for tid in exhausted
        ]  # fmt: skip
        if letters:
            async with connection(self.pool) as conn:
                await record_dead_letters(conn, letters, self.clock())
        for letter in letters:
            metrics.DEAD_LETTERS.labels(stage="embed", reason=letter.reason).inc()
        if self.alerter is not None and letters:
            self.alerter.dead_letters("embed", [letter.reason for letter in letters])
        done = [i for tid in trends for i in plan.jobs[tid]] + [
            i for tid in exhausted for i in plan.jobs[tid]
        ]
        await ack(
            self.redis,
            names.EMBED_STREAM,
            names.EMBED_GROUP,
            done + [e.id for e in plan.bad_entries + plan.lost_entries],
        )
        await trim_acknowledged(self.redis, names.EMBED_STREAM, names.EMBED_GROUP)
        self._observe(marked, started, len(entries), len(missing) - len(exhausted))
        return len(missing) - len(exhausted)

    def _observe(
        self, marked: list[tuple[UUID, datetime | None]], started: float, entries: int, waiting: int
    ) -> None:
        now = self.clock()
        for _, accepted in marked:
            if accepted is not None:
                metrics.TIME_TO_SEARCHABLE_SECONDS.observe(max(0.0, (now - accepted).total_seconds()))
        elapsed = time.perf_counter() - started
        metrics.EMBED_BATCH_SECONDS.observe(elapsed)
        metrics.EVENTS_EMBEDDED.inc(len(marked))
        log.info("embed_batch", entries=entries, embedded=len(marked), waiting_for_row=waiting,
                 duration_ms=round(elapsed * 1000, 1))  # fmt: skip


def model_batches(tokens: dict[str, int], size: int, *, tokens_per_text: int = 128) -> list[list[str]]:
    """Keys of `tokens` (key → the text's token count) in model batches, fewest tokens first, so that texts of
    one length share a batch and little is padding; at most `size` texts a batch, and at most
    `size × tokens_per_text` tokens once padded to the batch's longest, so that long texts make smaller batches.

    model.encode sorts by characters, which pads ~20% more on tweets: an emoji or a URL is one character and
    several tokens."""
    budget = size * tokens_per_text
    batches: list[list[str]] = []
    batch: list[str] = []
    for key in sorted(tokens, key=tokens.__getitem__):
        if batch and (len(batch) == size or (len(batch) + 1) * tokens[key] > budget):
            batches.append(batch)
            batch = []
        batch.append(key)
    return [*batches, batch] if batch else batches


async def embed_trends(
    pool: AsyncConnectionPool, embedder: Embedder, trends: Sequence[TrendToEmbed], *, model_batch_size: int
) -> tuple[list[tuple[UUID, datetime | None]], int]:
    """Embed and store these trends; returns the (id, accepted_at) marked embedded and how many texts the
    model was given. Each distinct text not already embedded anywhere (content-hash cache) is encoded once,
    a model batch at a time, and each batch's vectors are stored while the next one encodes, so that the
    model never waits on PostgreSQL (an HNSW insert is not free)."""
    by_hash: dict[str, list[TrendToEmbed]] = {}
    for trend in trends:
        by_hash.setdefault(trend.content_hash, []).append(trend)
    async with connection(pool) as conn:
        cached = await load_cached_embeddings(conn, embedder.name, sorted(by_hash))
    todo = {h: trends[0].text for h, trends in by_hash.items() if h not in cached}
    tokens = dict(zip(todo, await asyncio.to_thread(embedder.token_counts, list(todo.values())), strict=True))

    async def store(vectors: dict[str, np.ndarray]) -> list[tuple[UUID, datetime | None]]:
        if not vectors:
            return []
        writes = [EmbeddingWrite(t.id, h, vector) for h, vector in vectors.items() for t in by_hash[h]]
        async with connection(pool) as conn:
            return await store_embeddings(conn, embedder.name, writes)

    marked: list[tuple[UUID, datetime | None]] = []
    storing = asyncio.create_task(store(cached))
    try:
        for chunk in model_batches(tokens, model_batch_size):
            metrics.MODEL_BATCH_SIZE.observe(len(chunk))
            encoded = await asyncio.to_thread(
                embedder.encode, [todo[h] for h in chunk], batch_size=model_batch_size
            )
            marked += await storing
            storing = asyncio.create_task(store(dict(zip(chunk, encoded, strict=True))))
        marked += await storing
    finally:
        if not storing.done():
            storing.cancel()
            with contextlib.suppress(BaseException):
                await storing
    return marked, len(todo)
