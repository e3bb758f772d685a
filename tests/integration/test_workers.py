"""The ETL and embedding workers' process_batch against real PostgreSQL, Redis and the real model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.conftest import fixed_clock
from trendflow.db.embeddings import as_array
from trendflow.db.pool import connection
from trendflow.domain.enrich import Enricher
from trendflow.domain.normalize import Limits
from trendflow.embedding.model import shared_embedder
from trendflow.streams import names
from trendflow.streams.consumer import ensure_group, read_new, read_own_pending
from trendflow.streams.producer import publish_embed_jobs, publish_raw_events
from trendflow.workers.embed import EmbedWorker
from trendflow.workers.etl import EtlWorker

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher()


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    return shared_embedder("cpu")


def event(i: int, text: str | None = None, **extra: object) -> bytes:
    body = {
        "external_id": i,
        "source": "workers",
        "text": text or f"text number {i}",
        "timestamp": (START + timedelta(minutes=i)).isoformat(),
        **extra,
    }
    return orjson.dumps(body)


async def drain(runtime, stream: str, group: str, process, batch: int = 200) -> None:  # type: ignore[no-untyped-def]
    await ensure_group(runtime.redis, stream, group)
    while entries := await read_new(runtime.redis, stream, group, "test", count=batch, block_ms=10):
        await process(entries)


async def test_thousand_events_with_hundred_texts_take_hundred_model_inputs(
    runtime, enricher, embedder
) -> None:
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    embed = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=5, clock=fixed_clock)
    payloads = [event(i, f"shared text {i % 100} about trends") for i in range(1000)]
    await publish_raw_events(runtime.redis, payloads, accepted_at_ms=0)

    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch, 500)
    await drain(runtime, names.EMBED_STREAM, names.EMBED_GROUP, embed.process_batch, 64)

    async with connection(runtime.pool) as conn:
        cur = await conn.execute("SELECT count(*) FROM embedding_records")
        assert (await cur.fetchone())[0] == 1000
    assert embed.model_inputs == 100

    # The same events again: stored rows do not change and nothing goes back to the model.
    await publish_raw_events(runtime.redis, payloads, accepted_at_ms=0)
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch, 500)
    await drain(runtime, names.EMBED_STREAM, names.EMBED_GROUP, embed.process_batch, 64)
    assert embed.model_inputs == 100
    assert await runtime.redis.xlen(names.EMBED_STREAM) == 0


async def test_metadata_only_update_keeps_the_embedding(runtime, enricher, embedder) -> None:
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    embed = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=5, clock=fixed_clock)
    await publish_raw_events(runtime.redis, [event(1, "a calm text", metadata={"v": 1})], accepted_at_ms=0)
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch)
    await drain(runtime, names.EMBED_STREAM, names.EMBED_GROUP, embed.process_batch)
    async with connection(runtime.pool) as conn:
        before = await (await conn.execute("SELECT updated_at, embedding FROM embedding_records")).fetchall()

    await publish_raw_events(runtime.redis, [event(1, "a calm text", metadata={"v": 2})], accepted_at_ms=0)
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch)
    assert await runtime.redis.xlen(names.EMBED_STREAM) == 0  # no embed job for an unchanged text
    async with connection(runtime.pool) as conn:
        after = await (await conn.execute("SELECT updated_at, embedding FROM embedding_records")).fetchall()
        status = await (
            await conn.execute("SELECT embedding_status, metadata FROM enriched_trends")
        ).fetchone()
    assert after[0][0] == before[0][0]
    assert status == ("succeeded", {"v": 2})
    assert embed.model_inputs == 1


async def test_embed_job_before_its_row_waits_then_completes(runtime, enricher, embedder) -> None:
    """The race the seed of this product lost: the job arrives before the ETL transaction commits."""
    embed = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=5, clock=fixed_clock)
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    trend_id = uuid.uuid4()
    await publish_embed_jobs(runtime.redis, [trend_id])
    await ensure_group(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP)
    jobs = await read_new(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP, "w", count=10, block_ms=10)

    assert await embed.process_batch(jobs) == 1  # left pending, not acked, worker fine
    assert (await runtime.redis.xpending(names.EMBED_STREAM, names.EMBED_GROUP))["pending"] == 1

    # The row commits (with the id the job carries), then the pending job is retried and completes.
    await publish_raw_events(runtime.redis, [event(7, "late row")], accepted_at_ms=0)
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch)
    async with connection(runtime.pool) as conn:
        await conn.execute("UPDATE enriched_trends SET id = %s", (trend_id,))
    retried = await read_own_pending(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP, "w", count=10)
    assert retried[0].deliveries == 2
    assert await embed.process_batch(retried) == 0
    async with connection(runtime.pool) as conn:
        row = await (
            await conn.execute("SELECT embedding_status FROM enriched_trends WHERE id = %s", (trend_id,))
        ).fetchone()
    assert row == ("succeeded",)


async def test_embed_job_whose_row_never_comes_becomes_a_dead_letter(runtime, embedder) -> None:
    embed = EmbedWorker(runtime.pool, runtime.redis, embedder, max_deliveries=2, clock=fixed_clock)
    await publish_embed_jobs(runtime.redis, [uuid.uuid4()])
    await ensure_group(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP)
    first = await read_new(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP, "w", count=10, block_ms=10)
    assert await embed.process_batch(first) == 1
    second = await read_own_pending(runtime.redis, names.EMBED_STREAM, names.EMBED_GROUP, "w", count=10)
    assert await embed.process_batch(second) == 0
    async with connection(runtime.pool) as conn:
        rows = await (await conn.execute("SELECT stage, reason, deliveries FROM dead_letters")).fetchall()
    assert rows == [("embed", "trend_not_found", 2)]
    assert (await runtime.redis.xpending(names.EMBED_STREAM, names.EMBED_GROUP))["pending"] == 0


async def test_bad_entries_become_dead_letters_and_good_ones_flow(runtime, enricher) -> None:
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    await runtime.redis.xadd(names.RAW_STREAM, {"event": event(1, topics="tag1,tag2")})
    await runtime.redis.xadd(names.RAW_STREAM, {"event": b'{"external_id": 2, "source": "x"'})
    await runtime.redis.xadd(names.RAW_STREAM, {"not_event": b"hello"})
    await runtime.redis.xadd(names.RAW_STREAM, {"event": b"\xff\xfe not utf-8"})
    await runtime.redis.xadd(names.RAW_STREAM, {"event": event(3, topics=42)})
    await runtime.redis.xadd(names.RAW_STREAM, {"event": event(4)})
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch)

    async with connection(runtime.pool) as conn:
        stored = await (
            await conn.execute("SELECT external_id, topics FROM enriched_trends ORDER BY 1")
        ).fetchall()
        letters = await (await conn.execute("SELECT reason FROM dead_letters ORDER BY 1")).fetchall()
    assert stored == [("1", ["tag1", "tag2"]), ("4", [])]
    assert [r for (r,) in letters] == ["bad_encoding", "bad_json", "bad_topics", "missing_field:event"]
    assert (await runtime.redis.xpending(names.RAW_STREAM, names.ETL_GROUP))["pending"] == 0


async def test_an_entry_deleted_while_pending_is_a_dead_letter_not_a_silent_ack(runtime, enricher) -> None:
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    await ensure_group(runtime.redis, names.RAW_STREAM, names.ETL_GROUP)
    [entry_id] = await publish_raw_events(runtime.redis, [event(1)], accepted_at_ms=0)
    await read_new(runtime.redis, names.RAW_STREAM, names.ETL_GROUP, "w", count=10, block_ms=10)
    await runtime.redis.xdel(names.RAW_STREAM, entry_id)  # someone else's XTRIM/XDEL, while it was pending

    lost = await read_own_pending(runtime.redis, names.RAW_STREAM, names.ETL_GROUP, "w", count=10)
    assert lost[0].fields is None
    await etl.process_batch(lost)
    async with connection(runtime.pool) as conn:
        rows = await (await conn.execute("SELECT reason, stream_id FROM dead_letters")).fetchall()
    assert rows == [("entry_lost", entry_id)]


async def test_each_trend_gets_its_own_texts_vector_whatever_the_batching(
    runtime, enricher, embedder
) -> None:
    # Short, long, emoji and URL texts: the worker reorders them by token count across model batches of 2.
    texts = [
        "ok",
        "the harbour bridge was closed all morning after the storm brought down two cranes near the quay",
        "🎉🎉🎉 party time 🎉",
        "read this https://example.com/a/very/long/path?with=query&and=more",
        "rain again",
        "a quiet evening with tea, a book and the cat asleep on the windowsill",
    ]
    assert embedder.token_counts(["hello world"]) == [4]  # [CLS] hello world [SEP]
    etl = EtlWorker(
        runtime.pool, runtime.redis, enricher, limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    embed = EmbedWorker(
        runtime.pool, runtime.redis, embedder, max_deliveries=5, clock=fixed_clock, model_batch_size=2
    )
    await publish_raw_events(runtime.redis, [event(i, t) for i, t in enumerate(texts)], accepted_at_ms=0)
    await drain(runtime, names.RAW_STREAM, names.ETL_GROUP, etl.process_batch)
    await drain(runtime, names.EMBED_STREAM, names.EMBED_GROUP, embed.process_batch)

    async with connection(runtime.pool) as conn:
        cur = await conn.execute(
            "SELECT t.text, e.embedding FROM embedding_records e JOIN enriched_trends t ON t.id = e.enriched_trend_id"
        )
        stored = {text: as_array(vector) for text, vector in await cur.fetchall()}
    assert sorted(stored) == sorted(texts)
    for text, vector in stored.items():
        alone = embedder.encode([text])[0]
        assert float(vector @ alone) > 0.999, text
