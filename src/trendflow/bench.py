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
  `embedding_records.created_at` (PostgreSQL's now(): the start of the transaction storing the vector).
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

import httpx
import orjson
import redis.asyncio as redis
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from trendflow.clock import Clock, epoch_ms, system_clock
from trendflow.config import Settings, load_settings
from trendflow.db.embeddings import load_trends_to_embed
from trendflow.db.pool import connection
from trendflow.db.trends import TrendRow, upsert_trends
from trendflow.domain.enrich import Enricher
from trendflow.domain.normalize import Limits
from trendflow.errors import TrendflowError
from trendflow.processes import ProcessTree
from trendflow.runtime import Endpoints, Runtime, open_runtime
from trendflow.streams import names
from trendflow.streams.consumer import Entry, ensure_group, read_new
from trendflow.workers.embed import MODEL_BATCHES_PER_READ, EmbedWorker, plan_jobs
from trendflow.workers.etl import EtlWorker

T = TypeVar("T")
Step = Callable[[str], None]

TARGETS = {"ingest": 0.25, "etl": 0.3, "embed": 0.9}
E2E_P99_TARGET_S = 2.0
STEPS = 6  # how many times run_bench calls its `step` callback
SOURCE = "bench"
E2E_SOURCE = "bench-e2e"
WARMUP_SOURCE = "bench-warmup"
RAW_SOURCE = "bench-raw"
RAW_LIMIT_STREAM = "bench:raw-limit"
CONSUMER = "bench"
START_TIMEOUT_S = 180.0
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.1

# The bench's own SQL: emptying the tables between stages, and the end-to-end latencies.
TRUNCATE_TABLES = "TRUNCATE enriched_trends, embedding_records, dead_letters CASCADE"
COUNT_EMBEDDED = """
SELECT count(*) FROM enriched_trends WHERE source = %(source)s AND embedding_status = 'succeeded'
"""
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
    e2e_rate: int = 100  # events per second, posted as ten batches a second
    http_batch: int = 500
    http_concurrency: int = 4

    @classmethod
    def of(cls, *, quick: bool, events: int | None = None, e2e_seconds: float | None = None) -> BenchPlan:
        base = cls(5_000, 512, 10.0) if quick else cls(20_000, 2_048, 60.0)
        count = events if events is not None else base.events
        return cls(
            events=count,
            embed_texts=min(base.embed_texts, count),
            e2e_seconds=base.e2e_seconds if e2e_seconds is None else e2e_seconds,
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
    from trendflow.embedding.model import shared_embedder

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
    console.print(table)
