"""Topic volumes: what is trending, topic counts over a time range, and retention.

The counts themselves are written by triggers on enriched_trends (migration 0002), in the same transaction
as every upsert; this module reads them, hands the per-window counts to the pure scorer in
`trendflow.domain.trending`, and prunes old buckets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from trendflow.db import queries
from trendflow.domain.trending import (
    MIN_SUPPORT,
    TopicCounts,
    TrendingTopic,
    WindowPlan,
    ceil_to_bucket,
    floor_to_bucket,
    format_window,
    plan_windows,
    rank_trending,
)

SAMPLES_PER_TOPIC = 3


@dataclass(frozen=True, slots=True)
class TrendingReport:
    plan: WindowPlan
    source: str | None
    topics: list[TrendingTopic]
    samples: dict[str, list[UUID]]

    def to_json(self) -> dict[str, Any]:
        """The body of GET /v1/topics/trending and of `trendflow trending --json`."""
        return {
            "window": format_window(self.plan.window),
            "window_start": self.plan.start.isoformat(),
            "window_end": self.plan.end.isoformat(),
            "baseline_windows": self.plan.baseline_windows,
            "source": self.source,
            "items": [
                {
                    "topic": t.topic,
                    "count": t.count,
                    "baseline": round(t.baseline, 4),
                    "growth": None if t.growth is None else round(t.growth, 4),
                    "score": round(t.score, 4),
                    "sample_trend_ids": [str(i) for i in self.samples.get(t.topic, [])],
                }
                for t in self.topics
            ],
        }


async def find_trending(
    conn: psycopg.AsyncConnection, *, window: timedelta, at: datetime, limit: int, source: str | None = None
) -> TrendingReport:
    """Topics whose volume in the window up to `at` stands out against the windows before it."""
    source = _normalize_source(source)
    cur = await conn.execute(queries.FIRST_VOLUME_BUCKET)
    first = await cur.fetchone()
    plan = plan_windows(window, at, data_start=first[0] if first else None)
    counts = await _window_counts(conn, plan, source)
    topics = rank_trending(counts, limit=limit)
    samples = await _sample_ids(conn, plan, source, [t.topic for t in topics])
    return TrendingReport(plan, source, topics, samples)


async def _window_counts(
    conn: psycopg.AsyncConnection, plan: WindowPlan, source: str | None
) -> list[TopicCounts]:
    params = {
        "start": plan.start,
        "end": plan.end,
        "history_start": plan.history_start,
        "window": plan.window,
        "source": source,
        "min_support": MIN_SUPPORT,
    }
    per_topic: dict[str, list[int]] = defaultdict(lambda: [0] * (plan.baseline_windows + 1))
    cur = await conn.execute(queries.TOPIC_WINDOW_VOLUMES, params)
    for topic, window_start, n in await cur.fetchall():
        per_topic[topic][(plan.start - window_start) // plan.window] = int(n)
    return [TopicCounts(topic, n[0], tuple(n[1:])) for topic, n in per_topic.items()]


async def _sample_ids(
    conn: psycopg.AsyncConnection, plan: WindowPlan, source: str | None, topics: list[str]
) -> dict[str, list[UUID]]:
    if not topics:
        return {}
    params = {
        "start": plan.start,
        "end": plan.end,
        "source": source,
        "topics": topics,
        "per_topic": SAMPLES_PER_TOPIC,
    }
    cur = await conn.execute(queries.TOPIC_SAMPLE_IDS, params)
    return {topic: list(ids) for topic, ids in await cur.fetchall()}


async def topic_counts(
    conn: psycopg.AsyncConnection,
    since: datetime,
    until: datetime,
    *,
    source: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Topics by event count in a time range widened to whole 5-minute buckets, with counts per source."""
    since, until = floor_to_bucket(since), ceil_to_bucket(until)
    params = {"since": since, "until": until, "source": _normalize_source(source), "limit": limit}
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.TOPIC_RANGE_COUNTS, params)
        rows = await cur.fetchall()
    return {"since": since.isoformat(), "until": until.isoformat(), "items": rows}


async def prune_topic_volumes(conn: psycopg.AsyncConnection, before: datetime) -> int:
    """Retention: drop the buckets that start before `before`; returns how many rows went.

    Keep at least (BASELINE_WINDOWS + 1) × the longest window queried (7 days for 24h windows).
    """
    cur = await conn.execute(queries.PRUNE_TOPIC_VOLUMES, {"before": before})
    return cur.rowcount


def _normalize_source(source: str | None) -> str | None:
    return source.strip().lower() if source and source.strip() else None
