"""Ingest: validate envelopes with the shared normalizer, publish what passes, record what does not.

The API and `trendflow import` both call ingest_events(). An accepted event is never lost: when Redis stays
unreachable past TRENDFLOW_INGEST_TIMEOUT_MS the events go to the fsync'd fallback spool instead, and the
answer is still "accepted" (status "spooled").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import redis.asyncio as redis
import structlog
from psycopg_pool import AsyncConnectionPool

from trendflow import metrics
from trendflow.alerts import SPOOLING, Alerter
from trendflow.clock import Clock, epoch_ms, system_clock
from trendflow.db.dead_letters import DeadLetter, record_dead_letters
from trendflow.db.pool import connection
from trendflow.domain.models import FieldError, describe_errors
from trendflow.domain.normalize import Limits, normalize_event
from trendflow.domain.retry import Backoff
from trendflow.errors import TransientError
from trendflow.spool import Spool
from trendflow.streams.producer import publish_raw_events

log = structlog.get_logger()


Received = tuple[object | FieldError, bytes]


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    errors: tuple[FieldError, ...]

    def to_json(self) -> dict:
        return {"index": self.index, "errors": [{"field": e.field, "reason": e.reason} for e in self.errors]}


@dataclass(slots=True)
class IngestOutcome:
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (source, external_id), in input order
    spooled: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(slots=True)
class Ingestor:
    pool: AsyncConnectionPool
    redis: redis.Redis
    spool: Spool
    limits: Limits
    publish_budget_s: float = 2.0
    clock: Clock = system_clock
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.05, cap=0.5))
    alerter: Alerter | None = None

    async def ingest_events(self, items: Sequence[Received]) -> IngestOutcome:
        """Each item is (the parsed event, or why it could not be parsed; the bytes as received)."""
        now = self.clock()
        outcome = IngestOutcome()
        accepted_payloads: list[bytes] = []
        letters: list[DeadLetter] = []
        for index, (parsed, received) in enumerate(items):
            if isinstance(parsed, FieldError):
                errors: tuple[FieldError, ...] = (parsed,)
            else:
                normalized = normalize_event(parsed, now=now, limits=self.limits)
                if normalized.event is not None:
                    outcome.accepted.append((normalized.event.source, normalized.event.external_id))
                    accepted_payloads.append(received)
                    continue
                errors = normalized.errors
            outcome.rejected.append(Rejection(index, errors))
            letters.append(api_dead_letter(received, errors))
            metrics.EVENTS_REJECTED.labels(reason=errors[0].reason).inc()
        if accepted_payloads:
            spooled = await self._publish_or_spool(accepted_payloads, epoch_ms(now))
            outcome.spooled = len(accepted_payloads) if spooled else 0
            counter = metrics.EVENTS_SPOOLED if spooled else metrics.EVENTS_ACCEPTED
            for source, _ in outcome.accepted:
                counter.labels(source=metrics.source_label(source)).inc()
        if letters:
            await self.record_rejections(letters)
        return outcome

    async def _publish_or_spool(self, payloads: list[bytes], accepted_at_ms: int) -> bool:
        """Publish with retries inside the budget; returns True when the events had to be spooled."""
        with metrics.INGEST_PUBLISH_SECONDS.time():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.publish_budget_s
            backoff = Backoff(base=self.backoff.base, cap=self.backoff.cap, rng=self.backoff.rng)
            while True:
                remaining = deadline - loop.time()
                try:
                    async with asyncio.timeout(max(remaining, 0.05)):
                        await publish_raw_events(self.redis, payloads, accepted_at_ms=accepted_at_ms)
                    return False
                except (TransientError, TimeoutError) as exc:
                    delay = backoff.next_delay()
                    if loop.time() + delay >= deadline:
                        log.warning("ingest_spooling", events=len(payloads), error=str(exc) or "timeout")
                        await asyncio.to_thread(self.spool.append, payloads, accepted_at_ms=accepted_at_ms)
                        if self.alerter is not None:
                            self.alerter.alert(
                                SPOOLING, "ingest", severity="critical", count=len(payloads),
                                summary="Redis unreachable at ingest: accepted events are going to the fallback spool",
                            )  # fmt: skip
                        return True
                    await asyncio.sleep(delay)

    async def record_rejections(self, letters: list[DeadLetter]) -> None:
        """Rejections are recorded for operators; a database outage must not turn a 422 into a 500."""
        try:
            async with connection(self.pool) as conn:
                await record_dead_letters(conn, letters, self.clock())
        except TransientError as exc:
            log.warning("api_dead_letters_not_recorded", count=len(letters), error=str(exc))
        for letter in letters:
            metrics.DEAD_LETTERS.labels(stage="api", reason=letter.reason).inc()
        if self.alerter is not None:
            self.alerter.dead_letters("api", [letter.reason for letter in letters])


def api_dead_letter(payload: bytes, errors: Sequence[FieldError]) -> DeadLetter:
    return DeadLetter(
        stage="api",
        reason=errors[0].reason,
        message=describe_errors(errors),
        payload=payload,
    )


def received_items(raws: Sequence[object]) -> list[Received]:
    """Items for ingest_events from already-parsed events (a JSON array, an import file)."""
    return [(raw, orjson.dumps(raw)) for raw in raws]
