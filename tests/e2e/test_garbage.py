"""Garbage written straight into trends:raw: what can be normalized is stored, the rest is a dead letter with
its reason, visible in GET /v1/dlq, alerted once per reason, and the worker goes on to the next good entry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis as sync_redis

from tests.e2e.harness import Pipeline, WebhookReceiver, wait_for
from trendflow.engines import engine_processes

pytestmark = pytest.mark.e2e


def event(external_id: str, **fields: object) -> bytes:
    body = {
        "external_id": external_id,
        "source": "garbage",
        "text": f"text of {external_id}",
        "timestamp": 1772358000,
    }
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


ENTRIES: list[tuple[dict[str, bytes], str | None]] = [
    ({"event": event("comma-topics", topics="tag1,tag2")}, None),
    ({"event": event("number-topics", topics=42)}, "bad_topics"),
    ({"event": event("string-metadata", metadata="not json {")}, "bad_metadata"),
    ({"event": event("no-text", text=None)}, "missing_field:text"),
    ({"payload": b"an entry without the event field"}, "missing_field:event"),
    ({"event": b"\xff\xfe\xfd not utf-8"}, "bad_encoding"),
    ({"event": event("one-megabyte", text="x" * 1_000_000)}, "text_too_long"),
    ({"event": event("last-good-one")}, None),
]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    running = WebhookReceiver()
    yield running
    running.close()


@pytest.fixture
def pipeline(receiver: WebhookReceiver) -> Iterator[Pipeline]:
    running = Pipeline.create(TRENDFLOW_ALERT_WEBHOOK_URL=receiver.url, TRENDFLOW_ALERT_INTERVAL_S="600")
    yield running
    running.stop()
    wait_for(lambda: not engine_processes(running.data_dir), timeout_s=30, what="the engines to stop")


def test_garbage_becomes_dead_letters_with_reasons_and_good_entries_flow(
    pipeline: Pipeline, receiver: WebhookReceiver
) -> None:
    pipeline.start("up")
    pipeline.wait_ready()
    with sync_redis.Redis.from_url(pipeline.redis_url()) as r:
        for fields, _ in ENTRIES:
            r.xadd("trends:raw", fields)

    wait_for(
        lambda: pipeline.query("SELECT 1 FROM enriched_trends WHERE external_id = 'last-good-one'"),
        timeout_s=120,
        what="the good entry after the garbage",
    )
    stored = dict(pipeline.query("SELECT external_id, topics FROM enriched_trends"))
    assert stored == {"comma-topics": ["tag1", "tag2"], "last-good-one": []}

    letters = httpx.get(f"{pipeline.url}/v1/dlq", params={"stage": "etl"}, timeout=10).json()["items"]
    expected = Counter(reason for _, reason in ENTRIES if reason)
    assert Counter(letter["reason"] for letter in letters) == expected
    non_utf8 = next(letter for letter in letters if letter["reason"] == "bad_encoding")
    assert non_utf8["payload_encoding"] == "base64"  # the bytes as received, kept

    # One alert per reason reaches the webhook (a new reason alerts at once; repeats would be grouped).
    wait_for(lambda: len(receiver.received) >= len(expected), timeout_s=30, what="one alert per reason")
    alerted = Counter(
        alert["details"]["reason"] for alert in receiver.received if alert["kind"] == "dead_letter"
    )
    assert alerted == Counter(set(expected))

    # Replaying a still-bad payload keeps it, with its reason: the normalizer has not changed.
    no_text = next(letter for letter in letters if letter["reason"] == "missing_field:text")
    replayed = httpx.post(f"{pipeline.url}/v1/dlq/{no_text['id']}/replay", timeout=10)
    assert replayed.status_code == 200, replayed.text
    again = httpx.get(f"{pipeline.url}/v1/dlq/{no_text['id']}", timeout=10).json()
    assert again["reason"] == "missing_field:text"
    print(
        f"\nsent {len(ENTRIES)}, stored {len(stored)}, dead letters {len(letters)}, alerts {len(receiver.received)}"
    )
