"""Run one worker role in this process until SIGINT/SIGTERM, finishing the batch in hand."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import structlog

from trendflow.alerts import Alerter
from trendflow.config import Settings
from trendflow.domain.normalize import Limits
from trendflow.domain.retry import Backoff
from trendflow.errors import TransientError
from trendflow.metrics import serve_metrics
from trendflow.runtime import Endpoints, Runtime, open_runtime, prepare_database
from trendflow.spool import Spool
from trendflow.streams import names
from trendflow.workers.loop import LoopSettings, consumer_name, run_consumer

log = structlog.get_logger()

ROLES = ("etl", "embed", "monitor")

# A worker started while PostgreSQL is unreachable waits this long for it (logging each try), then exits.
DATABASE_WAIT_S = 120.0


def run_worker(role: str, settings: Settings, *, metrics_port: int | None = None) -> None:
    endpoints = wait_for_database(lambda: prepare_database(settings))
    if metrics_port is not None:
        serve_metrics(metrics_port)
    asyncio.run(_main(role, settings, endpoints))


def wait_for_database(
    prepare: Callable[[], Endpoints],
    *,
    wait_s: float = DATABASE_WAIT_S,
    backoff: Backoff | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Endpoints:
    """Run `prepare` (reach the engines, migrate) until it succeeds; a TransientError is retried with backoff
    until `wait_s` have passed, then raised."""
    deadline = monotonic() + wait_s
    backoff = backoff or Backoff(base=0.5, cap=10.0)
    while True:
        try:
            return prepare()
        except TransientError as exc:
            delay = backoff.next_delay()
            if monotonic() + delay > deadline:
                raise
            log.warning("worker_waiting_for_database", error=str(exc), retry_in_s=round(delay, 1))
            sleep(delay)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _main(role: str, settings: Settings, endpoints: Endpoints) -> None:
    stop = asyncio.Event()
    _install_stop(stop)
    alerter = Alerter.from_settings(settings)
    async with open_runtime(settings, endpoints, pool_size=4) as runtime:
        log.info("worker_started", role=role)
        try:
            await _run_role(role, settings, runtime, alerter, stop)
        finally:
            await alerter.aclose()
        log.info("worker_stopped", role=role)


async def _run_role(
    role: str, settings: Settings, runtime: Runtime, alerter: Alerter, stop: asyncio.Event
) -> None:
    if role == "etl":
        from trendflow.domain.enrich import Enricher
        from trendflow.workers.etl import EtlWorker

        enricher = await asyncio.to_thread(Enricher)
        etl = EtlWorker(
            runtime.pool, runtime.redis, enricher, limits=Limits(max_text_chars=settings.max_text_chars),
            max_deliveries=settings.max_deliveries, alerter=alerter,
        )  # fmt: skip
        loop = LoopSettings(names.RAW_STREAM, names.ETL_GROUP, consumer_name("etl"),
                            settings.etl_batch_size, settings.claim_idle_ms)  # fmt: skip
        await run_consumer(runtime.redis, loop, etl.process_batch, stop)
    elif role == "embed":
        from trendflow.embedding.model import shared_embedder
        from trendflow.workers.embed import MODEL_BATCHES_PER_READ, EmbedWorker

        embedder = await asyncio.to_thread(shared_embedder, settings.embed_device)
        embed = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=settings.max_deliveries,
                            model_batch_size=settings.embed_batch_size, alerter=alerter)  # fmt: skip
        loop = LoopSettings(names.EMBED_STREAM, names.EMBED_GROUP, consumer_name("embed"),
                            settings.embed_batch_size * MODEL_BATCHES_PER_READ, settings.claim_idle_ms)  # fmt: skip
        await run_consumer(runtime.redis, loop, embed.process_batch, stop)
    elif role == "monitor":
        from trendflow.workers.monitor import MonitorSettings, run_monitor

        watch = MonitorSettings(claim_idle_ms=settings.claim_idle_ms)
        await run_monitor(runtime.pool, runtime.redis, Spool(settings.spool_path), alerter, watch, stop)
    else:
        raise ValueError(f"unknown worker role {role!r}; one of {', '.join(ROLES)}")
