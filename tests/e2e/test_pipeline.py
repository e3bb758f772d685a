"""The whole pipeline through real processes: `trendflow up`, the real API, Redis, PostgreSQL and model."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.harness import Pipeline, wait_for
from trendflow.engines import engine_processes

pytestmark = pytest.mark.e2e

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SUBJECTS = [
    "the harbour festival",
    "a new phone launch",
    "the city marathon",
    "rail strikes",
    "a solar eclipse",
]


def make_events(n: int, *, source: str = "e2e") -> list[dict]:
    """n distinct events; texts repeat every 100 so the content-hash cache has work to do."""
    return [
        {
            "external_id": f"ev-{i}",
            "source": source,
            "text": f"Everyone is talking about {SUBJECTS[i % 5]} today, post number {i % 100}",
            "timestamp": (START + timedelta(seconds=i)).isoformat(),
            "topics": "e2e,pipeline" if i % 2 else ["e2e"],
        }
        for i in range(n)
    ]


def post_all(pipeline: Pipeline, events: list[dict]) -> None:
    with httpx.Client(base_url=pipeline.url, timeout=30) as client:
        for start in range(0, len(events), 250):
            response = client.post("/v1/events/batch", json=events[start : start + 250])
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] == len(events[start : start + 250])


def counts(pipeline: Pipeline) -> tuple[int, int, int]:
    """(trends, distinct identities, embedding records) as stored."""
    [(trends, identities)] = pipeline.query(
        "SELECT count(*), count(DISTINCT (source, external_id)) FROM enriched_trends"
    )
    [(embeddings,)] = pipeline.query("SELECT count(*) FROM embedding_records")
    return trends, identities, embeddings


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    running = Pipeline.create(TRENDFLOW_CLAIM_IDLE_MS="2000")
    yield running
    running.stop()
    wait_for(lambda: not engine_processes(running.data_dir), timeout_s=30, what="the engines to stop")


def test_thousand_events_stored_and_embedded_once_and_reposting_changes_nothing(pipeline: Pipeline) -> None:
    pipeline.start("up")
    pipeline.wait_ready()
    events = make_events(1000)

    post_all(pipeline, events)
    done = wait_for(
        lambda: (
            counts(pipeline) == (1000, 1000, 1000)
            and pipeline.query("SELECT count(*) FROM enriched_trends WHERE embedding_status = 'succeeded'")[
                0
            ][0]
            == 1000
        ),
        timeout_s=300,
        what="1,000 trends stored and embedded",
    )
    assert done
    before = pipeline.query("SELECT max(updated_at), count(*) FROM embedding_records")
    trends_before = pipeline.query("SELECT max(updated_at) FROM enriched_trends")
    print(f"\nsent 1000, stored {counts(pipeline)[0]}, embedded {counts(pipeline)[2]}")

    post_all(pipeline, events)
    # The second copy flows through the ETL; once the raw stream is drained, nothing may have changed.
    wait_for(
        lambda: _raw_stream_drained(pipeline), timeout_s=120, what="the re-posted events to be processed"
    )
    assert counts(pipeline) == (1000, 1000, 1000)
    assert pipeline.query("SELECT max(updated_at), count(*) FROM embedding_records") == before
    assert pipeline.query("SELECT max(updated_at) FROM enriched_trends") == trends_before
    print(f"re-posted 1000: stored {counts(pipeline)[0]}, embedded {counts(pipeline)[2]}, duplicates 0")

    # /metrics answers for the whole process tree: the ETL and embedding workers' samples are in the API's scrape.
    scraped = _metrics(pipeline)
    assert scraped["trendflow_events_stored_total"] == 2000  # each event was upserted twice, stored once
    assert scraped["trendflow_time_to_searchable_seconds_count"] == 1000
    assert scraped["trendflow_model_batch_size_sum"] == 100  # 1,000 texts, 100 distinct

    latest = httpx.get(f"{pipeline.url}/v1/ops/status", timeout=10).json()["latest"]
    assert latest["ingested_at"] and latest["embedded_at"]  # what a polling agent reads

    trend = httpx.get(f"{pipeline.url}/v1/trends", params={"source": "e2e", "limit": 1}).json()["items"][0]
    assert trend["embedding_status"] == "succeeded"
    assert set(trend) >= {
        "id",
        "source",
        "external_id",
        "text",
        "timestamp",
        "topics",
        "sentiment",
        "language",
    }


def _metrics(pipeline: Pipeline) -> dict[str, float]:
    """Unlabelled samples of the API's /metrics, by name."""
    samples = {}
    for line in httpx.get(f"{pipeline.url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _raw_stream_drained(pipeline: Pipeline) -> bool:
    status = httpx.get(f"{pipeline.url}/v1/ops/status", timeout=10).json()
    raw = status["streams"]["trends:raw"]["groups"].get("etl", {})
    embed = status["streams"]["trends:embed"]["groups"].get("embedder", {})
    return (
        raw.get("lag") == 0
        and raw.get("pending") == 0
        and embed.get("lag", 0) == 0
        and embed.get("pending", 0) == 0
    )


def test_etl_worker_restarted_mid_stream_resumes_without_loss(pipeline: Pipeline) -> None:
    pipeline.start("api")
    pipeline.wait_ready()
    post_all(pipeline, make_events(600, source="restart"))
    etl = pipeline.start("worker", "etl")
    wait_for(lambda: counts(pipeline)[0] > 0, timeout_s=120, what="the ETL worker to store its first batch")
    etl.send_signal(signal.SIGKILL)  # mid-stream, possibly mid-batch: its pending entries must not be lost
    etl.wait()
    stored_when_killed = counts(pipeline)[0]

    pipeline.start("worker", "etl")
    wait_for(lambda: counts(pipeline)[0] == 600, timeout_s=180, what="all 600 events after the restart")
    trends, identities, _ = counts(pipeline)
    print(f"\nsent 600, stored before kill {stored_when_killed}, stored after restart {trends}, duplicates 0")
    assert trends == identities == 600
