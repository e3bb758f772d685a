"""`trendflow bench`: each stage's throughput beside its raw limit, measured in the same run (DESIGN §8).

Everything runs on embedded engines in a throwaway data dir, so a bench never touches real data. Each stage
alternates its measured path and its raw limit batch by batch, so both see the same load from whatever else
runs on the machine:

- ingest: batches of 500 through the real API (`trendflow api` as a subprocess, httpx, 4 requests in flight)
  against a redis-py pipeline XADDing the same entries to a key of its own;
- etl: `EtlWorker.process_batch` over the entries the API accepted, against `upsert_trends` (COPY into
  staging + one upsert) of the same rows already normalized and enriched, under another source so both insert;
- embed: `EmbedWorker.process_batch` over embed jobs with distinct texts (the cache cannot help) against
  `Embedder.encode` of the same texts at the same batch size;
- e2e: events posted at a steady rate while `trendflow worker etl` and `worker embed` run as subprocesses;
  each event's latency is read from the database: `enriched_trends.accepted_at` (the API's clock, in ms) to
  `embedding_records.created_at` (PostgreSQL's now(): the start of the transaction storing the vector);
- search: `nearest_to_vector` (k=10, the HNSW index, the configured ef_search) against the same query with
  index scans off (exact search), query by query, with recall@10 of the first against the second.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import numpy as np
import orjson
import psycopg
import redis.asyncio as redis
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from trendflow.clock import Clock, epoch_ms, system_clock
from trendflow.config import Settings, load_settings
from trendflow.db import queries
from trendflow.db.embeddings import load_trends_to_embed
from trendflow.db.pool import connection
from trendflow.db.trends import TrendFilters, TrendRow, upsert_trends
from trendflow.domain.enrich import Enricher, Enrichment
from trendflow.domain.models import TrendEvent
from trendflow.domain.normalize import Limits
from trendflow.embedding.model import Embedder, shared_embedder
from trendflow.errors import TrendflowError
from trendflow.processes import ProcessTree
from trendflow.runtime import Endpoints, Runtime, open_runtime
from trendflow.search import nearest_to_vector
from trendflow.streams import names
from trendflow.streams.consumer import Entry, ensure_group, read_new
from trendflow.workers.embed import MODEL_BATCHES_PER_READ, EmbedWorker, plan_jobs
from trendflow.workers.etl import EtlWorker

T = TypeVar("T")
Step = Callable[[str], None]

TARGETS = {"ingest": 0.25, "etl": 0.3, "embed": 0.9}
E2E_P99_TARGET_S = 2.0
STEPS = 9  # how many times run_bench calls its `step` callback
SOURCE = "bench"
E2E_SOURCE = "bench-e2e"
SEARCH_SOURCE = "bench-search"
WARMUP_SOURCE = "bench-warmup"
RAW_SOURCE = "bench-raw"
RAW_LIMIT_STREAM = "bench:raw-limit"
CONSUMER = "bench"
START_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.1
SEARCH_K = 10
SEARCH_QUERIES = 200
SEARCH_WARMUP_QUERIES = 20
SEARCH_P50_TARGET_MS = 20.0
SEARCH_RECALL_TARGET = 0.95
SEARCH_LOAD_CHUNK = 5_000
SEARCH_INDEX_MEMORY = "1GB"  # maintenance_work_mem for the HNSW build: the whole graph fits in memory
EF_SEARCH_LADDER = (400, 800)  # tried in turn when recall misses at the configured ef_search

# The bench's own SQL: emptying the tables between stages, and the end-to-end latencies.
TRUNCATE_TABLES = "TRUNCATE enriched_trends, embedding_records, dead_letters CASCADE"
COUNT_EMBEDDED = """
SELECT count(*) FROM enriched_trends WHERE source = %(source)s AND embedding_status = 'succeeded'
"""
# The search stage loads its vectors with the HNSW index dropped and builds it afterwards (much faster than
# one insert at a time into the graph); the definition is read back, so it is always the migration's own.
HNSW_INDEX_DEFINITION = "SELECT indexdef FROM pg_indexes WHERE indexname = 'embedding_records_hnsw'"
DROP_HNSW_INDEX = "DROP INDEX embedding_records_hnsw"
SET_INDEX_MEMORY = "SET LOCAL maintenance_work_mem = {memory}"
COPY_EMBEDDINGS = """
COPY embedding_records (enriched_trend_id, model, dim, embedding, content_hash) FROM STDIN (FORMAT BINARY)
"""
ANALYZE_TABLES = "ANALYZE enriched_trends, embedding_records"
# Exact search: the same query as the read side's, with the planner forbidden every index scan.
EXACT_SCAN = "SET LOCAL enable_indexscan = off"
E2E_LATENCIES = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.created_at - t.accepted_at)),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.created_at - t.accepted_at)),
       count(*)
FROM embedding_records e JOIN enriched_trends t ON t.id = e.enriched_trend_id
WHERE t.source = %(source)s
"""

# fmt: off
WORDS = (
    "eclipse", "market", "rally", "storm", "goal", "election", "vaccine", "concert", "launch", "outage",
    "protest", "record", "merger", "drought", "festival", "strike", "playoff", "wildfire", "budget",
    "summit", "rocket", "traffic", "harvest", "heatwave", "premiere", "recall", "verdict", "transfer",
    "tariff", "flood", "marathon", "update", "hearing", "ceasefire", "boycott", "startup", "layoff",
    "inflation", "snowfall",
)
QUALIFIERS = (
    "huge", "amazing", "terrible", "unexpected", "quiet", "massive", "weird", "early", "late",
    "surprising", "historic", "tiny", "sudden", "long-awaited", "chaotic", "peaceful", "record-breaking",
    "disappointing", "brilliant", "local", "national", "global",
)
PLACES = (
    "Paris", "Lagos", "Tokyo", "Lima", "Oslo", "Denver", "Mumbai", "Cairo", "Sydney", "Seoul", "Toronto",
    "Nairobi", "Madrid", "Jakarta",
)
# fmt: on


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """How much each stage is given; `--quick` is sized to finish in under 3 minutes on 2 cores."""

    events: int  # ingest and ETL
    embed_texts: int
    e2e_seconds: float  # 0 skips the end-to-end stage
    search_vectors: int = 0  # 0 skips the search stage
    search_embed_s: float = 15.0  # model time for real stored vectors; past it, the rest are perturbed copies
    e2e_rate: int = 100  # events per second, posted as ten batches a second
    http_batch: int = 500
    http_concurrency: int = 4

    @classmethod
    def of(
        cls,
        *,
        quick: bool,
        events: int | None = None,
        e2e_seconds: float | None = None,
        search_vectors: int | None = None,
    ) -> BenchPlan:
        base = cls(20_000, 1_024, 10.0, 10_000, 15.0) if quick else cls(50_000, 4_096, 60.0, 100_000, 60.0)
        count = events if events is not None else base.events
        return cls(
            events=count,
            embed_texts=min(base.embed_texts, count),
            e2e_seconds=base.e2e_seconds if e2e_seconds is None else e2e_seconds,
            search_vectors=base.search_vectors if search_vectors is None else search_vectors,
            search_embed_s=base.search_embed_s,
        )


@dataclass(frozen=True, slots=True)
class StageResult:
    events_per_s: float
    limit_per_s: float
    ratio: float
    target: float

    @classmethod
    def of(cls, stage: str, events: int, measured_s: float, limit_s: float) -> StageResult:
        measured, limit = events / measured_s, events / limit_s
        return cls(round(measured, 1), round(limit, 1), round(measured / limit, 3), TARGETS[stage])


@dataclass(frozen=True, slots=True)
class E2eResult:
    p50_s: float
    p99_s: float
    events: int
    rate_per_s: int
    target_p99_s: float = E2E_P99_TARGET_S


@dataclass(frozen=True, slots=True)
class SearchResult:
    """k=10 over `vectors` stored vectors; `passing_ef_search` is set only when recall misses at `ef_search`."""

    vectors: int
    vector_source: str  # "model": every vector embedded by the model; "perturbed": see model_vectors
    model_vectors: int  # how many stored vectors the model embedded; the rest are perturbed copies of them
    queries: int
    query_source: str  # "model": held-out texts embedded by the model; "perturbed": perturbed stored vectors
    p50_ms: float
    p99_ms: float
    recall_at_10: float
    ef_search: int
    exact_p50_ms: float
    exact_p99_ms: float
    query_embed_p50_ms: float  # the model's time for one query text, not part of p50_ms
    load_s: float
    index_build_s: float
    passing_ef_search: int | None
    passing_p50_ms: float | None
    target_p50_ms: float = SEARCH_P50_TARGET_MS
    target_recall: float = SEARCH_RECALL_TARGET


def load_corpus(path: Path) -> list[str]:
    """One text per line; blank lines dropped, repeated lines kept once (the embed stage needs distinct texts)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return list(dict.fromkeys(line for line in lines if line))


def generated_texts(count: int, seed: int = 8) -> list[str]:
    """Varied, distinct, tweet-like texts with hashtags, for runs without a corpus."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        word, other = rng.sample(WORDS, 2)
        texts.append(
            f"{rng.choice(QUALIFIERS)} {word} in {rng.choice(PLACES)} today, everyone is talking about the "
            f"{other} #{word} #{other} (post {i})"
        )
    return texts


def bench_payloads(texts: Sequence[str], count: int, *, source: str, start: datetime) -> list[bytes]:
    """`count` events over the texts; a text reused past the corpus's end gets a suffix, so all stay distinct."""
    if not texts:
        raise TrendflowError("the corpus holds no text")
    payloads = []
    for i in range(count):
        cycle, index = divmod(i, len(texts))
        text = texts[index] if cycle == 0 else f"{texts[index]} ({cycle})"
        moment = start + timedelta(milliseconds=i)
        payloads.append(orjson.dumps({"external_id": i, "source": source, "text": text, "timestamp": moment}))
    return payloads


def raw_twin(row: TrendRow) -> TrendRow:
    """The same row under the raw side's source: the same work to store, a different identity."""
    return replace(row, event=replace(row.event, source=RAW_SOURCE))


def warmup_event(clock: Clock) -> bytes:
    text = "warming the pipeline up before the end-to-end run"
    return orjson.dumps(
        {"external_id": "warmup", "source": WARMUP_SOURCE, "text": text, "timestamp": clock()}
    )


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_bench(
    plan: BenchPlan, texts: Sequence[str], *, step: Step, clock: Clock = system_clock
) -> dict[str, Any]:
    """Start throwaway engines, measure every stage and its limit, stop everything; the JSON report."""
    from trendflow.db.migrate import migrate
    from trendflow.engines import acquire_engines

    step("starting the embedded engines")
    # Not under a pytest-style private temp dir: the embedded PostgreSQL runs as its own user and needs the path.
    data_dir = Path(tempfile.mkdtemp(prefix="trendflow-bench-"))
    handle = acquire_engines(data_dir)
    try:
        migrate(handle.database_url)
        settings = load_settings(
            data_dir=data_dir, database_url=handle.database_url, redis_url=handle.redis_url,
            max_lag=1_000_000_000, log_level="warning",
        )  # fmt: skip
        stages = asyncio.run(_measure(plan, texts, settings, step, clock))
    finally:
        handle.release()
        shutil.rmtree(data_dir, ignore_errors=True)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "run": {**asdict(plan), "date": clock().date().isoformat()},
        "stages": stages,
    }
    return report


def child_env(settings: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDFLOW_")}
    env.update(
        TRENDFLOW_DATA_DIR=str(settings.data_dir),
        TRENDFLOW_DATABASE_URL=str(settings.database_url),
        TRENDFLOW_REDIS_URL=str(settings.redis_url),
        TRENDFLOW_API_PORT=str(port),
        TRENDFLOW_MAX_LAG=str(settings.max_lag),
        TRENDFLOW_LOG_LEVEL="warning",
        TRENDFLOW_EMBED_DEVICE=settings.embed_device,
    )
    return env


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _measure(
    plan: BenchPlan, texts: Sequence[str], settings: Settings, step: Step, clock: Clock
) -> dict[str, Any]:
    port = free_port()
    env = child_env(settings, port)
    endpoints = Endpoints(str(settings.database_url), str(settings.redis_url))
    start = clock() - timedelta(hours=1)
    payloads = bench_payloads(texts, plan.events, source=SOURCE, start=start)
    api = ProcessTree(roles=(("api",),), env=env)
    api.start()
    try:
        async with (
            open_runtime(settings, endpoints, pool_size=4) as runtime,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120.0) as client,
        ):
            await _wait_until(lambda: _api_ready(client, api), START_TIMEOUT_S, "the API to answer /readyz")
            stages: dict[str, Any] = {
                "ingest": await measure_ingest(
                    runtime, client, payloads, plan, step, accepted_at_ms=epoch_ms(clock())
                )
            }
            stages["etl"] = await measure_etl(runtime, settings, plan, step)
            stages["embed"] = await measure_embed(runtime, settings, plan, step)
            e2e = None
            if plan.e2e_seconds > 0:
                extra = bench_payloads(texts[::-1], round(plan.e2e_rate * plan.e2e_seconds), source=E2E_SOURCE,
                                       start=start)  # fmt: skip
                e2e = await measure_e2e(runtime, client, env, extra, plan, step, clock)
            stages["e2e"] = e2e
            stages["search"] = (
                await measure_search(runtime, settings, texts, plan, step, start)
                if plan.search_vectors
                else None
            )
            return stages
    finally:
        api.stop()


async def measure_ingest(
    runtime: Runtime,
    client: httpx.AsyncClient,
    payloads: list[bytes],
    plan: BenchPlan,
    step: Step,
    *,
    accepted_at_ms: int,
) -> dict[str, Any]:
    batches = list(chunks(payloads, plan.http_batch))
    bodies = [b"[" + b",".join(batch) + b"]" for batch in batches]
    await _post_batch(client, b"[" + payloads[0] + b"]", 1)  # warm the API's path
    await _reset_streams(runtime)

    step(
        f"ingest: HTTP batches of {plan.http_batch} and raw XADD, alternating, over {len(payloads):,} events"
    )
    # Rounds of `http_concurrency` batches: the raw side XADDs them (to its own key, so the stream holds exactly
    # what the API accepted), then the API takes them, that many requests in flight.
    limit_s = measured_s = 0.0
    for round_start in range(0, len(batches), plan.http_concurrency):
        batch_round = batches[round_start : round_start + plan.http_concurrency]
        started = time.perf_counter()
        for batch in batch_round:
            await xadd_pipelined(runtime.redis, RAW_LIMIT_STREAM, batch, accepted_at_ms=accepted_at_ms)
        between = time.perf_counter()
        await asyncio.gather(
            *(_post_batch(client, bodies[round_start + i], len(b)) for i, b in enumerate(batch_round))
        )
        limit_s += between - started
        measured_s += time.perf_counter() - between
    await runtime.redis.delete(RAW_LIMIT_STREAM)
    return asdict(StageResult.of("ingest", len(payloads), measured_s, limit_s))


async def xadd_pipelined(
    client: redis.Redis, stream: str, payloads: Sequence[bytes], *, accepted_at_ms: int
) -> None:
    """The raw limit of ingest: the entries the API writes, one redis-py pipeline per batch, nothing else."""
    pipe = client.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, {names.EVENT_FIELD: payload, names.ACCEPTED_AT_FIELD: accepted_at_ms})
    await pipe.execute()


async def measure_etl(runtime: Runtime, settings: Settings, plan: BenchPlan, step: Step) -> dict[str, Any]:
    """Over the entries the API accepted; the raw path stores the same rows, already normalized and enriched."""
    await ensure_group(runtime.redis, names.RAW_STREAM, names.ETL_GROUP)
    batches: list[list[Entry]] = []
    while entries := await read_new(
        runtime.redis, names.RAW_STREAM, names.ETL_GROUP, CONSUMER, count=settings.etl_batch_size, block_ms=10
    ):
        batches.append(entries)
    events = sum(len(b) for b in batches)
    if events != plan.events:
        raise TrendflowError(f"the stream holds {events} events, not the {plan.events} the API accepted")
    worker = EtlWorker(
        runtime.pool, runtime.redis, Enricher(),
        limits=Limits(max_text_chars=settings.max_text_chars), max_deliveries=settings.max_deliveries,
    )  # fmt: skip
    # The raw side stores the same rows under another source, so that both sides insert (neither updates) and
    # can alternate batch by batch, seeing the same load from anything else on the machine.
    rows = [[raw_twin(row) for row in worker.triage(batch).rows] for batch in batches]

    step(f"ETL: process_batch and raw COPY + upsert, alternating, over {events:,} events")
    limit_s = measured_s = 0.0
    for batch, batch_rows in zip(batches, rows, strict=True):
        started = time.perf_counter()
        async with connection(runtime.pool) as conn, conn.transaction():
            await upsert_trends(conn, batch_rows)
        between = time.perf_counter()
        await worker.process_batch(batch)
        limit_s += between - started
        measured_s += time.perf_counter() - between
    return asdict(StageResult.of("etl", events, measured_s, limit_s))


async def measure_embed(runtime: Runtime, settings: Settings, plan: BenchPlan, step: Step) -> dict[str, Any]:
    """Over the embed jobs the ETL stage published; every text is distinct, so each one reaches the model."""
    size = settings.embed_batch_size
    read_size = size * MODEL_BATCHES_PER_READ  # as the worker's loop reads
    await ensure_group(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP)
    batches: list[list[Entry]] = []
    wanted = plan.embed_texts
    while wanted > 0:
        entries = await read_new(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP, CONSUMER,
                                 count=min(read_size, wanted), block_ms=10)  # fmt: skip
        if not entries:
            break
        batches.append(entries)
        wanted -= len(entries)
    texts: list[list[str]] = []
    async with connection(runtime.pool) as conn:
        for batch in batches:
            trends = await load_trends_to_embed(conn, list(plan_jobs(batch).jobs))
            texts.append([t.text for t in trends.values()])
    count = sum(len(t) for t in texts)
    embedder = await asyncio.to_thread(shared_embedder, settings.embed_device)
    embedder.encode(["warming the model up"], batch_size=size)

    step(f"embed: process_batch and raw encode, alternating, over {count:,} texts, model batches of {size}")
    worker = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=settings.max_deliveries,
                         model_batch_size=size)  # fmt: skip
    # Alternating batch by batch, so that both sides see the same load from anything else on the machine.
    limit_s = measured_s = 0.0
    for batch, batch_texts in zip(batches, texts, strict=True):
        started = time.perf_counter()
        embedder.encode(batch_texts, batch_size=size)
        between = time.perf_counter()
        await worker.process_batch(batch)
        limit_s += between - started
        measured_s += time.perf_counter() - between
    if worker.model_inputs != count:
        raise TrendflowError(f"the worker encoded {worker.model_inputs} texts, not the {count} distinct ones")
    return asdict(StageResult.of("embed", count, measured_s, limit_s))


async def measure_e2e(
    runtime: Runtime,
    client: httpx.AsyncClient,
    env: dict[str, str],
    payloads: list[bytes],
    plan: BenchPlan,
    step: Step,
    clock: Clock,
) -> dict[str, Any]:
    """Posted at a steady rate with the real workers running; latencies from the database's own columns."""
    await _reset_streams(runtime)
    await _truncate(runtime)
    step("e2e: starting `trendflow worker etl` and `worker embed`")
    workers = ProcessTree(roles=(("worker", "etl"), ("worker", "embed")), env=env)
    workers.start()
    try:
        # Ready means one event went all the way through: both workers are up, their first batch is behind them.
        await _post_batch(client, b"[" + warmup_event(clock) + b"]", 1)
        await _wait_until(
            lambda: _embedded_count(runtime, WARMUP_SOURCE, 1, workers),
            START_TIMEOUT_S,
            "the workers to start",
        )
        per_tick = max(1, plan.e2e_rate // 10)
        step(f"e2e: {len(payloads):,} events at {plan.e2e_rate}/s")
        await _post_steadily(client, list(chunks(payloads, per_tick)), interval_s=per_tick / plan.e2e_rate)
        await _wait_until(
            lambda: _embedded_count(runtime, E2E_SOURCE, len(payloads), workers),
            DRAIN_TIMEOUT_S,
            "every e2e event to be embedded",
        )
    finally:
        workers.stop()
    async with connection(runtime.pool) as conn:
        cur = await conn.execute(E2E_LATENCIES, {"source": E2E_SOURCE})
        row = await cur.fetchone()
    assert row is not None
    return asdict(E2eResult(round(float(row[0]), 3), round(float(row[1]), 3), int(row[2]), plan.e2e_rate))


def perturbed_vectors(base: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` unit vectors clustered like the real ones: each a base row, a little of another, and noise.

    A row keeps a cosine of about 0.75–0.95 to the base row it came from, so the set has the clusters and
    near-duplicates of real text (retweets, one story told many ways) rather than a uniform spread.
    """
    dims = base.shape[1]
    picks = rng.integers(0, len(base), count)
    others = rng.integers(0, len(base), count)
    mix = rng.uniform(0.0, 0.3, (count, 1)).astype(np.float32)
    noise = rng.standard_normal((count, dims)).astype(np.float32)
    noise *= rng.uniform(0.2, 0.6, (count, 1)).astype(np.float32) / np.linalg.norm(
        noise, axis=1, keepdims=True
    )
    vectors = base[picks] + mix * base[others] + noise
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def recall_at(found: Sequence[UUID], exact: Sequence[UUID]) -> float:
    """The share of the exact nearest that the index found."""
    return len(set(found) & set(exact)) / len(exact) if exact else 1.0


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000.0, q)), 2)


async def measure_search(
    runtime: Runtime, settings: Settings, texts: Sequence[str], plan: BenchPlan, step: Step, start: datetime
) -> dict[str, Any]:
    """`nearest_to_vector` over `plan.search_vectors` stored vectors against exact search of the same queries.

    The stored vectors are the model's over the corpus as far as `plan.search_embed_s` allows, then perturbed
    copies of those; the queries are held-out texts embedded by the model when the corpus has them to spare.
    """
    await _truncate(runtime)
    embedder = await asyncio.to_thread(shared_embedder, settings.embed_device)
    held_out = list(texts[-SEARCH_QUERIES:]) if len(texts) >= 2 * SEARCH_QUERIES else []
    pool = list(texts[: len(texts) - len(held_out)])
    count = plan.search_vectors

    step(
        f"search: embedding up to {count:,} texts for {plan.search_embed_s:.0f} s, and {SEARCH_QUERIES} queries"
    )
    query_embed_s = []
    for text in held_out or pool[:SEARCH_QUERIES]:  # one text per call, as a search embeds its query
        started = time.perf_counter()
        embedder.encode([text])
        query_embed_s.append(time.perf_counter() - started)
    base = embed_within(embedder, pool[:count], plan.search_embed_s, settings.embed_batch_size)
    rng = np.random.default_rng(10)
    vectors = np.concatenate([base, perturbed_vectors(base, count - len(base), rng)])
    query_vectors = (
        embedder.encode(held_out, batch_size=settings.embed_batch_size)
        if held_out
        else perturbed_vectors(vectors, SEARCH_QUERIES, rng)
    )

    step(f"search: storing {count:,} vectors, then building the HNSW index")
    row_texts = [
        pool[i % len(base)] + (f" ({i // len(base)})" if i >= len(base) else "") for i in range(count)
    ]
    load_s, index_build_s = await store_search_vectors(runtime, embedder.name, row_texts, vectors, start)

    step(f"search: {len(query_vectors)} queries, k={SEARCH_K}, HNSW and exact alternating")
    ef_search = settings.hnsw_ef_search
    # Exact search gets a connection of its own that never prepares: a plan psycopg prepared with the index
    # allowed would be reused whatever enable_indexscan says, and "exact" would quietly be the index again.
    async with connection(runtime.pool) as conn, connection(runtime.pool) as exact_conn:
        exact_conn.prepare_threshold = None  # the pool closes after this stage
        for vector in query_vectors[:SEARCH_WARMUP_QUERIES]:
            await nearest_ids(conn, vector, ef_search)
            await nearest_ids(exact_conn, vector, ef_search, exact=True)
        found_s, exact_s, recalls, exact_ids = [], [], [], []
        for vector in query_vectors:
            found, seconds = await nearest_ids(conn, vector, ef_search)
            exact, exact_seconds = await nearest_ids(exact_conn, vector, ef_search, exact=True)
            found_s.append(seconds)
            exact_s.append(exact_seconds)
            recalls.append(recall_at(found, exact))
            exact_ids.append(exact)
        recall = float(np.mean(recalls))
        passing_ef_search = passing_p50_ms = None
        for ef in EF_SEARCH_LADDER if recall < SEARCH_RECALL_TARGET else ():
            step(f"search: recall {recall:.3f} at ef_search {ef_search}; trying {ef}")
            runs = [await nearest_ids(conn, vector, ef) for vector in query_vectors]
            if (
                np.mean([recall_at(f, e) for (f, _), e in zip(runs, exact_ids, strict=True)])
                >= SEARCH_RECALL_TARGET
            ):
                passing_ef_search, passing_p50_ms = ef, percentile_ms([seconds for _, seconds in runs], 50)
                break
    return asdict(
        SearchResult(
            vectors=count,
            vector_source="model" if len(base) == count else "perturbed",
            model_vectors=len(base),
            queries=len(query_vectors),
            query_source="model" if held_out else "perturbed",
            p50_ms=percentile_ms(found_s, 50),
            p99_ms=percentile_ms(found_s, 99),
            recall_at_10=round(recall, 4),
            ef_search=ef_search,
            exact_p50_ms=percentile_ms(exact_s, 50),
            exact_p99_ms=percentile_ms(exact_s, 99),
            query_embed_p50_ms=percentile_ms(query_embed_s, 50),
            load_s=round(load_s, 1),
            index_build_s=round(index_build_s, 1),
            passing_ef_search=passing_ef_search,
            passing_p50_ms=passing_p50_ms,
        )
    )


def embed_within(embedder: Embedder, texts: Sequence[str], budget_s: float, batch_size: int) -> np.ndarray:
    """The model's vectors for the texts, in order, as many as it encodes within the budget (at least one chunk)."""
    chunk = batch_size * 4
    deadline = time.perf_counter() + budget_s
    parts = []
    for part in chunks(texts, chunk):
        parts.append(embedder.encode(part, batch_size=batch_size))
        if time.perf_counter() > deadline:
            break
    return np.concatenate(parts)


async def store_search_vectors(
    runtime: Runtime, model: str, texts: Sequence[str], vectors: np.ndarray, start: datetime
) -> tuple[float, float]:
    """Trends through `upsert_trends`, vectors by binary COPY, the HNSW index rebuilt; (load s, build s)."""
    enrichment = Enrichment(0.0, "neutral", (), "en", None, 0.5, {})
    async with connection(runtime.pool) as conn:
        found = await (await conn.execute(HNSW_INDEX_DEFINITION)).fetchone()
        if found is None:
            raise TrendflowError("the embedding_records_hnsw index is missing: run `trendflow migrate`")
        index_definition = str(found[0])
        await conn.execute(DROP_HNSW_INDEX)
        started = time.perf_counter()
        for offset in range(0, len(texts), SEARCH_LOAD_CHUNK):
            events = [
                TrendEvent(SEARCH_SOURCE, str(i), texts[i], start + timedelta(milliseconds=i))
                for i in range(offset, min(offset + SEARCH_LOAD_CHUNK, len(texts)))
            ]
            async with conn.transaction():
                stored = await upsert_trends(conn, [TrendRow(event, enrichment) for event in events])
                ids = {trend.external_id: trend.id for trend in stored}
                async with conn.cursor() as cur, cur.copy(COPY_EMBEDDINGS) as copy:
                    copy.set_types(["uuid", "text", "int4", "vector", "text"])
                    for event in events:
                        vector = vectors[int(event.external_id)]
                        await copy.write_row(
                            (ids[event.external_id], model, vector.shape[0], vector, event.content_hash)
                        )
                await conn.execute(queries.MARK_EMBEDDED, {"model": model, "ids": list(ids.values())})
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(sql.SQL(SET_INDEX_MEMORY).format(memory=sql.Literal(SEARCH_INDEX_MEMORY)))
            await conn.execute(index_definition)
        index_build_s = time.perf_counter() - started
        await conn.execute(ANALYZE_TABLES)
    return load_s, index_build_s


async def nearest_ids(
    conn: psycopg.AsyncConnection, vector: np.ndarray, ef_search: int, *, exact: bool = False
) -> tuple[list[UUID], float]:
    """The read side's k nearest (ids) and its time; `exact` runs the same query with index scans off."""
    if not exact:
        started = time.perf_counter()
        rows = await nearest_to_vector(conn, vector, SEARCH_K, TrendFilters(), ef_search)
        return [r["id"] for r in rows], time.perf_counter() - started
    async with conn.transaction():
        await conn.execute(EXACT_SCAN)
        started = time.perf_counter()
        rows = await nearest_to_vector(conn, vector, SEARCH_K, TrendFilters(), ef_search)
        return [r["id"] for r in rows], time.perf_counter() - started


async def _post_steadily(
    client: httpx.AsyncClient, batches: list[Sequence[bytes]], *, interval_s: float
) -> None:
    """One batch every interval, on a fixed schedule: a slow answer does not delay the next send."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sends = []
    for tick, batch in enumerate(batches):
        await asyncio.sleep(max(0.0, start + tick * interval_s - loop.time()))
        body = b"[" + b",".join(batch) + b"]"
        sends.append(asyncio.create_task(_post_batch(client, body, len(batch))))
    await asyncio.gather(*sends)


async def _post_batch(client: httpx.AsyncClient, body: bytes, count: int) -> None:
    response = await client.post(
        "/v1/events/batch", content=body, headers={"content-type": "application/json"}
    )
    answer = response.json() if response.status_code in (202, 422) else {}
    if response.status_code != 202 or answer.get("accepted") != count or answer.get("spooled"):
        raise TrendflowError(f"the API refused a bench batch: {response.status_code} {response.text[:300]}")


async def _api_ready(client: httpx.AsyncClient, api: ProcessTree) -> bool:
    _check_alive(api)
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def _embedded_count(runtime: Runtime, source: str, expected: int, workers: ProcessTree) -> bool:
    _check_alive(workers)
    async with connection(runtime.pool) as conn:
        cur = await conn.execute(COUNT_EMBEDDED, {"source": source})
        row = await cur.fetchone()
    return row is not None and int(row[0]) >= expected


def _check_alive(tree: ProcessTree) -> None:
    for role, child in tree.children.items():
        if child.poll() is not None:
            raise TrendflowError(f"`trendflow {' '.join(role)}` exited with status {child.returncode}")


async def _wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TrendflowError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


async def _reset_streams(runtime: Runtime) -> None:
    await runtime.redis.delete(names.RAW_STREAM, names.EMBED_STREAM)


async def _truncate(runtime: Runtime) -> None:
    async with connection(runtime.pool) as conn:
        await conn.execute(TRUNCATE_TABLES)


@contextmanager
def step_progress(console: Console) -> Iterator[Step]:
    """A progress bar over run_bench's steps, each step's description shown as it starts."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("bench", total=STEPS)
        started = False

        def step(description: str) -> None:
            nonlocal started
            progress.update(task, description=description, advance=1 if started else 0)
            started = True

        yield step
        progress.update(task, completed=STEPS)


def print_report(report: dict[str, Any], console: Console) -> None:
    machine, stages = report["machine"], report["stages"]
    table = Table(
        title=f"trendflow bench, {report['run']['date']}: {machine['cores']} cores, {machine['cpu_model']}, "
        f"Python {machine['python']}, torch {machine['torch']}"
    )
    for column in ("stage", "measured", "raw limit (same run)", "ratio", "target"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in ("ingest", "etl", "embed"):
        found = stages[stage]
        met = found["ratio"] >= found["target"]
        table.add_row(
            stage,
            f"{found['events_per_s']:,.0f} events/s",
            f"{found['limit_per_s']:,.0f} events/s",
            f"[{'green' if met else 'red'}]{found['ratio']:.2f}[/]",
            f"≥ {found['target']}",
        )
    e2e = stages["e2e"]
    if e2e is not None:
        met = e2e["p99_s"] <= e2e["target_p99_s"]
        table.add_row(
            f"e2e at {e2e['rate_per_s']}/s",
            f"p50 {e2e['p50_s']:.2f} s",
            "—",
            f"[{'green' if met else 'red'}]p99 {e2e['p99_s']:.2f} s[/]",
            f"p99 ≤ {e2e['target_p99_s']} s",
        )
    search = stages.get("search")
    if search is not None:
        fast = search["p50_ms"] <= search["target_p50_ms"]
        close = search["recall_at_10"] >= search["target_recall"]
        table.add_row(
            f"search, k=10 over {search['vectors']:,} ({search['vector_source']})",
            f"[{'green' if fast else 'red'}]p50 {search['p50_ms']:.1f} ms[/], p99 {search['p99_ms']:.1f} ms",
            f"exact p50 {search['exact_p50_ms']:.1f} ms",
            f"[{'green' if close else 'red'}]recall {search['recall_at_10']:.3f}[/] at ef {search['ef_search']}",
            f"p50 ≤ {search['target_p50_ms']:.0f} ms, recall ≥ {search['target_recall']}",
        )
    console.print(table)
    if search is not None and search["passing_ef_search"] is not None:
        console.print(
            f"search recall reaches {search['target_recall']} at ef_search {search['passing_ef_search']} "
            f"(p50 {search['passing_p50_ms']:.1f} ms)"
        )
