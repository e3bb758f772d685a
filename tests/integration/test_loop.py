"""The worker loop on real engines: a poison entry that fails transiently every time is dead-lettered alone,
its batch-mates are stored, and the loop never dies."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from tests.conftest import fixed_clock
from trendflow.db.pool import connection
from trendflow.domain.enrich import Enricher
from trendflow.domain.normalize import Limits
from trendflow.streams import names
from trendflow.streams.producer import publish_raw_events
from trendflow.workers.etl import EtlWorker
from trendflow.workers.loop import LoopSettings, PendingRetry, run_consumer

# The database refuses one row with an error that looks like an outage (disk full): a transient failure that
# never goes away, the worst kind of poison.
POISON_TRIGGER = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.external_id = 'poison' THEN RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON enriched_trends FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def test_a_failed_retry_goes_one_entry_at_a_time() -> None:
    retry = PendingRetry(due_at=None)
    assert not retry.is_due(10.0)
    retry.failed(10.0, 0.5, was_retry=False)  # a fresh batch failed: retry it whole
    assert retry.is_due(10.5) and not retry.is_due(10.4) and not retry.one_at_a_time
    retry.failed(11.0, 1.0, was_retry=True)  # the retry failed too: isolate
    assert retry.one_at_a_time and retry.due_at == 12.0


async def test_a_poison_entry_is_dead_lettered_alone_and_its_batch_mates_are_stored(runtime: Any) -> None:
    async with connection(runtime.pool) as conn:
        await conn.execute(POISON_TRIGGER)
    events = [
        orjson.dumps({"external_id": eid, "source": "loop", "text": f"text {eid}", "timestamp": 1772359200})
        for eid in [*(f"good-{i}" for i in range(10)), "poison", *(f"after-{i}" for i in range(10))]
    ]
    await publish_raw_events(runtime.redis, events, accepted_at_ms=0)
    worker = EtlWorker(
        runtime.pool, runtime.redis, Enricher(), limits=Limits(), max_deliveries=3, clock=fixed_clock
    )
    settings = LoopSettings(
        names.RAW_STREAM, names.ETL_GROUP, "loop-test", batch_size=50, claim_idle_ms=60_000
    )
    stop = asyncio.Event()
    loop = asyncio.create_task(run_consumer(runtime.redis, settings, worker.process_batch, stop))

    async def outcome() -> tuple[int, list[tuple[str, int]]]:
        async with connection(runtime.pool) as conn:
            stored = (await (await conn.execute("SELECT count(*) FROM enriched_trends")).fetchone())[0]
            letters = await (await conn.execute("SELECT reason, deliveries FROM dead_letters")).fetchall()
        return stored, letters

    deadline = time.monotonic() + 60
    while (result := await outcome()) != (20, [("max_deliveries_exceeded", 4)]):
        assert time.monotonic() < deadline, f"stored and dead letters: {result}"
        assert not loop.done(), loop.exception()
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(loop, timeout=10)
    assert (await runtime.redis.xpending(names.RAW_STREAM, names.ETL_GROUP))["pending"] == 0
