"""What one client can make the API do: body size, batch size, JSON depth and requests per key per minute.

Every limit is a setting and every refusal has its own code: `body_too_large` (413), `batch_too_large` (413),
`json_too_deep` (422), `rate_limited` (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import orjson
import redis.asyncio as redis
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trendflow.api.errors import ApiError, error_body
from trendflow.domain.models import FieldError
from trendflow.domain.normalize import BAD_ENCODING, BAD_JSON, EVENT_FIELD, parse_event_json
from trendflow.errors import TransientError
from trendflow.streams.client import redis_errors_as_transient

log = structlog.get_logger()

BODY_TOO_LARGE = "body_too_large"
BATCH_TOO_LARGE = "batch_too_large"
JSON_TOO_DEEP = "json_too_deep"
RATE_LIMITED = "rate_limited"
RATE_LIMIT_PREFIX = "trendflow:ratelimit:"
RATE_WINDOW_S = 60
RATE_LIMIT_BUDGET_S = (
    0.25  # a slow or absent Redis costs a request at most this much, then the limit is skipped
)
ORJSON_MAX_DEPTH = 1024  # orjson refuses deeper documents with "depth limit exceeded"


class BodyTooLarge(Exception):
    """Raised from `receive` once a body passes the limit, so that nothing reads the rest of it."""


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once from Content-Length, else while the chunks arrive.

    An app that catches the error while reading (FastAPI turns body errors into a 400) still answers 413:
    once the limit is passed, whatever the app sends is replaced.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            started = True
            await send(message)

        with contextlib.suppress(BodyTooLarge):
            await self.app(scope, counting_receive, guarded_send)
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            error_body(
                BODY_TOO_LARGE,
                f"the request body is larger than {self.max_bytes} bytes (TRENDFLOW_MAX_BODY_BYTES)",
            )
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parse_body_json(data: bytes) -> object | FieldError:
    """parse_event_json, with two kinds of `bad_json` named for what they are.

    JSON nested past orjson's limit is `json_too_deep`; an escaped surrogate without its pair (which no
    UTF-8 text can hold) is `bad_encoding`, as the same character sent raw would be.
    """
    parsed = parse_event_json(data)
    if not isinstance(parsed, FieldError) or parsed.reason != BAD_JSON:
        return parsed
    if "depth limit exceeded" in parsed.message:
        return FieldError(EVENT_FIELD, JSON_TOO_DEEP, f"the JSON nests deeper than {ORJSON_MAX_DEPTH} levels")
    if "surrogate" in parsed.message:
        return FieldError(
            EVENT_FIELD, BAD_ENCODING, "the event holds a lone surrogate escape, not valid Unicode"
        )
    return parsed


def check_batch_size(count: int, max_events: int) -> None:
    if count > max_events:
        raise ApiError(
            413, BATCH_TOO_LARGE,
            f"the batch holds {count} events; at most {max_events} are taken at once (TRENDFLOW_MAX_BATCH_EVENTS)",
        )  # fmt: skip


def rate_window(now: datetime) -> tuple[int, int]:
    """(the fixed one-minute window `now` falls in, seconds until the next one starts)."""
    seconds = int(now.timestamp())
    return seconds // RATE_WINDOW_S, RATE_WINDOW_S - seconds % RATE_WINDOW_S


async def check_rate_limit(client: redis.Redis, key_hash: str, per_minute: int, *, now: datetime) -> None:
    """Count one request against the key's minute; 429 past `per_minute`. Off when per_minute is 0.

    When Redis cannot answer within RATE_LIMIT_BUDGET_S the request goes through: ingest has its own fallback
    for a down Redis, and the limit must not turn an outage into refusals.
    """
    if per_minute <= 0:
        return
    window, retry_after = rate_window(now)
    counter = f"{RATE_LIMIT_PREFIX}{key_hash[:32]}:{window}"
    try:
        async with (
            asyncio.timeout(RATE_LIMIT_BUDGET_S),
            redis_errors_as_transient(),
            client.pipeline(transaction=True) as pipe,
        ):
            pipe.incr(counter)
            pipe.expire(counter, RATE_WINDOW_S * 2)
            count, _ = await pipe.execute()
    except (TransientError, TimeoutError) as exc:
        log.warning("rate_limit_skipped", error=str(exc) or "timeout")
        return
    if int(count) > per_minute:
        raise ApiError(
            429, RATE_LIMITED,
            f"this API key made more than {per_minute} requests this minute (TRENDFLOW_RATE_LIMIT_PER_MINUTE)",
            headers={"Retry-After": str(retry_after)},
        )  # fmt: skip
