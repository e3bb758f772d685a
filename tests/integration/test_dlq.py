"""Dead letters an operator can list, replay and purge: the service, the API and the CLI, on real engines."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import orjson
import psycopg
import pytest
import redis as sync_redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import FIXED_NOW, fixed_clock
from trendflow import dlq
from trendflow.api.app import create_app
from trendflow.cli import app as cli_app
from trendflow.clock import epoch_ms
from trendflow.config import Settings
from trendflow.db.dead_letters import DeadLetter, get_dead_letter, record_dead_letters
from trendflow.db.pool import connection
from trendflow.db.trends import TrendRow, upsert_trends
from trendflow.domain.enrich import Enricher, Enrichment
from trendflow.domain.normalize import Limits, normalize_event
from trendflow.errors import PermanentError
from trendflow.runtime import Runtime
from trendflow.streams import names
from trendflow.streams.consumer import ensure_group, read_new
from trendflow.workers.etl import EtlWorker

HOUR = timedelta(hours=1)
# A valid event, dead-lettered by an older normalizer (as if it has been fixed since).
NOW_VALID = (
    b'{"external_id": "e1", "source": "Web", "text": "hello #world", "timestamp": "2026-03-01T11:00:00Z"}'
)
STILL_BAD = b'{"external_id": "e2", "source": "web", "timestamp": "2026-03-01T11:00:00Z"}'
NOT_UTF8 = b"\xff\xfe\x00garbage"


def letter(payload: bytes, reason: str = "bad_timestamp", stage: str = "api", **extra: object) -> DeadLetter:
    return DeadLetter(stage=stage, reason=reason, payload=payload, message=f"old: {reason}", **extra)  # type: ignore[arg-type]


async def record(conn: psycopg.AsyncConnection, letters: Sequence[tuple[DeadLetter, datetime]]) -> list[UUID]:
    ids = []
    for one, at in letters:
        [(letter_id, _)] = await record_dead_letters(conn, [one], at)
        ids.append(letter_id)
    return ids


def seed(settings: Settings, letters: Sequence[tuple[DeadLetter, datetime]]) -> list[UUID]:
    """Record letters from a synchronous test (the API and CLI tests run outside the event loop)."""

    async def go() -> list[UUID]:
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:  # type: ignore[arg-type]
            return await record(conn, letters)

    return asyncio.run(go())


def raw_entries(settings: Settings, stream: str = names.RAW_STREAM) -> list[tuple[bytes, dict[bytes, bytes]]]:
    with sync_redis.Redis.from_url(settings.redis_url) as client:  # type: ignore[arg-type]
        return client.xrange(stream)


def remaining(settings: Settings) -> dict[str, tuple[str, str, str]]:
    """Every dead letter left: id -> (reason, error_class, message)."""
    with psycopg.connect(settings.database_url) as conn:  # type: ignore[arg-type]
        rows = conn.execute("SELECT id, reason, error_class, message FROM dead_letters").fetchall()
    return {str(r[0]): (r[1], r[2], r[3]) for r in rows}


# -- listing ------------------------------------------------------------------------------------------------


async def test_list_pages_newest_first_and_filters(runtime: Runtime) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    async with connection(runtime.pool) as conn:
        ids = await record(
            conn,
            [
                (letter(b"a1", "bad_json", "api"), t0),
                (letter(b"a2", "bad_json", "etl"), t0 + HOUR),
                (letter(b"a3", "missing_field:text", "etl"), t0 + 2 * HOUR),
                (letter(b"a4", "bad_json", "api"), t0 + 3 * HOUR),
                (letter(b"a5", "trend_not_found", "embed"), t0 + 4 * HOUR),
                (letter(b"a6", "bad_json", "etl"), t0 + 5 * HOUR),
                (letter(b"a7", "bad_json", "etl"), t0 + 5 * HOUR),  # same instant: the id breaks the tie
            ],
        )
        pages, cursor = [], None
        while True:
            rows, cursor = await dlq.list_dead_letters(conn, limit=3, cursor=cursor)
            pages.append([r["id"] for r in rows])
            if cursor is None:
                break
        by_stage, _ = await dlq.list_dead_letters(conn, stage="etl", limit=50)
        by_reason, _ = await dlq.list_dead_letters(conn, reason="bad_json", stage="api", limit=50)
        recent, _ = await dlq.list_dead_letters(conn, since=t0 + 3 * HOUR, limit=50)
        with pytest.raises(PermanentError):
            await dlq.list_dead_letters(conn, cursor="not-a-cursor", limit=3)

    assert [len(p) for p in pages] == [3, 3, 1]
    newest_first = sorted(ids[5:], reverse=True) + ids[4::-1]
    assert [i for page in pages for i in page] == newest_first
    assert {r["id"] for r in by_stage} == {ids[1], ids[2], ids[5], ids[6]}
    assert [r["id"] for r in by_reason] == [ids[3], ids[0]]
    assert {r["id"] for r in recent} == set(ids[3:])


async def test_a_payload_is_shown_as_text_or_as_base64(runtime: Runtime) -> None:
    async with connection(runtime.pool) as conn:
        text_id, binary_id = await record(
            conn, [(letter(NOW_VALID), FIXED_NOW), (letter(NOT_UTF8), FIXED_NOW)]
        )
        shown_text = dlq.dead_letter_json(await dlq.get(conn, text_id))
        shown_binary = dlq.dead_letter_json(await dlq.get(conn, binary_id))

    assert shown_text["payload"] == NOW_VALID.decode() and shown_text["payload_encoding"] == "utf-8"
    assert shown_binary["payload_encoding"] == "base64"
    assert base64.b64decode(shown_binary["payload"]) == NOT_UTF8
    assert shown_text["first_seen"] == FIXED_NOW.isoformat() and shown_text["occurrences"] == 1


# -- replay -------------------------------------------------------------------------------------------------


async def test_a_payload_that_now_passes_goes_back_byte_for_byte_and_its_letter_is_deleted(
    runtime: Runtime, settings: Settings
) -> None:
    async with connection(runtime.pool) as conn:
        [letter_id] = await record(conn, [(letter(NOW_VALID, stage="etl", deliveries=2), FIXED_NOW - HOUR)])
        result = await dlq.replay_dead_letter(conn, runtime.redis, letter_id, now=FIXED_NOW)
        assert await get_dead_letter(conn, letter_id) is None

    assert (result.outcome, result.previous_reason, result.reason) == ("replayed", "bad_timestamp", None)
    assert (result.source, result.external_id) == ("web", "e1")
    [(entry_id, fields)] = raw_entries(settings)
    assert entry_id.decode() == result.stream_id
    assert fields[b"event"] == NOW_VALID
    assert fields[b"accepted_at"] == str(epoch_ms(FIXED_NOW)).encode()

    # The ETL stores it under the identity the payload always had.
    etl = EtlWorker(
        runtime.pool, runtime.redis, Enricher(), limits=Limits(), max_deliveries=5, clock=fixed_clock
    )
    await ensure_group(runtime.redis, names.RAW_STREAM, names.ETL_GROUP)
    await etl.process_batch(
        await read_new(runtime.redis, names.RAW_STREAM, names.ETL_GROUP, "t", count=10, block_ms=10)
    )
    async with connection(runtime.pool) as conn:
        cur = await conn.execute("SELECT source, external_id, text FROM enriched_trends")
        assert await cur.fetchall() == [("web", "e1", "hello #world")]


async def test_a_payload_that_still_fails_stays_with_the_reason_it_fails_for_now(
    runtime: Runtime, settings: Settings
) -> None:
    seen = FIXED_NOW - HOUR
    stale = letter(STILL_BAD, "max_deliveries_exceeded", "etl", error_class="transient", deliveries=6)
    async with connection(runtime.pool) as conn:
        [letter_id] = await record(conn, [(stale, seen)])
        result = await dlq.replay_dead_letter(conn, runtime.redis, letter_id, now=FIXED_NOW)
        row = await dlq.get(conn, letter_id)

    assert (result.outcome, result.reason, result.previous_reason) == (
        "still_failing", "missing_field:text", "max_deliveries_exceeded",
    )  # fmt: skip
    assert (row["reason"], row["error_class"]) == ("missing_field:text", "permanent")
    assert "text: missing_field:text" in row["message"]
    assert (row["deliveries"], row["last_seen"], bytes(row["payload"])) == (6, seen, STILL_BAD)
    assert raw_entries(settings) == []


async def test_a_dry_run_reports_and_changes_nothing(runtime: Runtime, settings: Settings) -> None:
    async with connection(runtime.pool) as conn:
        good_id, bad_id = await record(conn, [(letter(NOW_VALID), FIXED_NOW), (letter(STILL_BAD), FIXED_NOW)])
        before = remaining(settings)
        good = await dlq.replay_dead_letter(conn, runtime.redis, good_id, dry_run=True, now=FIXED_NOW)
        many = await dlq.replay_many(conn, runtime.redis, dry_run=True, now=FIXED_NOW)

    assert (good.outcome, good.dry_run, good.stream_id) == ("replayed", True, None)
    assert {(str(r.id), r.outcome, r.reason) for r in many} == {
        (str(good_id), "replayed", None), (str(bad_id), "still_failing", "missing_field:text"),
    }  # fmt: skip
    assert remaining(settings) == before
    assert raw_entries(settings) == []


async def test_replay_by_reason_and_time_range_touches_only_those(
    runtime: Runtime, settings: Settings
) -> None:
    t0 = FIXED_NOW - 10 * HOUR

    def valid(n: int) -> bytes:
        return NOW_VALID.replace(b'"e1"', f'"e{n}"'.encode())

    async with connection(runtime.pool) as conn:
        ids = await record(
            conn,
            [
                (letter(valid(1), "bad_timestamp"), t0),
                (letter(valid(2), "bad_timestamp"), t0 + HOUR),
                (letter(valid(3), "bad_timestamp"), t0 + 2 * HOUR),
                (letter(valid(4), "bad_geo"), t0 + HOUR),
            ],
        )
        results = await dlq.replay_many(
            conn, runtime.redis, reason="bad_timestamp", since=t0 + HOUR, until=t0 + 2 * HOUR, now=FIXED_NOW
        )

    assert [(r.id, r.outcome) for r in results] == [(ids[1], "replayed")]
    assert set(remaining(settings)) == {str(ids[0]), str(ids[2]), str(ids[3])}
    assert [fields[b"event"] for _, fields in raw_entries(settings)] == [valid(2)]


async def test_a_bulk_replay_walks_through_many_batches_oldest_first(
    runtime: Runtime, settings: Settings
) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    payloads = [NOW_VALID.replace(b'"e1"', f'"e{n}"'.encode()) for n in range(7)] + [STILL_BAD]
    async with connection(runtime.pool) as conn:
        ids = await record(conn, [(letter(p), t0 + n * timedelta(minutes=1)) for n, p in enumerate(payloads)])
        results = await dlq.replay_many(conn, runtime.redis, now=FIXED_NOW, batch_size=3)

    assert [r.id for r in results] == ids
    assert [fields[b"event"] for _, fields in raw_entries(settings)] == payloads[:7]
    assert list(remaining(settings)) == [str(ids[7])]


async def test_a_payload_that_now_normalizes_to_another_identity_is_not_replayed(runtime: Runtime) -> None:
    moved = letter(NOW_VALID, "database_rejected", "etl", source="web", external_id="E1")
    async with connection(runtime.pool) as conn:
        [letter_id] = await record(conn, [(moved, FIXED_NOW)])
        result = await dlq.replay_dead_letter(conn, runtime.redis, letter_id, now=FIXED_NOW)

    assert (result.outcome, result.reason) == ("still_failing", dlq.IDENTITY_CHANGED)


async def test_an_embed_letter_republishes_its_job_only_when_the_trend_exists(
    runtime: Runtime, settings: Settings
) -> None:
    event = normalize_event(orjson.loads(NOW_VALID), now=FIXED_NOW).event
    assert event is not None
    enrichment = Enrichment(0.0, "neutral", (), None, None, 0.5, {})
    missing = uuid.uuid4()
    async with connection(runtime.pool) as conn:
        [stored] = await upsert_trends(conn, [TrendRow(event, enrichment)])
        found_id, missing_id, bad_id = await record(
            conn,
            [
                (
                    letter(str(stored.id).encode(), "trend_not_found", "embed", error_class="transient"),
                    FIXED_NOW,
                ),
                (
                    letter(str(missing).encode(), "trend_not_found", "embed", error_class="transient"),
                    FIXED_NOW,
                ),
                (letter(b"other=1", "bad_job", "embed"), FIXED_NOW),
            ],
        )
        results = {r.id: r for r in await dlq.replay_many(conn, runtime.redis, stage="embed", now=FIXED_NOW)}
        still_missing = await dlq.get(conn, missing_id)

    jobs = raw_entries(settings, names.EMBED_STREAM)
    assert [fields[b"trend_id"].decode() for _, fields in jobs] == [str(stored.id)]
    assert results[found_id].outcome == "replayed"
    assert (results[missing_id].reason, results[bad_id].reason) == ("trend_not_found", "bad_job")
    assert (still_missing["reason"], still_missing["error_class"]) == ("trend_not_found", "transient")


async def test_two_operators_replaying_one_letter_publish_it_once(
    runtime: Runtime, settings: Settings
) -> None:
    async with connection(runtime.pool) as conn:
        [letter_id] = await record(conn, [(letter(NOW_VALID), FIXED_NOW)])

    both_connected = asyncio.Barrier(2)  # so that the two replays overlap instead of running one by one

    async def replay() -> str:
        async with connection(runtime.pool) as conn:
            await both_connected.wait()
            try:
                return (await dlq.replay_dead_letter(conn, runtime.redis, letter_id, now=FIXED_NOW)).outcome
            except dlq.DeadLetterNotFound:
                return "gone"

    outcomes = await asyncio.gather(replay(), replay())

    assert sorted(outcomes) == ["gone", "replayed"]
    assert len(raw_entries(settings)) == 1


async def test_concurrent_bulk_replays_publish_each_letter_once(runtime: Runtime, settings: Settings) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    payloads = [NOW_VALID.replace(b'"e1"', f'"e{n}"'.encode()) for n in range(40)]
    async with connection(runtime.pool) as conn:
        await record(conn, [(letter(p), t0 + n * timedelta(seconds=1)) for n, p in enumerate(payloads)])

    both_connected = asyncio.Barrier(2)

    async def replay_all() -> list[dlq.ReplayResult]:
        async with connection(runtime.pool) as conn:
            await both_connected.wait()
            return await dlq.replay_many(conn, runtime.redis, now=FIXED_NOW, batch_size=4)

    first, second = await asyncio.gather(replay_all(), replay_all())

    assert len(first) + len(second) == 40
    assert sorted(fields[b"event"] for _, fields in raw_entries(settings)) == sorted(payloads)
    assert remaining(settings) == {}


async def test_replaying_an_unknown_letter_says_so(runtime: Runtime) -> None:
    async with connection(runtime.pool) as conn:
        with pytest.raises(dlq.DeadLetterNotFound):
            await dlq.replay_dead_letter(conn, runtime.redis, uuid.uuid4(), now=FIXED_NOW)


# -- purge --------------------------------------------------------------------------------------------------


async def test_purge_by_ids_reason_and_time(runtime: Runtime, settings: Settings) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    async with connection(runtime.pool) as conn:
        ids = await record(
            conn,
            [
                (letter(b"p1", "bad_json"), t0),
                (letter(b"p2", "bad_json"), t0 + 5 * HOUR),
                (letter(b"p3", "bad_geo"), t0 + HOUR),
                (letter(b"p4", "bad_geo"), t0 + 6 * HOUR),
                (letter(b"p5", "bad_text"), t0 + 7 * HOUR),
            ],
        )
        with pytest.raises(PermanentError):
            await dlq.purge(conn)
        counted = await dlq.purge(conn, reason="bad_json", dry_run=True)
        assert set(remaining(settings)) == {str(i) for i in ids}
        by_reason = await dlq.purge(conn, reason="bad_json")
        by_time = await dlq.purge(conn, before=t0 + 6 * HOUR)  # p3 only: p1 went with its reason
        by_id = await dlq.purge(conn, ids=[ids[4]])

    assert (counted, by_reason, by_time, by_id) == (2, 2, 1, 1)
    assert list(remaining(settings)) == [str(ids[3])]


# -- the API ------------------------------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=fixed_clock)) as test_client:
        yield test_client


def test_api_lists_with_filters_and_cursor(client: TestClient, settings: Settings) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    ids = seed(settings, [(letter(f"x{n}".encode(), "bad_json", "etl"), t0 + n * HOUR) for n in range(5)])
    seed(settings, [(letter(NOT_UTF8, "bad_encoding", "api"), t0)])

    first = client.get("/v1/dlq", params={"stage": "etl", "limit": 3}).json()
    second = client.get("/v1/dlq", params={"stage": "etl", "limit": 3, "cursor": first["next_cursor"]}).json()
    binary = client.get("/v1/dlq", params={"reason": "bad_encoding"}).json()["items"]
    recent = client.get("/v1/dlq", params={"since": (t0 + 3 * HOUR).isoformat()}).json()["items"]

    assert [i["id"] for i in first["items"] + second["items"]] == [str(i) for i in reversed(ids)]
    assert second["next_cursor"] is None
    item = first["items"][0]
    assert {k: item[k] for k in ("stage", "reason", "payload", "deliveries", "occurrences")} == {
        "stage": "etl", "reason": "bad_json", "payload": "x4", "deliveries": 1, "occurrences": 1,
    }  # fmt: skip
    assert {"error_class", "message", "source", "external_id", "first_seen", "last_seen"} <= set(item)
    assert binary[0]["payload_encoding"] == "base64" and base64.b64decode(binary[0]["payload"]) == NOT_UTF8
    assert [i["id"] for i in recent] == [str(ids[4]), str(ids[3])]
    assert client.get("/v1/dlq", params={"limit": 501}).status_code == 422
    assert client.get("/v1/dlq", params={"stage": "nope"}).status_code == 422


def test_api_shows_one_letter_or_a_404(client: TestClient, settings: Settings) -> None:
    [letter_id] = seed(settings, [(letter(NOW_VALID), FIXED_NOW)])

    shown = client.get(f"/v1/dlq/{letter_id}")
    unknown = client.get(f"/v1/dlq/{uuid.uuid4()}")

    assert shown.status_code == 200 and shown.json()["payload"] == NOW_VALID.decode()
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert client.post(f"/v1/dlq/{uuid.uuid4()}/replay").status_code == 404


def test_api_replays_one_letter_after_a_dry_run(client: TestClient, settings: Settings) -> None:
    [letter_id] = seed(settings, [(letter(NOW_VALID), FIXED_NOW - HOUR)])

    dry = client.post(f"/v1/dlq/{letter_id}/replay", params={"dry_run": "true"})
    assert dry.status_code == 200 and dry.json()["outcome"] == "replayed" and dry.json()["dry_run"] is True
    assert raw_entries(settings) == [] and str(letter_id) in remaining(settings)

    done = client.post(f"/v1/dlq/{letter_id}/replay")
    assert done.status_code == 200 and done.json()["outcome"] == "replayed"
    assert [fields[b"event"] for _, fields in raw_entries(settings)] == [NOW_VALID]
    assert remaining(settings) == {}
    assert client.get(f"/v1/dlq/{letter_id}").status_code == 404


def test_api_replays_by_reason_and_range(client: TestClient, settings: Settings) -> None:
    t0 = FIXED_NOW - 10 * HOUR
    good, bad, other = seed(
        settings,
        [
            (letter(NOW_VALID, "bad_timestamp"), t0 + HOUR),
            (letter(STILL_BAD, "bad_timestamp"), t0 + 2 * HOUR),
            (letter(NOW_VALID, "bad_timestamp", "etl"), t0 + 9 * HOUR),
        ],
    )
    body = {"reason": "bad_timestamp", "since": t0.isoformat(), "until": (t0 + 5 * HOUR).isoformat()}

    response = client.post("/v1/dlq/replay", json=body)

    assert response.status_code == 200
    result = response.json()
    assert (result["replayed"], result["still_failing"], result["dry_run"]) == (1, 1, False)
    assert {i["id"]: i["outcome"] for i in result["items"]} == {
        str(good): "replayed",
        str(bad): "still_failing",
    }
    assert set(remaining(settings)) == {str(bad), str(other)}
    assert remaining(settings)[str(bad)][0] == "missing_field:text"


# -- the CLI ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI configures structlog for the process, caching loggers bound to CliRunner's stderr, which closes
    after each call; in-process runs keep the test session's logging instead."""
    monkeypatch.setattr("trendflow.cli.configure_logging", lambda level: None)


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "TRENDFLOW_DATABASE_URL": settings.database_url,
        "TRENDFLOW_REDIS_URL": settings.redis_url,
        "TRENDFLOW_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }
    result = CliRunner().invoke(cli_app, list(args), env=env, terminal_width=200)
    return result.exit_code, result.output


def test_cli_lists_shows_replays_and_purges(settings: Settings) -> None:
    good, bad = seed(
        settings, [(letter(NOW_VALID), FIXED_NOW - HOUR), (letter(STILL_BAD, "bad_json"), FIXED_NOW)]
    )

    code, listed = run_cli(settings, "dlq", "list", "--json")
    assert code == 0, listed
    assert [i["id"] for i in json.loads(listed)["items"]] == [str(bad), str(good)]

    code, table = run_cli(settings, "dlq", "list", "--reason", "bad_json")
    assert code == 0 and str(bad) in table and str(good) not in table

    code, shown = run_cli(settings, "dlq", "show", str(good))
    assert code == 0 and json.loads(shown)["payload"] == NOW_VALID.decode()

    code, output = run_cli(settings, "dlq", "replay", "--dry-run")
    assert code == 0 and "1 would be replayed, 1 still failing (dry run" in output
    assert len(remaining(settings)) == 2 and raw_entries(settings) == []

    code, output = run_cli(settings, "dlq", "replay", str(good))
    assert code == 0 and "1 replayed, 0 still failing" in output
    assert [fields[b"event"] for _, fields in raw_entries(settings)] == [NOW_VALID]

    code, output = run_cli(settings, "dlq", "replay", str(bad))
    assert code == 1 and "missing_field:text" in output

    # Without --yes, and without a terminal to ask on, nothing is deleted.
    code, output = run_cli(settings, "dlq", "purge", "--reason", "missing_field:text")
    assert code == 1 and list(remaining(settings)) == [str(bad)]
    code, output = run_cli(settings, "dlq", "purge", "--reason", "missing_field:text", "--yes")
    assert code == 0 and "deleted 1 of 1" in output and remaining(settings) == {}


def test_cli_errors_are_clean_messages(settings: Settings) -> None:
    code, output = run_cli(settings, "dlq", "show", "not-an-id")
    assert code == 1 and "not a dead-letter id" in output and "Traceback" not in output

    code, output = run_cli(settings, "dlq", "show", str(uuid.uuid4()))
    assert code == 1 and "no dead letter with id" in output

    code, output = run_cli(settings, "dlq", "purge", "--yes")
    assert code == 1 and "say which dead letters to purge" in output

    code, output = run_cli(settings, "dlq", "list", "--since", "yesterday-ish")
    assert code == 1 and "not a time" in output
