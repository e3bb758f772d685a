"""Every shape of DESIGN §4, through the running system: posted to the API or written straight into trends:raw,
processed by the real ETL worker, and read back from GET /v1/trends/{id} in its canonical form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.conftest import fixed_clock
from trendflow.api.app import create_app
from trendflow.config import Settings
from trendflow.domain.enrich import Enricher
from trendflow.domain.normalize import Limits
from trendflow.streams import names
from trendflow.streams.consumer import ensure_group, read_new
from trendflow.workers.etl import EtlWorker

BASE = {"source": "shapes", "text": "plain words", "timestamp": "2026-03-01T10:00:00Z"}

# (name, fields added to BASE, what GET /v1/trends/{id} must show for the field)
SHAPES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("external_id_integer", {"external_id": 42}, {"external_id": "42"}),
    ("source_any_case_and_spaces", {"source": "  WebHook "}, {"source": "webhook"}),
    ("text_trimmed", {"text": "  padded text  "}, {"text": "padded text"}),
    (
        "timestamp_rfc3339_offset",
        {"timestamp": "2026-03-01T12:00:00+02:00"},
        {"timestamp": "2026-03-01T10:00:00+00:00"},
    ),
    (
        "timestamp_naive_is_utc",
        {"timestamp": "2026-03-01T10:00:00"},
        {"timestamp": "2026-03-01T10:00:00+00:00"},
    ),
    ("timestamp_epoch_seconds", {"timestamp": 1772359200}, {"timestamp": "2026-03-01T10:00:00+00:00"}),
    ("timestamp_epoch_millis", {"timestamp": 1772359200000}, {"timestamp": "2026-03-01T10:00:00+00:00"}),
    ("timestamp_numeric_string", {"timestamp": "1772359200"}, {"timestamp": "2026-03-01T10:00:00+00:00"}),
    ("topics_array_with_nulls", {"topics": ["A", None, " ", "#b", "a"]}, {"topics": ["a", "b"]}),
    ("topics_comma_string", {"topics": "tag1,tag2"}, {"topics": ["tag1", "tag2"]}),
    ("topics_semicolon_string", {"topics": "tag1; tag2"}, {"topics": ["tag1", "tag2"]}),
    ("topics_hashtag_string", {"topics": "#a #b"}, {"topics": ["a", "b"]}),
    ("topics_json_in_string", {"topics": '["a","b"]'}, {"topics": ["a", "b"]}),
    ("topics_single_word", {"topics": "Solo"}, {"topics": ["solo"]}),
    ("topics_null", {"topics": None}, {"topics": []}),
    (
        "topics_merged_with_hashtags",
        {"topics": "given", "text": "about #Found"},
        {"topics": ["given", "found"]},
    ),
    ("metadata_object", {"metadata": {"k": 1}}, {"metadata": {"k": 1}}),
    ("metadata_json_string", {"metadata": '{"k": 1}'}, {"metadata": {"k": 1}}),
    ("metadata_key_value_list", {"metadata": [{"key": "k", "value": 1}]}, {"metadata": {"k": 1}}),
    ("metadata_pairs", {"metadata": [["k", 1]]}, {"metadata": {"k": 1}}),
    ("unknown_fields_kept", {"campaign": "x"}, {"metadata": {"extra": {"campaign": "x"}}}),
    ("geo_object", {"geo": {"lat": 38.7, "lon": -9.1}}, {"geo": {"lat": 38.7, "lon": -9.1}}),
    ("geo_lat_lon_string", {"geo": "38.7,-9.1"}, {"geo": {"lat": 38.7, "lon": -9.1}}),
    ("geo_country_code", {"geo": "de"}, {"geo": {"country": "DE"}}),
    ("geo_country_name", {"geo": "France"}, {"geo": {"country": "FR"}}),
]


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=fixed_clock)) as test_client:
        yield test_client


async def run_etl(runtime: Any) -> None:
    worker = EtlWorker(
        runtime.pool, runtime.redis, Enricher(), limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    await ensure_group(runtime.redis, names.RAW_STREAM, names.ETL_GROUP)
    while entries := await read_new(
        runtime.redis, names.RAW_STREAM, names.ETL_GROUP, "t", count=100, block_ms=10
    ):
        await worker.process_batch(entries)


def stored(client: TestClient, source: str, external_id: str) -> dict[str, Any]:
    items = client.get("/v1/trends", params={"source": source, "limit": 500}).json()["items"]
    return next(item for item in items if item["external_id"] == external_id)


def check(client: TestClient, route: str) -> None:
    for name, fields, expected in SHAPES:
        event = {**BASE, "external_id": f"{route}-{name}", **fields}
        source = expected.get("source", "shapes")
        trend = stored(client, source, expected.get("external_id", event["external_id"]))
        for field, value in expected.items():
            assert trend[field] == value, (route, name, field, trend[field])


async def test_every_shape_through_the_api(client: TestClient, runtime: Any) -> None:
    for name, fields, _ in SHAPES:
        response = client.post("/v1/events", json={**BASE, "external_id": f"api-{name}", **fields})
        assert response.status_code == 202, (name, response.text)
    await run_etl(runtime)
    check(client, "api")


async def test_every_shape_written_straight_into_the_stream(client: TestClient, runtime: Any) -> None:
    for name, fields, _ in SHAPES:
        event = {**BASE, "external_id": f"stream-{name}", **fields}
        await runtime.redis.xadd(names.RAW_STREAM, {"event": orjson.dumps(event)})
    await run_etl(runtime)
    check(client, "stream")
