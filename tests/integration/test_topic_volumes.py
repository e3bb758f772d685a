"""Topic volumes on a real PostgreSQL: exact under redelivery, updates, deletes and races; trending on top."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from trendflow.api.app import create_app
from trendflow.cli import app as cli_app
from trendflow.config import Settings
from trendflow.db.migrate import _alembic_config, migrate
from trendflow.db.pool import connection
from trendflow.db.topics import find_trending, prune_topic_volumes, topic_counts
from trendflow.db.trends import TrendRow, upsert_trends
from trendflow.domain.enrich import Enrichment
from trendflow.domain.models import TrendEvent
from trendflow.domain.trending import parse_window
from trendflow.runtime import Runtime

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

Volumes = dict[tuple[str, str, datetime], int]

# What the triggers must always agree with: the volumes recounted from enriched_trends itself.
RECOUNT = """
SELECT topic, source, date_bin('5 minutes', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00'), count(*)
FROM enriched_trends, LATERAL (SELECT DISTINCT unnest(topics) AS topic) AS t
GROUP BY 1, 2, 3
"""


def row(
    external_id: str,
    timestamp: datetime,
    topics: tuple[str, ...],
    *,
    source: str = "web",
    text: str = "hello",
) -> TrendRow:
    event = TrendEvent(source, external_id, text, timestamp, topics)
    found = Enrichment(0.0, "neutral", topics, "en", None, 0.5, {"version": 1})
    return TrendRow(event, found)


def spread(topic: str, count: int, hour_start: datetime, *, source: str = "web") -> list[TrendRow]:
    """`count` events of one topic spread evenly over the hour that begins at `hour_start`."""
    step = HOUR / count
    stamp = f"{hour_start:%Y%m%d%H}"
    return [row(f"{topic}-{stamp}-{i}", hour_start + i * step, (topic,), source=source) for i in range(count)]


def burst_scenario(quiet_hours: int = 6) -> list[TrendRow]:
    """Quiet hours then a burst (2 → 40 an hour), a steady 40 an hour, and a newcomer with three events."""
    rows = []
    for hours_back in range(quiet_hours + 1, 0, -1):
        hour_start = AT - hours_back * HOUR
        rows += spread("eclipse", 40 if hours_back == 1 else 2, hour_start)
        rows += spread("football", 40, hour_start, source="web" if hours_back % 2 else "rss")
    rows += spread("newcomer", 3, AT - HOUR)
    return rows


async def store(runtime: Runtime, rows: Sequence[TrendRow]) -> None:
    async with connection(runtime.pool) as conn, conn.transaction():
        await upsert_trends(conn, rows)


async def volumes(runtime: Runtime) -> Volumes:
    async with connection(runtime.pool) as conn:
        cur = await conn.execute("SELECT topic, source, bucket_start, count FROM topic_volumes")
        return {(t, s, b): n for t, s, b, n in await cur.fetchall()}


async def recount(runtime: Runtime) -> Volumes:
    async with connection(runtime.pool) as conn:
        cur = await conn.execute(RECOUNT)
        return {(t, s, b): n for t, s, b, n in await cur.fetchall()}


async def trending(runtime: Runtime, window: str = "1h", source: str | None = None) -> list[dict]:
    async with connection(runtime.pool) as conn:
        report = await find_trending(conn, window=parse_window(window), at=AT, limit=10, source=source)
    return report.to_json()["items"]


async def test_a_burst_ranks_first_with_its_exact_count(runtime: Runtime) -> None:
    await store(runtime, burst_scenario())
    items = await trending(runtime)
    assert items[0]["topic"] == "eclipse"
    assert (items[0]["count"], items[0]["baseline"], items[0]["growth"]) == (40, 2.0, 20.0)
    assert len(items[0]["sample_trend_ids"]) == 3
    assert {i["topic"] for i in items} == {"eclipse"}  # steady and three-event topics do not stand out


async def test_reposting_every_event_changes_no_number(runtime: Runtime) -> None:
    rows = burst_scenario()
    await store(runtime, rows)
    before_volumes, before_trending = await volumes(runtime), await trending(runtime)
    await store(runtime, rows)
    # And again, reordered, with duplicates inside the batch.
    await store(runtime, list(reversed(rows)) + rows[:50])
    assert await volumes(runtime) == before_volumes == await recount(runtime)
    assert sum(before_volumes.values()) == len(rows)
    assert await trending(runtime) == before_trending


async def test_changing_topics_moves_the_count(runtime: Runtime) -> None:
    first = row("e1", AT - timedelta(minutes=3), ("cats", "dogs"))
    await store(runtime, [first, row("e2", AT - timedelta(minutes=2), ("cats",))])
    await store(runtime, [row("e1", first.event.timestamp, ("dogs", "eclipse"))])
    bucket = datetime(2026, 3, 1, 11, 55, tzinfo=UTC)
    assert await volumes(runtime) == {("cats", "web", bucket): 1, ("dogs", "web", bucket): 1,
                                      ("eclipse", "web", bucket): 1}  # fmt: skip


async def test_changing_the_time_moves_the_count_and_empty_buckets_go(runtime: Runtime) -> None:
    await store(runtime, [row("e1", AT - timedelta(minutes=3), ("cats",))])
    await store(runtime, [row("e1", AT - 2 * HOUR, ("cats",))])
    assert await volumes(runtime) == {("cats", "web", AT - 2 * HOUR): 1}


async def test_any_update_of_the_table_is_followed_not_just_upserts(runtime: Runtime) -> None:
    await store(runtime, [row("e1", AT, ("cats",)), row("e2", AT, ("cats",))])
    async with connection(runtime.pool) as conn:
        await conn.execute("UPDATE enriched_trends SET source = 'rss', topics = topics || '{dogs}'")
        await conn.execute("UPDATE enriched_trends SET embedding_status = 'succeeded'")  # touches no count
    assert await volumes(runtime) == {("cats", "rss", AT): 2, ("dogs", "rss", AT): 2}


async def test_a_late_event_lands_in_its_own_bucket(runtime: Runtime) -> None:
    await store(runtime, spread("eclipse", 12, AT - HOUR))
    late = AT - timedelta(hours=5, minutes=58)
    await store(runtime, [row("late", late, ("eclipse",))])
    counted = await volumes(runtime)
    assert counted[("eclipse", "web", datetime(2026, 3, 1, 6, 0, tzinfo=UTC))] == 1
    assert sum(counted.values()) == 13
    async with connection(runtime.pool) as conn:
        early = await topic_counts(conn, AT - 6 * HOUR, AT - 5 * HOUR)
    assert early["items"] == [{"topic": "eclipse", "count": 1, "sources": {"web": 1}}]


async def test_a_deleted_event_is_subtracted(runtime: Runtime) -> None:
    await store(runtime, [row("e1", AT, ("cats",)), row("e2", AT, ("cats",))])
    async with connection(runtime.pool) as conn:
        await conn.execute("DELETE FROM enriched_trends WHERE external_id = 'e1'")
    assert await volumes(runtime) == {("cats", "web", AT): 1}
    async with connection(runtime.pool) as conn:
        await conn.execute("TRUNCATE enriched_trends CASCADE")
    assert await volumes(runtime) == {}


async def test_a_rolled_back_batch_leaves_no_count(runtime: Runtime) -> None:
    with pytest.raises(RuntimeError):
        async with connection(runtime.pool) as conn, conn.transaction():
            await upsert_trends(conn, [row("e1", AT, ("cats",))])
            raise RuntimeError("the batch fails after the upsert")
    assert await volumes(runtime) == {}


async def test_random_redeliveries_updates_and_deletes_stay_exact(runtime: Runtime) -> None:
    rng = random.Random(7)
    topics = ["a", "b", "c", "d", "e"]
    for step in range(40):
        batch = []
        for _ in range(rng.randint(1, 30)):
            chosen = tuple(rng.choices(topics, k=rng.randint(0, 3)))  # repeats too
            stamp = AT - timedelta(minutes=rng.randint(0, 180), seconds=rng.randint(0, 59))
            batch.append(row(f"e{rng.randint(0, 60)}", stamp, chosen, source=rng.choice(["web", "rss"])))
        await store(runtime, batch)
        if step % 7 == 6:
            async with connection(runtime.pool) as conn:
                await conn.execute(
                    "DELETE FROM enriched_trends WHERE external_id = %s", (f"e{rng.randint(0, 60)}",)
                )
        assert await volumes(runtime) == await recount(runtime), f"after step {step}"


async def test_concurrent_redeliveries_of_the_same_batch_count_once(runtime: Runtime) -> None:
    rows = burst_scenario()
    await asyncio.gather(*(store(runtime, rows) for _ in range(4)))
    other_hour = [
        replace(r, event=replace(r.event, external_id=r.event.external_id + "-x")) for r in rows[:200]
    ]
    await asyncio.gather(
        store(runtime, other_hour[:100]), store(runtime, other_hour[100:]), store(runtime, rows)
    )
    counted = await volumes(runtime)
    assert counted == await recount(runtime)
    assert sum(counted.values()) == len(rows) + 200


async def test_windows_of_every_length_see_the_burst(runtime: Runtime) -> None:
    await store(runtime, burst_scenario(quiet_hours=7 * 24 - 1))  # a week: six 24h windows before the current
    items = {w: await trending(runtime, w) for w in ("15m", "1h", "6h", "24h")}
    assert {w: [i["topic"] for i in found] for w, found in items.items()} == {
        "15m": ["eclipse"], "1h": ["eclipse"], "6h": ["eclipse"], "24h": ["eclipse"],
    }  # fmt: skip
    counts = {w: (found[0]["count"], found[0]["baseline"]) for w, found in items.items()}
    assert counts == {"15m": (10, round(31 / 6, 4)), "1h": (40, 2.0), "6h": (50, 12.0), "24h": (86, 48.0)}


async def test_without_history_every_topic_is_new_and_volume_decides(runtime: Runtime) -> None:
    await store(runtime, burst_scenario())  # seven hours of data: no 6h window before the current is whole
    items = await trending(runtime, "6h")
    assert [(i["topic"], i["count"], i["baseline"], i["growth"]) for i in items] == [
        ("football", 240, 0.0, None), ("eclipse", 50, 0.0, None),
    ]  # fmt: skip


async def test_the_source_filter_counts_one_source(runtime: Runtime) -> None:
    rows = spread("eclipse", 2, AT - 2 * HOUR) + spread("eclipse", 30, AT - HOUR)
    rows += spread("eclipse", 10, AT - HOUR, source="rss")
    await store(runtime, rows)
    assert [(i["topic"], i["count"]) for i in await trending(runtime, source=" RSS ")] == [("eclipse", 10)]
    assert [(i["topic"], i["count"]) for i in await trending(runtime)] == [("eclipse", 40)]


async def test_pruning_drops_old_buckets_and_keeps_the_rest_exact(runtime: Runtime) -> None:
    await store(runtime, burst_scenario())
    async with connection(runtime.pool) as conn:
        removed = await prune_topic_volumes(conn, AT - 3 * HOUR)
    counted = await volumes(runtime)
    assert removed > 0 and min(b for _, _, b in counted) == AT - 3 * HOUR
    assert counted == {k: n for k, n in (await recount(runtime)).items() if k[2] >= AT - 3 * HOUR}
    # An update in pruned time has nothing to subtract from; what it adds is dropped by the next prune.
    await store(runtime, [row("football-2026030108-0", AT - 4 * HOUR, ("cats",), source="rss")])
    after = await volumes(runtime)
    assert ("football", "rss", AT - 4 * HOUR) not in after and after[("cats", "rss", AT - 4 * HOUR)] == 1
    assert {k: n for k, n in after.items() if k[2] >= AT - 3 * HOUR} == {
        k: n for k, n in counted.items() if k[2] >= AT - 3 * HOUR
    }


async def test_the_migration_backfills_existing_rows_and_migrate_stays_idempotent(
    runtime: Runtime, database_url: str
) -> None:
    config = _alembic_config(database_url)
    await asyncio.to_thread(command.downgrade, config, "0001")
    rows = burst_scenario()
    await store(runtime, rows)  # no triggers at revision 0001
    await asyncio.to_thread(migrate, database_url)
    await asyncio.to_thread(migrate, database_url)
    counted = await volumes(runtime)
    assert counted == await recount(runtime) and sum(counted.values()) == len(rows)
    await store(runtime, rows)
    assert await volumes(runtime) == counted


# -- the API and the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


async def test_the_trending_endpoint_answers_the_documented_shape(
    runtime: Runtime, client: TestClient
) -> None:
    await store(runtime, burst_scenario())
    response = await asyncio.to_thread(
        client.get, "/v1/topics/trending", params={"window": "1h", "at": AT.isoformat()}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["window"], body["window_start"], body["window_end"]) == ("1h", "2026-03-01T11:00:00+00:00",
                                                                          "2026-03-01T12:00:00+00:00")  # fmt: skip
    assert body["baseline_windows"] == 6
    [eclipse] = body["items"]
    assert {k: eclipse[k] for k in ("topic", "count", "baseline", "growth")} == {
        "topic": "eclipse", "count": 40, "baseline": 2.0, "growth": 20.0,
    }  # fmt: skip
    assert eclipse["score"] > 0 and len(eclipse["sample_trend_ids"]) == 3
    naive = await asyncio.to_thread(client.get, "/v1/topics/trending", params={"at": "2026-03-01T12:00:00"})
    assert naive.json() == body


async def test_a_bad_window_is_422_naming_the_field(client: TestClient) -> None:
    response = await asyncio.to_thread(client.get, "/v1/topics/trending", params={"window": "7m"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": "window", "reason": "bad_window"}]


async def test_the_topics_endpoint_lists_counts_for_a_range(runtime: Runtime, client: TestClient) -> None:
    await store(runtime, burst_scenario())
    params = {"since": (AT - HOUR).isoformat(), "until": AT.isoformat()}
    response = await asyncio.to_thread(client.get, "/v1/topics", params=params)
    assert response.status_code == 200
    assert response.json()["items"] == [
        {"topic": "eclipse", "count": 40, "sources": {"web": 40}},
        {"topic": "football", "count": 40, "sources": {"web": 40}},
        {"topic": "newcomer", "count": 3, "sources": {"web": 3}},
    ]
    backwards = await asyncio.to_thread(
        client.get, "/v1/topics", params={"since": AT.isoformat(), "until": AT.isoformat()}
    )
    assert backwards.status_code == 422


async def test_the_cli_prints_the_same_report(runtime: Runtime, settings: Settings) -> None:
    await store(runtime, burst_scenario())
    env = {"TRENDFLOW_DATA_DIR": str(settings.data_dir), "TRENDFLOW_DATABASE_URL": settings.database_url,
           "TRENDFLOW_REDIS_URL": settings.redis_url}  # fmt: skip
    args = ["trending", "--window", "1h", "--at", "2026-03-01T12:00:00Z", "--json"]
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(i["topic"], i["count"]) for i in report["items"]] == [("eclipse", 40)]
    bad = await asyncio.to_thread(CliRunner().invoke, cli_app, ["trending", "--window", "7m"], env=env)
    assert bad.exit_code == 2
