"""Who may call what: API keys from TRENDFLOW_API_KEYS and from the api_keys table, and the sources each may post as.

Keys are compared as SHA-256 hashes with hmac.compare_digest against every known key, so neither the time a
check takes nor the order of the keys says anything about a key. Keys stored in PostgreSQL are cached for
TRENDFLOW_API_KEY_CACHE_S seconds, so a request does not cost a query; a revoke takes effect within that time.

    principal = await keyring.authenticate("tf_…", pool)   # None: no such key
    principal.may_post_as("web")
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import structlog
from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from trendflow.api.errors import ApiError
from trendflow.api.limits import check_rate_limit
from trendflow.config import ApiKey, Settings
from trendflow.db.api_keys import active_api_keys, hash_api_key
from trendflow.db.pool import connection
from trendflow.domain.models import FieldError
from trendflow.domain.normalize import Limits, normalize_event
from trendflow.errors import TransientError
from trendflow.ingest import Received

log = structlog.get_logger()

SOURCE_NOT_ALLOWED = "source_not_allowed"
BEARER = "bearer"
SIGNATURE_HEADER = "x-trendflow-signature"
SIGNATURE_TOLERANCE_S = 300  # a signed request older or newer than this is refused: no replays
REFRESH_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated key: its hash (the rate-limit bucket), where it comes from, the sources it may post as."""

    key_hash: str
    origin: str  # "env" or the api_keys row id
    sources: frozenset[str] | None  # None: any source

    def may_post_as(self, source: str) -> bool:
        return self.sources is None or source in self.sources


def canonical_source(name: str) -> str:
    """A bound source written the way the normalizer writes an event's source (" Web  Site" → "web-site")."""
    return "-".join(name.split()).lower()


def principal_of(key_hash: str, origin: str, sources: Iterable[str] | None) -> Principal:
    bound = frozenset(canonical_source(s) for s in sources if s.strip()) if sources is not None else None
    return Principal(key_hash, origin, bound or None)


def match_key(presented: str, known: Sequence[Principal]) -> Principal | None:
    """The principal whose hash matches, comparing against every one of them whatever matches first."""
    presented_hash = hash_api_key(presented).encode()
    found = None
    for principal in known:
        if hmac.compare_digest(presented_hash, principal.key_hash.encode()):
            found = principal
    return found


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None when there is none or it is another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == BEARER and token else None


def sign_body(key: str, body: bytes, *, timestamp: int) -> str:
    """The X-Trendflow-Signature value a sender computes: the HMAC key is the SHA-256 hex of its API key.

    headers["X-Trendflow-Signature"] = sign_body("tf_…", body, timestamp=int(time.time()))
    """
    return f"t={timestamp},v1={signature_digest(hash_api_key(key), body, timestamp)}"


def signature_digest(key_hash: str, body: bytes, timestamp: int) -> str:
    return hmac.new(key_hash.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def match_signature(
    header: str, body: bytes, known: Sequence[Principal], *, now: datetime
) -> Principal | None:
    """The principal whose key signed `body` (`t=<unix>,v1=<hex>`), if `t` is within SIGNATURE_TOLERANCE_S of now."""
    fields = [part.strip().partition("=") for part in header.split(",")]
    stamps = [value for name, _, value in fields if name == "t"]
    digests = [value.encode() for name, _, value in fields if name == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not digests or len(stamps[0]) > 12:
        return None
    timestamp = int(stamps[0])
    if abs(now.timestamp() - timestamp) > SIGNATURE_TOLERANCE_S:
        return None
    found = None
    for principal in known:
        expected = signature_digest(principal.key_hash, body, timestamp).encode()
        for digest in digests:
            if hmac.compare_digest(expected, digest):
                found = principal
    return found


class KeyRing:
    """Every key the API accepts: those of the environment, and the active keys in PostgreSQL (cached).

    A request never waits on PostgreSQL for long: the request that finds the cache stale waits at most
    REFRESH_WAIT_S for the refresh, which then carries on in the background while every request uses the keys
    read last, so a frozen database does not stall ingest.
    """

    def __init__(
        self,
        env_keys: Sequence[ApiKey],
        *,
        cache_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env = [principal_of(hash_api_key(k.key), "env", k.sources) for k in env_keys]
        self.cache_s, self.monotonic = cache_s, monotonic
        self._stored: list[Principal] | None = None  # None: never read
        self._read_at = 0.0
        self._refresh: asyncio.Task[None] | None = None

    async def stored_keys(self, pool: AsyncConnectionPool) -> list[Principal]:
        """The active keys of the api_keys table, read again once the cache is older than cache_s."""
        if self._stored is None or self.monotonic() - self._read_at >= self.cache_s:
            refresh = self._refresh
            if refresh is None or refresh.done():
                refresh = self._refresh = asyncio.create_task(self._read(pool), name="api-keys-refresh")
                await asyncio.wait({refresh}, timeout=REFRESH_WAIT_S)
            elif self._stored is None:
                await asyncio.wait({refresh}, timeout=REFRESH_WAIT_S)
        if self._stored is None:
            if self.env:
                return []
            raise TransientError("cannot check API keys yet: PostgreSQL is unavailable")
        return self._stored

    async def _read(self, pool: AsyncConnectionPool) -> None:
        try:
            async with connection(pool) as conn:
                rows = await active_api_keys(conn)
        except TransientError as exc:
            # Stale keys beat no keys: a database outage must not lock every client out.
            log.warning("api_keys_not_refreshed", error=str(exc))
            return
        self._stored = [principal_of(key_hash, str(key_id), sources) for key_id, key_hash, sources in rows]
        self._read_at = self.monotonic()

    async def aclose(self) -> None:
        """Stop a refresh still in flight (the pool is about to close)."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh

    async def authenticate(self, presented: str | None, pool: AsyncConnectionPool) -> Principal | None:
        """The principal of a presented key; None when it matches no active key."""
        known = [*self.env, *await self.stored_keys(pool)]
        if presented is None:
            return None
        return match_key(presented, known)

    async def verify(
        self, signature: str, body: bytes, pool: AsyncConnectionPool, *, now: datetime
    ) -> Principal | None:
        """The principal whose key signed the body; None when no active key did, or the signature is stale."""
        return match_signature(signature, body, [*self.env, *await self.stored_keys(pool)], now=now)

    async def required(self, pool: AsyncConnectionPool) -> bool:
        """Keys are wanted as soon as one exists, in the environment or in the database."""
        return bool(self.env) or bool(await self.stored_keys(pool))


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Which endpoint groups want a key; writes and operator endpoints always do once keys exist."""

    read_requires_key: bool = False
    metrics_requires_key: bool = False
    rate_limit_per_minute: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(settings.read_requires_key, settings.metrics_requires_key, settings.rate_limit_per_minute)


async def authorize(request: Request, *, wanted: bool, signed: bool = False) -> Principal | None:
    """Check the request's key when `wanted` and keys exist; count it against its rate limit.

    With `signed`, a request without a bearer key may instead carry X-Trendflow-Signature over its body.
    """
    state = request.app.state
    keyring: KeyRing = state.keyring
    pool = state.runtime.pool
    if not wanted or not await keyring.required(pool):
        return None
    token = bearer_token(request.headers.get("authorization"))
    signature = request.headers.get(SIGNATURE_HEADER)
    if token is None and signature is not None and signed:
        principal = await keyring.verify(signature, await request.body(), pool, now=state.clock())
    else:
        principal = await keyring.authenticate(token, pool)
    if principal is None:
        client = request.client.host if request.client else None
        # The presented key is never logged, not even in part.
        log.warning("auth_failed", path=request.url.path, client=client)
        raise ApiError(
            401, "unauthorized",
            "this endpoint wants `Authorization: Bearer <API key>` with a valid key"
            + (", or a current X-Trendflow-Signature over the body" if signed else ""),
            headers={"WWW-Authenticate": 'Bearer realm="trendflow"'},
        )  # fmt: skip
    policy: AccessPolicy = state.access
    await check_rate_limit(
        state.runtime.redis, principal.key_hash, policy.rate_limit_per_minute, now=state.clock()
    )
    return principal


async def writer(request: Request) -> Principal | None:
    """Dead letters and operator endpoints."""
    return await authorize(request, wanted=True)


async def ingest_writer(request: Request) -> Principal | None:
    """The ingest endpoints: a bearer key, or a body signed with one."""
    return await authorize(request, wanted=True, signed=True)


async def reader(request: Request) -> Principal | None:
    """The read side: open unless TRENDFLOW_READ_REQUIRES_KEY."""
    return await authorize(request, wanted=request.app.state.access.read_requires_key)


async def metrics_reader(request: Request) -> Principal | None:
    """/metrics: open unless TRENDFLOW_METRICS_REQUIRES_KEY."""
    return await authorize(request, wanted=request.app.state.access.metrics_requires_key)


Writer = Annotated[Principal | None, Depends(ingest_writer)]


def restrict_sources(
    items: Sequence[Received], principal: Principal | None, *, now: datetime, limits: Limits
) -> list[Received]:
    """Turn each valid event whose normalized source the key may not post as into a `source_not_allowed` refusal.

    Events that fail normalization are left for ingest to refuse with their own reasons.
    """
    if principal is None or principal.sources is None:
        return list(items)
    restricted: list[Received] = []
    for parsed, received in items:
        if not isinstance(parsed, FieldError):
            event = normalize_event(parsed, now=now, limits=limits).event
            if event is not None and not principal.may_post_as(event.source):
                parsed = FieldError(
                    "source", SOURCE_NOT_ALLOWED, f"this API key may not post as {event.source!r}"
                )
        restricted.append((parsed, received))
    return restricted


def forbid_foreign_source(item: Received) -> None:
    """A single event refused by restrict_sources is a 403, not a 422: the event is fine, the key is not."""
    parsed = item[0]
    if isinstance(parsed, FieldError) and parsed.reason == SOURCE_NOT_ALLOWED:
        raise ApiError(
            403, SOURCE_NOT_ALLOWED, parsed.message, [{"field": "source", "reason": SOURCE_NOT_ALLOWED}]
        )
