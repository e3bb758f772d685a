"""The db/ repositories against a real PostgreSQL: idempotent upserts, keyset pages, dead letters, embeddings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np
import pytest

from trendflow.db.dead_letters import DeadLetter, count_dead_letters, get_dead_letter, record_dead_letters
from trendflow.db.embeddings import EmbeddingWrite, load_cached_embeddings, store_embeddings
from trendflow.db.pool import connection
from trendflow.db.trends import (
    StoredTrend,
    TrendFilters,
    TrendRow,
    count_trends,
    encode_cursor,
    get_trend,
    list_trends,
    upsert_trends,
)
from trendflow.domain.enrich import Enrichment
from trendflow.domain.models import TrendEvent
from trendflow.errors import PermanentError
from trendflow.runtime import Runtime

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCEPTED = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
MODEL = "all-MiniLM-L6-v2"


def trend_row(
    external_id: str,
    text: str = "Concert tonight was amazing",
    *,
    source: str = "web",
    timestamp: datetime = BASE,
    topics: tuple[str, ...] = (),
    metadata: dict[str, Any] | None = None,
) -> TrendRow:
    event = TrendEvent(source, external_id, text, timestamp, topics, metadata or {}, None)
    enrichment = Enrichment(
        sentiment_score=0.6,
        sentiment_label="positive",
        topics=topics,
        language="en",
        geo=None,
        confidence_score=0.8,
        metadata={"enrichment_version": 1},
    )
    return TrendRow(event, enrichment, ACCEPTED)


def unit_vector(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return vector / np.linalg.norm(vector)


async def upsert(runtime: Runtime, rows: list[TrendRow]) -> list[StoredTrend]:
    async with connection(runtime.pool) as conn, conn.transaction():
        return await upsert_trends(conn, rows)


async def stored_state(runtime: Runtime, trend_id: UUID) -> dict[str, Any]:
    async with connection(runtime.pool) as conn:
        trend = await get_trend(conn, trend_id)
        cur = await conn.execute("SELECT content_hash FROM enriched_trends WHERE id = %s", (trend_id,))
        row = await cur.fetchone()
    assert trend is not None and row is not None
    return {**trend, "content_hash": row[0]}


async def mark_embedded(runtime: Runtime, stored: list[StoredTrend], rows: list[TrendRow]) -> None:
    writes = [
        EmbeddingWrite(s.id, r.event.content_hash, unit_vector(i))
        for i, (s, r) in enumerate(zip(stored, rows, strict=True))
    ]
    async with connection(runtime.pool) as conn:
        await store_embeddings(conn, MODEL, writes)


# -- upsert ----------------------------------------------------------------------------------------------


async def test_upserting_the_same_rows_again_changes_nothing(runtime: Runtime) -> None:
    rows = [trend_row("e1", topics=("music",)), trend_row("e2", "Rain all day", metadata={"likes": 3})]

    first = await upsert(runtime, rows)
    before = [await stored_state(runtime, s.id) for s in first]
    second = await upsert(runtime, rows)
    after = [await stored_state(runtime, s.id) for s in second]

    assert sorted(s.id for s in second) == sorted(s.id for s in first)
    async with connection(runtime.pool) as conn:
        assert await count_trends(conn) == 2
    by_id = {state["id"]: state for state in after}
    for state in before:
        assert by_id[state["id"]]["updated_at"] == state["updated_at"]
        assert by_id[state["id"]] == state


async def test_changed_text_sends_the_trend_back_to_be_embedded(runtime: Runtime) -> None:
    original = trend_row("e1", "First wording")
    stored = await upsert(runtime, [original])
    await mark_embedded(runtime, stored, [original])
    embedded = await stored_state(runtime, stored[0].id)
    assert embedded["embedding_status"] == "succeeded"

    (again,) = await upsert(runtime, [trend_row("e1", "Second wording")])

    changed = await stored_state(runtime, again.id)
    assert again.id == stored[0].id
    assert again.needs_embedding
    assert changed["embedding_status"] == "pending"
    assert changed["text"] == "Second wording"
    assert changed["content_hash"] != embedded["content_hash"]
    assert changed["updated_at"] > embedded["updated_at"]


async def test_a_metadata_only_change_keeps_the_embedding(runtime: Runtime) -> None:
    original = trend_row("e1", metadata={"likes": 1})
    stored = await upsert(runtime, [original])
    await mark_embedded(runtime, stored, [original])
    embedded = await stored_state(runtime, stored[0].id)

    (again,) = await upsert(runtime, [trend_row("e1", metadata={"likes": 2})])

    changed = await stored_state(runtime, again.id)
    assert not again.needs_embedding
    assert changed["embedding_status"] == "succeeded"
    assert changed["metadata"] == {"likes": 2}
    assert changed["content_hash"] == embedded["content_hash"]
    assert changed["updated_at"] > embedded["updated_at"]


async def test_an_upsert_outside_a_transaction_still_stores_the_rows(runtime: Runtime) -> None:
    async with connection(runtime.pool) as conn:  # the pool's connections are in autocommit mode
        stored = await upsert_trends(conn, [trend_row("e1"), trend_row("e2")])
        assert await count_trends(conn) == 2
    assert sorted(s.external_id for s in stored) == ["e1", "e2"]


async def test_within_one_batch_the_later_row_of_an_identity_wins(runtime: Runtime) -> None:
    rows = [trend_row("e1", "earlier"), trend_row("e2", "other"), trend_row("e1", "later")]

    stored = await upsert(runtime, rows)

    assert sorted(s.external_id for s in stored) == ["e1", "e2"]
    (e1,) = [s for s in stored if s.external_id == "e1"]
    assert (await stored_state(runtime, e1.id))["text"] == "later"


# -- list_trends -----------------------------------------------------------------------------------------


def catalogue() -> list[TrendRow]:
    """25 rows, three to a minute (ties in time are broken by id), alternating sources, every 4th on music."""
    return [
        trend_row(
            f"e{i:02d}",
            f"event number {i}",
            source="web" if i % 2 else "batch",
            timestamp=BASE - timedelta(minutes=i // 3),
            topics=("music",) if i % 4 == 0 else ("weather",),
        )
        for i in range(25)
    ]


async def list_all(runtime: Runtime, filters: TrendFilters, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Every page in turn; returns the rows and how many pages it took."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    async with connection(runtime.pool) as conn:
        while True:
            page, cursor = await list_trends(conn, filters, limit=limit, cursor=cursor)
            rows += page
            pages += 1
            if cursor is None:
                return rows, pages
            assert pages < 10, "pagination does not end"


async def test_keyset_pages_return_every_row_once_newest_first(runtime: Runtime) -> None:
    await upsert(runtime, catalogue())

    rows, pages = await list_all(runtime, TrendFilters(), limit=10)

    assert pages == 3
    assert len(rows) == 25
    assert len({row["id"] for row in rows}) == 25
    assert rows == sorted(rows, key=lambda row: (row["timestamp"], row["id"]), reverse=True)


async def test_a_page_that_ends_exactly_at_the_last_row_has_no_next_cursor(runtime: Runtime) -> None:
    await upsert(runtime, catalogue()[:20])

    rows, pages = await list_all(runtime, TrendFilters(), limit=10)

    assert (len(rows), pages) == (20, 2)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (TrendFilters(source="web"), {i for i in range(25) if i % 2}),
        (TrendFilters(source=" WEB "), {i for i in range(25) if i % 2}),
        (TrendFilters(topic="music"), {i for i in range(25) if i % 4 == 0}),
        (TrendFilters(topic="#Music"), {i for i in range(25) if i % 4 == 0}),
        (TrendFilters(since=BASE - timedelta(minutes=2)), set(range(9))),
        (TrendFilters(until=BASE - timedelta(minutes=6)), set(range(21, 25))),
        (
            TrendFilters(source="batch", topic="weather", since=BASE - timedelta(minutes=5), until=BASE),
            {i for i in range(3, 18) if i % 2 == 0 and i % 4},
        ),
    ],
)
async def test_filters_select_the_matching_rows(
    runtime: Runtime, filters: TrendFilters, expected: set[int]
) -> None:
    await upsert(runtime, catalogue())

    rows, _ = await list_all(runtime, filters, limit=4)

    assert sorted(row["external_id"] for row in rows) == sorted(f"e{i:02d}" for i in expected)
    assert rows == sorted(rows, key=lambda row: (row["timestamp"], row["id"]), reverse=True)


@pytest.mark.parametrize("cursor", ["not-a-cursor", "", encode_cursor(BASE, UUID(int=1))[:-6]])
async def test_a_bad_cursor_is_refused(runtime: Runtime, cursor: str) -> None:
    async with connection(runtime.pool) as conn:
        with pytest.raises(PermanentError) as raised:
            await list_trends(conn, TrendFilters(), limit=10, cursor=cursor)
    assert raised.value.reason == "bad_cursor"


# -- dead letters ----------------------------------------------------------------------------------------


async def test_the_same_dead_letter_twice_is_one_row_seen_twice(runtime: Runtime) -> None:
    letter = DeadLetter("etl", "missing_field:text", b'{"source": "web", "external_id": "x"}', deliveries=1)
    later = BASE + timedelta(minutes=5)

    async with connection(runtime.pool) as conn:
        ((first_id, first_created),) = await record_dead_letters(conn, [letter], BASE)
        ((second_id, second_created),) = await record_dead_letters(
            conn, [replace(letter, deliveries=3)], later
        )
        stored = await get_dead_letter(conn, first_id)
        total = await count_dead_letters(conn)

    assert (first_created, second_created) == (True, False)
    assert second_id == first_id
    assert total == 1
    assert stored is not None
    assert stored["occurrences"] == 2
    assert stored["deliveries"] == 3
    assert (stored["first_seen"], stored["last_seen"]) == (BASE, later)
    assert bytes(stored["payload"]) == letter.payload


async def test_another_payload_or_stage_is_another_dead_letter(runtime: Runtime) -> None:
    letter = DeadLetter("etl", "missing_field:text", b"{}")

    async with connection(runtime.pool) as conn:
        await record_dead_letters(
            conn, [letter, replace(letter, payload=b"[]"), replace(letter, stage="embed")], BASE
        )
        assert await count_dead_letters(conn) == 3


# -- embeddings ------------------------------------------------------------------------------------------


async def test_stored_embeddings_mark_trends_embedded_and_fill_the_cache(runtime: Runtime) -> None:
    rows = [trend_row("e1", "alpha"), trend_row("e2", "beta")]
    stored = await upsert(runtime, rows)
    vectors = [unit_vector(1), unit_vector(2)]
    writes = [
        EmbeddingWrite(s.id, r.event.content_hash, v) for s, r, v in zip(stored, rows, vectors, strict=True)
    ]

    async with connection(runtime.pool) as conn:
        marked = await store_embeddings(conn, MODEL, writes)
        cached = await load_cached_embeddings(
            conn, MODEL, [r.event.content_hash for r in rows] + ["no-such-hash"]
        )
        other_model = await load_cached_embeddings(conn, "another-model", [rows[0].event.content_hash])

    assert sorted(trend_id for trend_id, _ in marked) == sorted(s.id for s in stored)
    assert all(accepted_at == ACCEPTED for _, accepted_at in marked)
    for s in stored:
        assert (await stored_state(runtime, s.id))["embedding_status"] == "succeeded"
    assert set(cached) == {r.event.content_hash for r in rows}
    for row, vector in zip(rows, vectors, strict=True):
        assert isinstance(cached[row.event.content_hash], np.ndarray)
        assert cached[row.event.content_hash].shape == (384,)
        np.testing.assert_allclose(cached[row.event.content_hash], vector, rtol=1e-6)
    assert other_model == {}


async def test_a_trend_written_twice_in_one_batch_keeps_its_last_vector(runtime: Runtime) -> None:
    row = trend_row("e1", "alpha")
    (stored,) = await upsert(runtime, [row])
    first, last = (EmbeddingWrite(stored.id, row.event.content_hash, unit_vector(i)) for i in (1, 2))

    async with connection(runtime.pool) as conn:
        marked = await store_embeddings(conn, MODEL, [first, last])
        cached = await load_cached_embeddings(conn, MODEL, [row.event.content_hash])

    assert [trend_id for trend_id, _ in marked] == [stored.id]
    np.testing.assert_allclose(cached[row.event.content_hash], unit_vector(2), rtol=1e-6)


async def test_an_embedding_of_an_outdated_text_does_not_mark_the_trend(runtime: Runtime) -> None:
    (stored,) = await upsert(runtime, [trend_row("e1", "old text")])
    await upsert(runtime, [trend_row("e1", "new text")])
    stale = EmbeddingWrite(stored.id, trend_row("e1", "old text").event.content_hash, unit_vector(3))

    async with connection(runtime.pool) as conn:
        marked = await store_embeddings(conn, MODEL, [stale])

    assert marked == []
    assert (await stored_state(runtime, stored.id))["embedding_status"] == "pending"


async def test_a_rejected_row_surfaces_as_a_permanent_error(runtime: Runtime) -> None:
    bad = trend_row("e1")
    bad = replace(bad, enrichment=replace(bad.enrichment, sentiment_score=2.0))

    with pytest.raises(PermanentError) as raised:
        await upsert(runtime, [bad])

    assert raised.value.reason == "database_rejected"
    async with connection(runtime.pool) as conn:
        assert await count_trends(conn) == 0
