"""The ETL stage: raw entries → normalized, enriched, upserted trends → embed jobs → ack.

The order is the contract: commit the trends, then publish their embed jobs, then ack. A crash anywhere leaves
the raw entries pending, and their redelivery changes nothing already stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as redis
import structlog
from psycopg_pool import AsyncConnectionPool

from trendflow import metrics
from trendflow.alerts import Alerter
from trendflow.clock import Clock, system_clock
from trendflow.db.dead_letters import DeadLetter, lost_entry, record_dead_letters
from trendflow.db.pool import connection
from trendflow.db.trends import StoredTrend, TrendRow, upsert_trends
from trendflow.domain.enrich import Enricher
from trendflow.domain.models import FieldError, describe_errors
from trendflow.domain.normalize import Limits, decode_stream_entry, encode_event, normalize_event
from trendflow.errors import PermanentError
from trendflow.streams import names
from trendflow.streams.backlog import trim_acknowledged
from trendflow.streams.consumer import Entry, ack, fields_as_bytes
from trendflow.streams.producer import publish_embed_jobs

log = structlog.get_logger()


@dataclass(slots=True)
class Triage:
    """A batch sorted into what can be stored and what becomes a dead letter; every entry gets an outcome."""

    rows: list[TrendRow] = field(default_factory=list)
    row_entry_ids: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


def raw_payload(entry: Entry) -> bytes:
    """The entry as received, for a dead letter: the event field, or every field when it is missing."""
    fields = entry.fields or {}
    payload = fields.get(names.EVENT_FIELD.encode())
    if payload is not None:
        return payload
    return fields_as_bytes(entry)


def accepted_at(entry: Entry) -> datetime | None:
    value = (entry.fields or {}).get(names.ACCEPTED_AT_FIELD.encode())
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None
    except (ValueError, OverflowError):
        return None


def letter_for(entry: Entry, errors: Sequence[FieldError], *, error_class: str = "permanent") -> DeadLetter:
    return DeadLetter(
        stage="etl",
        reason=errors[0].reason,
        message=describe_errors(errors),
        payload=raw_payload(entry),
        error_class=error_class,
        deliveries=entry.deliveries,
        stream_id=entry.id,
    )


class EtlWorker:
    """process_batch() handles one batch end to end and is usable on its own, outside the loop."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        client: redis.Redis,
        enricher: Enricher,
        *,
        limits: Limits,
        max_deliveries: int,
        clock: Clock = system_clock,
        alerter: Alerter | None = None,
    ) -> None:
        self.alerter = alerter
        self.pool = pool
        self.redis = client
        self.enricher = enricher
        self.limits = limits
        self.max_deliveries = max_deliveries
        self.clock = clock

    def triage(self, entries: Sequence[Entry]) -> Triage:
        """Pure given the clock: decode, normalize and enrich each entry, or say why it cannot be."""
        now = self.clock()
        result = Triage()
        events, event_entries = [], []
        for entry in entries:
            if entry.fields is None:
                result.letters.append(lost_entry("etl", entry.id, entry.deliveries))
                continue
            if entry.deliveries > self.max_deliveries:
                error = FieldError("event", "max_deliveries_exceeded", f"delivered {entry.deliveries} times")
                result.letters.append(letter_for(entry, [error], error_class="transient"))
                continue
            raw = decode_stream_entry(entry.fields)
            if isinstance(raw, FieldError):
                result.letters.append(letter_for(entry, [raw]))
                continue
            normalized = normalize_event(raw, now=now, limits=self.limits)
            if normalized.event is None:
                result.letters.append(letter_for(entry, normalized.errors))
                continue
            events.append(normalized.event)
            event_entries.append(entry)
        for event, entry, found in zip(events, event_entries, self.enricher.enrich_many(events), strict=True):
            result.rows.append(TrendRow(event, found, accepted_at(entry)))
            result.row_entry_ids.append(entry.id)
        return result

    async def process_batch(self, entries: list[Entry]) -> int:
        started = time.perf_counter()
        await self._commit(entries, self.triage(entries))
        metrics.ETL_BATCH_SECONDS.observe(time.perf_counter() - started)
        return 0

    async def _commit(self, entries: list[Entry], triage: Triage) -> None:
        """Store, then publish the embed jobs, then ack: the order that makes a crash anywhere harmless."""
        started = time.perf_counter()
        stored = await self._store(triage)
        await publish_embed_jobs(self.redis, [t.id for t in stored if t.needs_embedding])
        await ack(self.redis, names.RAW_STREAM, names.ETL_GROUP, [e.id for e in entries])
        await trim_acknowledged(self.redis, names.RAW_STREAM, names.ETL_GROUP)
        elapsed = time.perf_counter() - started
        metrics.EVENTS_STORED.inc(len(stored))
        for letter in triage.letters:
            metrics.DEAD_LETTERS.labels(stage="etl", reason=letter.reason).inc()
        if self.alerter is not None and triage.letters:
            self.alerter.dead_letters("etl", [letter.reason for letter in triage.letters])
        log.info(
            "etl_batch",
            entries=len(entries),
            stored=len(stored),
            dead_letters=len(triage.letters),
            store_ms=round(elapsed * 1000, 1),
        )

    async def _store(self, triage: Triage) -> list[StoredTrend]:
        """One transaction for the batch; if the database refuses a row, isolate it so the others still land."""
        now = self.clock()
        try:
            async with connection(self.pool) as conn, conn.transaction():
                stored = await upsert_trends(conn, triage.rows)
                await record_dead_letters(conn, triage.letters, now)
            return stored
        except PermanentError:
            log.warning("etl_batch_rejected_isolating_rows", rows=len(triage.rows))
        stored = []
        for row, entry_id in zip(triage.rows, triage.row_entry_ids, strict=True):
            try:
                async with connection(self.pool) as conn, conn.transaction():
                    stored += await upsert_trends(conn, [row])
            except PermanentError as exc:
                payload = encode_event(row.event)
                triage.letters.append(
                    DeadLetter("etl", exc.reason, payload, message=str(exc), stream_id=entry_id,
                               source=row.event.source, external_id=row.event.external_id)
                )  # fmt: skip
        async with connection(self.pool) as conn, conn.transaction():
            await record_dead_letters(conn, triage.letters, now)
        return stored
