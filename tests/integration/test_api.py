"""The ingest API and the minimal read side, through FastAPI's TestClient (lifespan and all) on real engines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import orjson
import pytest
import redis as sync_redis
from fastapi.testclient import TestClient

from tests.conftest import fixed_clock
from trendflow.api.app import create_app
from trendflow.clock import epoch_ms
from trendflow.config import Settings, load_settings
from trendflow.spool import Spool
from trendflow.streams import names
from trendflow.streams.client import open_redis
from trendflow.workers.monitor import replay_spool

GOOD = {"external_id": 1, "source": "Web ", "text": "hello #World", "timestamp": "2026-03-01T10:00:00Z"}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=fixed_clock)) as test_client:
        yield test_client


def raw_entries(settings: Settings) -> list:
    with sync_redis.Redis.from_url(settings.redis_url) as r:  # type: ignore[arg-type]
        return r.xrange(names.RAW_STREAM)


def test_one_event_is_queued_with_its_normalized_identity(client: TestClient, settings: Settings) -> None:
    response = client.post("/v1/events", json=GOOD)
    assert response.status_code == 202
    assert response.json() == {"status": "queued", "source": "web", "external_id": "1"}
    [(_, fields)] = raw_entries(settings)
    assert orjson.loads(fields[b"event"]) == GOOD  # the event as posted, not re-shaped


def test_a_bad_event_is_422_naming_each_field_and_reason(client: TestClient) -> None:
    response = client.post("/v1/events", json={"source": "web", "timestamp": "not a time"})
    assert response.status_code == 422
    error = response.json()["error"]
    reasons = {(d["field"], d["reason"]) for d in error["details"]}
    assert reasons == {
        ("external_id", "missing_field:external_id"),
        ("text", "missing_field:text"),
        ("timestamp", "bad_timestamp"),
    }


def test_a_body_that_is_not_json_is_422_bad_json(client: TestClient) -> None:
    response = client.post("/v1/events", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_json"


def test_batch_accepts_good_items_and_reports_bad_ones_by_index(
    client: TestClient, settings: Settings
) -> None:
    batch = [GOOD, {"external_id": 2, "source": "web"}, {**GOOD, "external_id": 3}]
    response = client.post("/v1/events/batch", json=batch)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2 and body["spooled"] == 0
    assert [r["index"] for r in body["rejected"]] == [1]
    assert {e["reason"] for e in body["rejected"][0]["errors"]} == {
        "missing_field:text",
        "missing_field:timestamp",
    }
    assert len(raw_entries(settings)) == 2


def test_ndjson_batch_with_a_broken_line(client: TestClient, settings: Settings) -> None:
    body = b'{"external_id": 1, "source": "a", "text": "x", "timestamp": 1772358000}\nnot json\n'
    response = client.post("/v1/events/batch", content=body, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 202
    assert response.json()["rejected"] == [{"index": 1, "errors": [{"field": "event", "reason": "bad_json"}]}]


def test_batch_of_only_bad_items_is_422_with_the_same_body(client: TestClient) -> None:
    response = client.post("/v1/events/batch", json=[{"x": 1}])
    assert response.status_code == 422
    assert response.json()["accepted"] == 0 and response.json()["rejected"][0]["index"] == 0


def test_rejections_are_recorded_as_api_dead_letters(client: TestClient, settings: Settings) -> None:
    import psycopg

    client.post("/v1/events", json={"source": "web"})
    client.post("/v1/events", json={"source": "web"})  # the same payload again: one letter, two occurrences
    with psycopg.connect(settings.database_url) as conn:  # type: ignore[arg-type]
        rows = conn.execute("SELECT stage, reason, occurrences FROM dead_letters").fetchall()
    assert rows == [("api", "missing_field:external_id", 2)]


def test_backpressure_answers_429_with_retry_after(tmp_path, database_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, database_url=database_url, redis_url=redis_url, max_lag=3)
    with sync_redis.Redis.from_url(redis_url) as r:
        r.xgroup_create(names.RAW_STREAM, names.ETL_GROUP, id="0", mkstream=True)
        for i in range(5):
            r.xadd(names.RAW_STREAM, {"event": b"{}", "n": i})
    with TestClient(create_app(settings, clock=fixed_clock)) as client:
        response = client.post("/v1/events", json=GOOD)
    assert response.status_code == 429
    assert response.headers["retry-after"]
    assert response.json()["error"]["code"] == "backpressure"


def test_read_side_lists_and_gets_and_404s(client: TestClient) -> None:
    assert client.get("/v1/trends").json() == {"items": [], "next_cursor": None}
    missing = client.get("/v1/trends/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/v1/trends", params={"cursor": "garbage"}).status_code == 400
    assert client.get("/v1/trends", params={"limit": 0}).status_code == 422


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok", "postgres": "ok"}


def test_metrics_answer_counts_and_stream_gauges(client: TestClient) -> None:
    client.post("/v1/events", json=GOOD)
    client.post("/v1/events", json={"source": "web"})
    text = client.get("/metrics").text
    assert 'trendflow_events_accepted_total{source="web"}' in text
    assert 'trendflow_events_rejected_total{reason="missing_field:external_id"}' in text
    assert 'trendflow_stream_length{stream="trends:raw"} 1.0' in text
    assert "trendflow_embedding_backlog 0.0" in text


def test_ops_status_has_the_documented_shape(client: TestClient) -> None:
    client.post("/v1/events", json=GOOD)
    status = client.get("/v1/ops/status").json()
    assert status["streams"]["trends:raw"]["length"] == 1
    assert set(status) >= {"streams", "dead_letters", "spool", "embedding_backlog", "latest"}
    assert status["spool"] == {"events": 0, "bytes": 0, "torn": False}
    assert status["latest"] == {"ingested_at": None, "embedded_at": None}  # nothing stored until the ETL runs


def test_a_full_redis_sends_the_whole_batch_to_the_spool(tmp_path, database_url: str, redis_url: str) -> None:
    # maxmemory below what Redis already uses, and noeviction: every write is refused with OOM.
    settings = load_settings(
        data_dir=tmp_path / "data", database_url=database_url, redis_url=redis_url, ingest_timeout_ms=200
    )
    admin = sync_redis.Redis.from_url(redis_url)
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        with TestClient(create_app(settings, clock=fixed_clock)) as client:
            batch = [{**GOOD, "external_id": i} for i in range(3)]
            response = client.post("/v1/events/batch", json=batch)
            assert response.status_code == 202
            assert (response.json()["accepted"], response.json()["spooled"]) == (3, 3)
            assert client.get("/v1/ops/status").json()["spool"]["events"] == 3
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", policy)
        admin.close()
    assert raw_entries(settings) == []  # nothing half-landed in the stream

    # Redis has room again: the replayed entries say when the API accepted them, not when they were replayed.
    assert asyncio.run(replay(settings)) == 3
    entries = raw_entries(settings)
    assert [orjson.loads(fields[b"event"])["external_id"] for _, fields in entries] == [0, 1, 2]
    assert {int(fields[b"accepted_at"]) for _, fields in entries} == {epoch_ms(fixed_clock())}


async def replay(settings: Settings) -> int:
    client = open_redis(str(settings.redis_url))
    try:
        return await replay_spool(client, Spool(settings.spool_path))
    finally:
        await client.aclose()
