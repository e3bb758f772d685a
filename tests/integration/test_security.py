"""Hostile clients against the real app on real engines: keys, sources, limits, odd bytes, and secrets kept out
of everything a client or an operator sees."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import pytest
import redis as sync_redis
import structlog
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import FIXED_NOW, fixed_clock
from trendflow.alerts import Alert, WebhookSink
from trendflow.api.app import create_app
from trendflow.api.auth import REFRESH_WAIT_S, KeyRing, sign_body
from trendflow.cli import app as cli_app
from trendflow.config import Settings, load_settings
from trendflow.db.api_keys import create_api_key, new_api_key, revoke_api_key
from trendflow.db.pool import connection
from trendflow.domain.enrich import Enricher
from trendflow.domain.normalize import Limits
from trendflow.domain.retry import Backoff
from trendflow.errors import ConfigError
from trendflow.runtime import Endpoints, open_runtime
from trendflow.streams import names
from trendflow.streams.consumer import ensure_group, read_new
from trendflow.workers.etl import EtlWorker

ADMIN = "admin-key-0123456789"
WEB_ONLY = "web-key-0123456789"
KEYS = f"{ADMIN},{WEB_ONLY}:Web Site|mobile"
WHEN = "2026-03-01T10:00:00Z"


def event(
    external_id: object = 1, source: str = "web-site", text: str = "hello #World", **extra: Any
) -> dict:
    return {"external_id": external_id, "source": source, "text": text, "timestamp": WHEN, **extra}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def configured(settings: Settings, **changes: Any) -> Settings:
    """The test's settings with API keys (and any other change) applied."""
    base: dict[str, Any] = {
        "data_dir": settings.data_dir,
        "database_url": settings.database_url,
        "redis_url": settings.redis_url,
        "TRENDFLOW_API_KEYS": KEYS,
    }
    return load_settings(**{**base, **changes})


@pytest.fixture
def serve(settings: Settings) -> Iterator[Any]:
    """serve(**setting changes) → a TestClient over the real app, lifespan and all."""
    clients: list[TestClient] = []

    def start(**changes: Any) -> TestClient:
        client = TestClient(create_app(configured(settings, **changes), clock=fixed_clock))
        clients.append(client.__enter__())
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def raw_count(settings: Settings) -> int:
    with sync_redis.Redis.from_url(settings.redis_url) as r:  # type: ignore[arg-type]
        return int(r.xlen(names.RAW_STREAM))


# -- who may call what --------------------------------------------------------------------------------------


def test_keyed_endpoints_refuse_a_missing_or_wrong_key_and_health_stays_open(serve: Any) -> None:
    client = serve()
    refused = [
        client.post("/v1/events", json=event()),
        client.post("/v1/events", json=event(), headers=bearer("not-a-key")),
        client.post("/v1/events", json=event(), headers=bearer(ADMIN + "x")),
        client.post("/v1/events", json=event(), headers={"Authorization": ADMIN}),  # no scheme
        client.post("/v1/events/batch", json=[event()], headers={"Authorization": f"Basic {ADMIN}"}),
        client.get("/v1/dlq"),
        client.post("/v1/dlq/replay", json={"dry_run": True}),
        client.get("/v1/ops/status", headers=bearer("")),
    ]
    for response in refused:
        assert response.status_code == 401, response.request.url
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/healthz", "/readyz", "/v1/trends", "/v1/topics/trending", "/metrics"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/ops/status", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/v1/dlq", headers=bearer(WEB_ONLY)).status_code == 200


def test_reads_and_metrics_want_a_key_when_configured_to(serve: Any) -> None:
    client = serve(read_requires_key=True, metrics_requires_key=True)
    for path in ("/v1/trends", "/v1/search?q=hello", "/v1/topics/trending", "/metrics"):
        assert client.get(path).status_code == 401, path
    assert client.get("/v1/trends", headers=bearer(WEB_ONLY)).status_code == 200
    assert client.get("/metrics", headers=bearer(ADMIN)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_a_key_bound_to_sources_posts_only_as_them(serve: Any, settings: Settings) -> None:
    client = serve()
    # "Web  SITE " normalizes to "web-site", which the key is bound to (as "Web Site").
    ok = client.post("/v1/events", json=event(source="Web  SITE "), headers=bearer(WEB_ONLY))
    assert ok.status_code == 202 and ok.json()["source"] == "web-site"

    foreign = client.post("/v1/events", json=event(source="news"), headers=bearer(WEB_ONLY))
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "source_not_allowed"
    assert client.post("/v1/events", json=event(source="news"), headers=bearer(ADMIN)).status_code == 202
    assert raw_count(settings) == 2


def test_a_bound_key_batch_refuses_foreign_items_by_index(serve: Any, settings: Settings) -> None:
    client = serve()
    batch = [event(1, "mobile"), event(2, "news"), event(3, "web site"), event(4, "web-site-2")]
    response = client.post("/v1/events/batch", json=batch, headers=bearer(WEB_ONLY))

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"index": 1, "errors": [{"field": "source", "reason": "source_not_allowed"}]},
        {"index": 3, "errors": [{"field": "source", "reason": "source_not_allowed"}]},
    ]
    assert raw_count(settings) == 2
    only_foreign = client.post("/v1/events/batch", json=[event(5, "news")], headers=bearer(WEB_ONLY))
    assert only_foreign.status_code == 422


def test_keys_issued_by_the_cli_work_beside_the_environment_keys_until_revoked(
    serve: Any, settings: Settings
) -> None:
    env = {
        "TRENDFLOW_DATABASE_URL": settings.database_url,
        "TRENDFLOW_REDIS_URL": settings.redis_url,
        "TRENDFLOW_DATA_DIR": str(settings.data_dir),
    }
    runner = CliRunner()
    created = runner.invoke(
        cli_app, ["keys", "create", "--sources", "Partner A", "--name", "partner"], env=env
    )
    assert created.exit_code == 0, created.output
    [key] = [line for line in created.output.split() if line.startswith("tf_")]
    assert len(key) == 3 + 43  # the prefix and 32 random bytes, url-safe base64

    with psycopg.connect(settings.database_url) as conn:  # type: ignore[arg-type]
        rows = conn.execute("SELECT id::text, name, key_hash, sources FROM api_keys").fetchall()
    [(key_id, name, key_hash, sources)] = rows
    assert (name, sources) == ("partner", ["partner-a"])
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(rows)

    listed = runner.invoke(cli_app, ["keys", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [k["id"] for k in orjson.loads(listed.output)] == [key_id]
    assert key not in listed.output and key_hash not in listed.output

    client = serve(api_key_cache_s=0)
    assert client.post("/v1/events", json=event(source="partner a"), headers=bearer(key)).status_code == 202
    assert client.post("/v1/events", json=event(source="web"), headers=bearer(key)).status_code == 403
    assert client.post("/v1/events", json=event(source="web"), headers=bearer(ADMIN)).status_code == 202

    revoked = runner.invoke(cli_app, ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert client.post("/v1/events", json=event(source="partner a"), headers=bearer(key)).status_code == 401
    assert runner.invoke(cli_app, ["keys", "revoke", "not-a-uuid"], env=env).exit_code == 2


def test_stored_keys_alone_make_the_api_want_a_key(settings: Settings) -> None:
    key = new_api_key()

    async def store() -> None:
        endpoints = Endpoints(settings.database_url, settings.redis_url)  # type: ignore[arg-type]
        async with open_runtime(settings, endpoints) as rt, connection(rt.pool) as conn:
            await create_api_key(conn, key, name=None, sources=None, now=FIXED_NOW)

    asyncio.run(store())
    with TestClient(create_app(settings, clock=fixed_clock)) as client:  # no TRENDFLOW_API_KEYS
        assert client.post("/v1/events", json=event()).status_code == 401
        assert client.post("/v1/events", json=event(), headers=bearer(key)).status_code == 202


async def test_stored_keys_are_read_at_most_once_per_cache_period(runtime: Any) -> None:
    now = [100.0]
    keyring = KeyRing((), cache_s=5.0, monotonic=lambda: now[0])
    key = new_api_key()
    async with connection(runtime.pool) as conn:
        row = await create_api_key(conn, key, name="cached", sources=["web"], now=FIXED_NOW)
    assert await keyring.authenticate(key, runtime.pool) is not None
    async with connection(runtime.pool) as conn:
        await revoke_api_key(conn, row["id"], now=FIXED_NOW)

    now[0] += 4.9  # still cached: no query, the revoke is not seen yet
    principal = await keyring.authenticate(key, runtime.pool)
    assert principal is not None and principal.sources == frozenset({"web"})
    now[0] += 0.2
    assert await keyring.authenticate(key, runtime.pool) is None


async def test_a_stuck_database_does_not_stall_authentication(runtime: Any, database_url: str) -> None:
    now = [100.0]
    keyring = KeyRing((), cache_s=5.0, monotonic=lambda: now[0])
    key = new_api_key()
    async with connection(runtime.pool) as conn:
        await create_api_key(conn, key, name="stuck", sources=None, now=FIXED_NOW)
    assert await keyring.authenticate(key, runtime.pool) is not None

    with psycopg.connect(database_url) as blocker:  # holds the lock until the block ends
        blocker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        now[0] += 10  # the cache is stale: a refresh starts, and hangs on the lock
        started = time.monotonic()
        assert await keyring.authenticate(key, runtime.pool) is not None
        assert time.monotonic() - started < REFRESH_WAIT_S + 1
        started = time.monotonic()
        assert await keyring.authenticate(key, runtime.pool) is not None  # the refresh is in flight: no wait
        assert time.monotonic() - started < 0.5
    await keyring.aclose()


def test_a_body_signed_with_a_key_is_accepted_while_fresh_and_untouched(
    serve: Any, settings: Settings
) -> None:
    client = serve()
    body = orjson.dumps(event(source="web site"))
    now = int(FIXED_NOW.timestamp())

    def signed(signature: str) -> dict[str, str]:
        return {"X-Trendflow-Signature": signature, "content-type": "application/json"}

    good = client.post("/v1/events", content=body, headers=signed(sign_body(WEB_ONLY, body, timestamp=now)))
    assert good.status_code == 202, good.json()
    batch = orjson.dumps([event(2, "mobile")])
    assert (
        client.post(
            "/v1/events/batch", content=batch, headers=signed(sign_body(ADMIN, batch, timestamp=now - 299))
        )
    ).status_code == 202

    refused = {
        "tampered": client.post(
            "/v1/events",
            content=body.replace(b"hello", b"HELLO"),
            headers=signed(sign_body(WEB_ONLY, body, timestamp=now)),
        ),
        "stale": client.post(
            "/v1/events", content=body, headers=signed(sign_body(WEB_ONLY, body, timestamp=now - 301))
        ),
        "future": client.post(
            "/v1/events", content=body, headers=signed(sign_body(WEB_ONLY, body, timestamp=now + 301))
        ),
        "unknown key": client.post(
            "/v1/events", content=body, headers=signed(sign_body("guess", body, timestamp=now))
        ),
        "garbage": client.post("/v1/events", content=body, headers=signed("t=,v1=zz,t=1")),
        "not on operator endpoints": client.get(
            "/v1/dlq", headers=signed(sign_body(ADMIN, b"", timestamp=now))
        ),
    }
    assert {why: r.status_code for why, r in refused.items()} == dict.fromkeys(refused, 401)
    foreign = orjson.dumps(event(3, "news"))
    forbidden = client.post(
        "/v1/events", content=foreign, headers=signed(sign_body(WEB_ONLY, foreign, timestamp=now))
    )
    assert forbidden.status_code == 403
    assert raw_count(settings) == 2


# -- limits -------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_streamed(serve: Any) -> None:
    client = serve(max_body_bytes=1_000)
    big = orjson.dumps(event(text="x" * 2_000))

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 100):
            yield big[start : start + 100]

    declared = client.post("/v1/events", content=big, headers=bearer(ADMIN))
    streamed = client.post("/v1/events", content=chunks(), headers=bearer(ADMIN))
    assert "content-length" not in streamed.request.headers
    replay = client.post(  # a route whose body FastAPI itself parses
        "/v1/dlq/replay",
        content=(b'{"reason": "' + b"x" * 2_000 + b'"}' for _ in range(1)),
        headers=bearer(ADMIN),
    )
    for response in (declared, streamed, replay):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "body_too_large"
    small = orjson.dumps(event(text="x" * 500))
    assert client.post("/v1/events", content=small, headers=bearer(ADMIN)).status_code == 202


def test_a_batch_over_the_limit_is_413_batch_too_large(serve: Any, settings: Settings) -> None:
    client = serve(max_batch_events=3)
    as_array = client.post("/v1/events/batch", json=[event(i) for i in range(4)], headers=bearer(ADMIN))
    as_ndjson = client.post(
        "/v1/events/batch",
        content=b"\n".join(orjson.dumps(event(i)) for i in range(4)),
        headers={**bearer(ADMIN), "content-type": "application/x-ndjson"},
    )
    for response in (as_array, as_ndjson):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "batch_too_large"
    assert raw_count(settings) == 0
    assert (
        client.post("/v1/events/batch", json=[event(i) for i in range(3)], headers=bearer(ADMIN)).status_code
        == 202
    )


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deeply_nested_json_is_a_clear_422(serve: Any) -> None:
    client = serve()
    deep = b'{"a":' * 2_000 + b"1" + b"}" * 2_000
    body = (
        b'{"external_id": 1, "source": "web", "text": "t", "timestamp": "'
        + WHEN.encode()
        + b'", "metadata": '
    )
    single = client.post("/v1/events", content=body + deep + b"}", headers=bearer(ADMIN))
    assert single.status_code == 422
    assert single.json()["error"]["code"] == "json_too_deep"

    in_ndjson = client.post(
        "/v1/events/batch",
        content=orjson.dumps(event(1)) + b"\n" + body + deep + b"}",
        headers={**bearer(ADMIN), "content-type": "application/x-ndjson"},
    )
    assert in_ndjson.status_code == 202
    assert in_ndjson.json()["rejected"] == [
        {"index": 1, "errors": [{"field": "event", "reason": "json_too_deep"}]}
    ]

    as_array = client.post("/v1/events/batch", content=b"[" + body + deep + b"}]", headers=bearer(ADMIN))
    assert as_array.status_code == 422 and as_array.json()["error"]["code"] == "json_too_deep"

    within_orjson = client.post("/v1/events", json=event(metadata=nested(500)), headers=bearer(ADMIN))
    assert within_orjson.status_code == 422
    assert within_orjson.json()["error"]["code"] == "metadata_too_deep"


def test_a_key_past_its_rate_limit_gets_429_with_retry_after(serve: Any) -> None:
    client = serve(rate_limit_per_minute=2)
    answers = [client.get("/v1/ops/status", headers=bearer(ADMIN)).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    limited = client.post("/v1/events", json=event(), headers=bearer(ADMIN))
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["Retry-After"] == "60"  # FIXED_NOW is on the minute
    assert (
        client.post("/v1/events", json=event(), headers=bearer(WEB_ONLY)).status_code == 202
    )  # its own count
    assert client.get("/healthz").status_code == 200


# -- hostile strings ----------------------------------------------------------------------------------------

HOSTILE = ["'); DROP TABLE enriched_trends;--", '"}]', "\\u0000", "Robert'); --", "{{7*7}} ${7*7} %s %n"]


async def run_etl(settings: Settings) -> None:
    async with open_runtime(settings, Endpoints(settings.database_url, settings.redis_url)) as rt:  # type: ignore[arg-type]
        etl = EtlWorker(rt.pool, rt.redis, Enricher(), limits=Limits(), max_deliveries=5, clock=fixed_clock)
        await ensure_group(rt.redis, names.RAW_STREAM, names.ETL_GROUP)
        while entries := await read_new(
            rt.redis, names.RAW_STREAM, names.ETL_GROUP, "test", count=100, block_ms=10
        ):
            await etl.process_batch(entries)


def test_sql_and_json_breaking_strings_come_back_verbatim_after_the_etl(
    serve: Any, settings: Settings
) -> None:
    client = serve()
    posted = [
        event(
            f"{text}#{i}", "hostile", f"{text} #trend", metadata={text: text, "nested": [text, {"k": text}]}
        )
        for i, text in enumerate(HOSTILE)
    ]
    response = client.post("/v1/events/batch", json=posted, headers=bearer(ADMIN))
    assert response.status_code == 202 and response.json()["accepted"] == len(HOSTILE), response.json()

    asyncio.run(run_etl(settings))

    listed = client.get("/v1/trends", params={"source": "hostile", "limit": 50}).json()["items"]
    assert len(listed) == len(HOSTILE)
    for item in listed:
        trend = client.get(f"/v1/trends/{item['id']}").json()
        original = next(p for p in posted if p["external_id"] == trend["external_id"])
        assert trend["text"] == original["text"]
        assert trend["metadata"] == original["metadata"]
    with psycopg.connect(settings.database_url) as conn:  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM enriched_trends").fetchone() == (len(HOSTILE),)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (orjson.dumps(event(text="a\x00b")), "text", "bad_text"),
        (orjson.dumps(event(external_id="a\x00")), "external_id", "bad_external_id"),
        (
            orjson.dumps(event(metadata={"q": "\x00'); DROP TABLE enriched_trends;--"})),
            "metadata",
            "bad_metadata",
        ),
        (orjson.dumps(event(source='"}]')), "source", "bad_source"),
        (orjson.dumps(event(source="web'); DROP TABLE enriched_trends;--")), "source", "bad_source"),
        (orjson.dumps(event()).replace(b"hello", b"\\ud800hello"), "event", "bad_encoding"),
        (orjson.dumps(event()).replace(b"hello", b"\\udc00"), "event", "bad_encoding"),
        (orjson.dumps(event()).replace(b"hello", b"\xff\xfe"), "event", "bad_encoding"),
        (
            orjson.dumps(event()).replace(b"hello", b"\xed\xa0\x80"),
            "event",
            "bad_encoding",
        ),  # a surrogate in bytes
        (b'{"external_id": 1, "source": "web"', "event", "bad_json"),
        (b"\x00\x00\x00", "event", "bad_json"),
    ],
)
def test_unstorable_or_broken_input_is_a_clear_422(serve: Any, body: bytes, field: str, reason: str) -> None:
    client = serve()
    response = client.post("/v1/events", content=body, headers=bearer(ADMIN))
    assert response.status_code == 422
    assert {"field": field, "reason": reason} in response.json()["error"]["details"]


# -- secrets ------------------------------------------------------------------------------------------------


def test_a_database_password_or_an_api_key_is_never_in_a_settings_error() -> None:
    with pytest.raises(ConfigError) as bad_url:
        load_settings(database_url="mysql://trend:Pa55-w0rd-secret@db.internal/trends")
    assert "Pa55-w0rd-secret" not in str(bad_url.value)
    assert "TRENDFLOW_DATABASE_URL" in str(bad_url.value)

    with pytest.raises(ConfigError) as bad_keys:
        load_settings(TRENDFLOW_API_KEYS="sup3r-secret-key, :web")
    assert "sup3r-secret-key" not in str(bad_keys.value)
    assert "TRENDFLOW_API_KEYS" in str(bad_keys.value)


def test_failed_and_good_keys_never_reach_logs_errors_status_or_metrics(serve: Any) -> None:
    client = serve()
    near_miss = ADMIN[:-1] + "Z"
    with structlog.testing.capture_logs() as logs:
        answers = [
            client.post("/v1/events", json=event(), headers=bearer(near_miss)),
            client.get("/v1/dlq", headers=bearer(WEB_ONLY + "-typo")),
            client.post("/v1/events", json=event(source="news"), headers=bearer(WEB_ONLY)),
            client.post("/v1/events/batch", json=[event(source="news"), {"x": 1}], headers=bearer(WEB_ONLY)),
            client.get("/v1/ops/status", headers=bearer(ADMIN)),
            client.get("/metrics"),
        ]
    failures = [entry for entry in logs if entry["event"] == "auth_failed"]
    assert [entry["path"] for entry in failures] == ["/v1/events", "/v1/dlq"]
    seen = repr(logs) + "".join(r.text + repr(r.headers) for r in answers)
    for secret in (ADMIN, near_miss, WEB_ONLY):
        assert secret not in seen
        assert hashlib.sha256(secret.encode()).hexdigest()[:16] not in seen


def test_status_output_holds_no_key_password_or_webhook_secret(settings: Settings) -> None:
    webhook = "https://hooks.example.com/services/T000/B000/webhook-secret-token"
    env = {
        "TRENDFLOW_DATABASE_URL": settings.database_url,
        "TRENDFLOW_REDIS_URL": settings.redis_url,
        "TRENDFLOW_DATA_DIR": str(settings.data_dir),
        "TRENDFLOW_API_KEYS": KEYS,
        "TRENDFLOW_ALERT_WEBHOOK_URL": webhook,
    }
    for args in (["status"], ["status", "--json"]):
        result = CliRunner().invoke(cli_app, args, env=env)
        assert result.exit_code == 0, result.output
        for secret in (ADMIN, WEB_ONLY, "webhook-secret-token"):
            assert secret not in result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_failing_webhook_never_logs_its_url_secret() -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T000/B000/webhook-secret-token"
    sink = WebhookSink(url, attempts=1, backoff=Backoff(base=0.001, cap=0.001), timeout_s=1.0)
    alert = Alert("spooling", "ingest", "critical", "Redis unreachable", datetime(2026, 3, 1, tzinfo=UTC))
    with structlog.testing.capture_logs() as logs:
        sink.send(alert)
        await sink.drain()
        await sink.aclose()
    assert sink.failed == 1
    assert [entry["event"] for entry in logs] == ["alert_webhook_failed"]
    assert "webhook-secret-token" not in repr(logs)
