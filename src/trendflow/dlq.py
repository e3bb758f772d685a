"""Dead letters for operators: list them, replay them through the current code, purge them.

The CLI (`trendflow dlq …`) and the API (`/v1/dlq`) both call these functions. A replay judges the stored
payload with the normalizer as it is now; a payload that passes goes back into the pipeline, byte for byte,
under the identity it carries, and its letter is deleted; one that still fails stays, with today's reason::

    async with connection(runtime.pool) as conn:
        result = await replay_dead_letter(conn, runtime.redis, letter_id, dry_run=True, now=clock())
        result.outcome  # "replayed" or "still_failing"; a dry run changes nothing

Replaying is safe to repeat: the ETL upserts by (source, external_id), so an event replayed twice is stored once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from uuid import UUID

import psycopg
import redis.asyncio as redis

from trendflow.clock import epoch_ms
from trendflow.config import Settings
from trendflow.db.dead_letters import (
    DeadLetterFilters,
    delete_dead_letters,
    existing_trend_ids,
    get_dead_letter,
    lock_dead_letter,
    mark_still_failing,
    payload_view,
    purge_dead_letters,
    select_dead_letters,
    select_dead_letters_to_replay,
)
from trendflow.db.pool import connection
from trendflow.db.trends import decode_cursor, encode_cursor
from trendflow.domain.models import FieldError, describe_errors
from trendflow.domain.normalize import Limits, normalize_event, parse_event_json
from trendflow.errors import PermanentError, TrendflowError
from trendflow.streams import names
from trendflow.streams.producer import publish_embed_jobs, publish_raw_events

T = TypeVar("T")
Outcome = Literal["replayed", "still_failing"]

STAGES = ("api", "etl", "embed")
IDENTITY_CHANGED = "identity_changed"
TREND_NOT_FOUND = "trend_not_found"
BAD_JOB = "bad_job"
REPLAY_BATCH = 500
_AGE = re.compile(r"(\d+)\s*([smhd])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class DeadLetterNotFound(TrendflowError):
    """No dead letter has this id (it may have been replayed or purged meanwhile)."""

    def __init__(self, letter_id: UUID) -> None:
        super().__init__(f"no dead letter with id {letter_id}")
        self.letter_id = letter_id


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the current code says of a stored payload: the identity it would go back under, or why it cannot."""

    errors: tuple[FieldError, ...] = ()
    source: str | None = None
    external_id: str | None = None
    trend_id: UUID | None = None  # embed letters: the trend whose job would be published again
    error_class: str = "permanent"

    @property
    def passes(self) -> bool:
        return not self.errors

    @property
    def reason(self) -> str | None:
        return self.errors[0].reason if self.errors else None

    @property
    def message(self) -> str:
        return describe_errors(self.errors)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What replaying one letter did (or, in a dry run, would do)."""

    id: UUID
    stage: str
    outcome: Outcome
    dry_run: bool
    previous_reason: str
    reason: str | None  # why it still fails; None when it passes
    message: str
    source: str | None
    external_id: str | None
    stream_id: str | None  # the new stream entry, when it was replayed for real

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "stage": self.stage,
            "outcome": self.outcome,
            "dry_run": self.dry_run,
            "previous_reason": self.previous_reason,
            "reason": self.reason,
            "message": self.message,
            "source": self.source,
            "external_id": self.external_id,
            "stream_id": self.stream_id,
        }


# -- pure judgement -----------------------------------------------------------------------------------------


def judge_event_payload(
    payload: bytes, *, source: str | None, external_id: str | None, now: datetime, limits: Limits
) -> Verdict:
    """Parse and normalize a raw event as ingest and ETL do now; a recorded identity must still be the same."""
    raw = parse_event_json(payload)
    if isinstance(raw, FieldError):
        return Verdict((raw,))
    normalized = normalize_event(raw, now=now, limits=limits)
    if normalized.event is None:
        return Verdict(normalized.errors)
    event = normalized.event
    if (
        source is not None
        and external_id is not None
        and (event.source, event.external_id) != (source, external_id)
    ):
        # Publishing it would store a second event beside the original instead of the original itself.
        changed = FieldError(
            "event", IDENTITY_CHANGED,
            f"now normalizes to ({event.source}, {event.external_id}), not ({source}, {external_id})",
        )  # fmt: skip
        return Verdict((changed,), event.source, event.external_id)
    return Verdict((), event.source, event.external_id)


def judge_embed_payload(payload: bytes) -> Verdict:
    """An embed letter holds a trend id: as text, or as the `trend_id=` line of a malformed job's fields."""
    text = payload.decode("utf-8", errors="replace").strip()
    candidates = [text] + [
        line.partition("=")[2] for line in text.splitlines() if line.startswith(names.TREND_ID_FIELD + "=")
    ]
    for candidate in candidates:
        try:
            return Verdict(trend_id=UUID(candidate.strip()))
        except ValueError:
            continue
    return Verdict((FieldError(names.TREND_ID_FIELD, BAD_JOB, "the letter holds no valid trend id"),))


def judge(letter: dict[str, Any], *, now: datetime, limits: Limits) -> Verdict:
    payload = bytes(letter["payload"])
    if letter["stage"] == "embed":
        return judge_embed_payload(payload)
    return judge_event_payload(
        payload, source=letter["source"], external_id=letter["external_id"], now=now, limits=limits
    )


def parse_moment(text: str, *, now: datetime) -> datetime:
    """An operator's time: ISO 8601 (naive means UTC) or an age before now such as `90s`, `15m`, `2h`, `7d`."""
    value = text.strip()
    age = _AGE.fullmatch(value)
    if age:
        return now - timedelta(**{_AGE_UNITS[age[2]]: int(age[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PermanentError(
            "bad_time", f"{text!r} is not a time: use ISO 8601 (2026-03-01T12:00:00Z) or an age (30m, 2h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """Naive times given by operators mean UTC, as everywhere in trendflow."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def check_stage(stage: str | None) -> str | None:
    if stage is not None and stage not in STAGES:
        raise PermanentError("bad_stage", f"{stage!r} is not a stage: use one of {', '.join(STAGES)}")
    return stage


def parse_letter_id(text: str) -> UUID:
    try:
        return UUID(text.strip())
    except ValueError:
        raise PermanentError(
            "bad_id", f"{text!r} is not a dead-letter id (a UUID, as `dlq list` shows)"
        ) from None


def dead_letter_json(row: dict[str, Any]) -> dict[str, Any]:
    """A letter as the API and `--json` show it; the payload as UTF-8 text, or base64 when it is not."""
    return {
        "id": str(row["id"]),
        "stage": row["stage"],
        "reason": row["reason"],
        "error_class": row["error_class"],
        "message": row["message"],
        **payload_view(bytes(row["payload"])),
        "source": row["source"],
        "external_id": row["external_id"],
        "stream_id": row["stream_id"],
        "deliveries": row["deliveries"],
        "occurrences": row["occurrences"],
        "first_seen": row["first_seen"].isoformat(),
        "last_seen": row["last_seen"].isoformat(),
    }


# -- service ------------------------------------------------------------------------------------------------


async def list_dead_letters(
    conn: psycopg.AsyncConnection,
    *,
    stage: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Most recently seen first; the cursor is a keyset position, so paging never repeats or skips a letter."""
    before = decode_cursor(cursor) if cursor is not None else None
    filters = DeadLetterFilters(stage=check_stage(stage), reason=reason, since=as_utc(since))
    rows = await select_dead_letters(conn, filters, limit=limit + 1, before=before)
    next_cursor = (
        encode_cursor(rows[limit - 1]["last_seen"], rows[limit - 1]["id"]) if len(rows) > limit else None
    )
    return rows[:limit], next_cursor


async def get(conn: psycopg.AsyncConnection, letter_id: UUID) -> dict[str, Any]:
    row = await get_dead_letter(conn, letter_id)
    if row is None:
        raise DeadLetterNotFound(letter_id)
    return row


async def replay_dead_letter(
    conn: psycopg.AsyncConnection,
    client: redis.Redis,
    letter_id: UUID,
    *,
    dry_run: bool = False,
    now: datetime,
    limits: Limits = Limits(),
) -> ReplayResult:
    """Replay one letter; it stays locked meanwhile, so two operators replaying it publish it once."""
    async with conn.transaction():
        row = await (get_dead_letter(conn, letter_id) if dry_run else lock_dead_letter(conn, letter_id))
        if row is None:
            raise DeadLetterNotFound(letter_id)
        [result] = await _replay_rows(conn, client, [row], dry_run=dry_run, now=now, limits=limits)
    return result


async def replay_many(
    conn: psycopg.AsyncConnection,
    client: redis.Redis,
    *,
    reason: str | None = None,
    stage: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    now: datetime,
    limits: Limits = Limits(),
    batch_size: int = REPLAY_BATCH,
) -> list[ReplayResult]:
    """Replay every matching letter (since ≤ last_seen < until), oldest first, one transaction per batch.

    Letters recorded after the replay began are left alone, so a payload that fails again downstream is not
    replayed in a loop; letters another replay holds are skipped.
    """
    filters = DeadLetterFilters(
        stage=check_stage(stage), reason=reason, since=as_utc(since), until=as_utc(until), seen_by=now
    )
    results: list[ReplayResult] = []
    after: tuple[datetime, UUID] | None = None
    while True:
        async with conn.transaction():
            rows = await select_dead_letters_to_replay(
                conn, filters, limit=batch_size, after=after, lock=not dry_run
            )
            if rows:
                results += await _replay_rows(conn, client, rows, dry_run=dry_run, now=now, limits=limits)
        if len(rows) < batch_size:
            return results
        after = (rows[-1]["last_seen"], rows[-1]["id"])


async def purge(
    conn: psycopg.AsyncConnection,
    *,
    ids: Sequence[UUID] | None = None,
    reason: str | None = None,
    stage: str | None = None,
    before: datetime | None = None,
    dry_run: bool = False,
) -> int:
    """Delete the letters matching every criterion given (last_seen < before); returns how many.

    At least one criterion is required: emptying the whole table by accident is not a feature.
    """
    if not ids and reason is None and stage is None and before is None:
        raise PermanentError(
            "purge_needs_filter", "say which dead letters to purge: ids, a reason, a stage or a time"
        )
    filters = DeadLetterFilters(
        stage=check_stage(stage), reason=reason, until=as_utc(before), ids=list(ids) if ids else None
    )
    return await purge_dead_letters(conn, filters, dry_run=dry_run)


async def run_with_engines(
    settings: Settings, work: Callable[[psycopg.AsyncConnection, redis.Redis], Awaitable[T]]
) -> T:
    """For one-shot commands: open the engines, run `work` on one connection and the Redis client, close."""
    from trendflow.runtime import open_runtime  # the runtime imports the engines; the API never needs this

    async with open_runtime(settings, pool_size=1) as runtime, connection(runtime.pool) as conn:
        return await work(conn, runtime.redis)


async def _replay_rows(
    conn: psycopg.AsyncConnection,
    client: redis.Redis,
    rows: Sequence[dict[str, Any]],
    *,
    dry_run: bool,
    now: datetime,
    limits: Limits,
) -> list[ReplayResult]:
    """Judge each row, then (unless a dry run) publish what passes, delete its letters, re-label the rest."""
    verdicts = [judge(row, now=now, limits=limits) for row in rows]
    wanted = [v.trend_id for v in verdicts if v.trend_id is not None]
    found = await existing_trend_ids(conn, wanted) if wanted else set()
    verdicts = [_trend_must_exist(v, found) for v in verdicts]
    stream_ids: dict[UUID, str] = {}
    if not dry_run:
        events = [row for row, v in zip(rows, verdicts, strict=True) if v.passes and v.trend_id is None]
        jobs = [(row, v.trend_id) for row, v in zip(rows, verdicts, strict=True) if v.passes and v.trend_id]
        # Publish first, delete after, in the caller's transaction: a crash between the two leaves the letter,
        # and replaying it again is harmless because the pipeline's writes are idempotent.
        raw_ids = await publish_raw_events(
            client, [bytes(r["payload"]) for r in events], accepted_at_ms=epoch_ms(now)
        )
        job_ids = await publish_embed_jobs(client, [tid for _, tid in jobs if tid is not None])
        stream_ids = dict(
            zip([r["id"] for r in events] + [r["id"] for r, _ in jobs], raw_ids + job_ids, strict=True)
        )
        await delete_dead_letters(conn, list(stream_ids))
        for row, verdict in zip(rows, verdicts, strict=True):
            if not verdict.passes:
                await mark_still_failing(
                    conn, row["id"], reason=verdict.reason or "", message=verdict.message,
                    error_class=verdict.error_class,
                )  # fmt: skip
    return [
        ReplayResult(
            id=row["id"],
            stage=row["stage"],
            outcome="replayed" if verdict.passes else "still_failing",
            dry_run=dry_run,
            previous_reason=row["reason"],
            reason=verdict.reason,
            message=verdict.message,
            source=verdict.source or row["source"],
            external_id=verdict.external_id or row["external_id"],
            stream_id=stream_ids.get(row["id"]),
        )
        for row, verdict in zip(rows, verdicts, strict=True)
    ]


def _trend_must_exist(verdict: Verdict, found: set[UUID]) -> Verdict:
    if verdict.trend_id is None or verdict.trend_id in found:
        return verdict
    missing = FieldError(
        names.TREND_ID_FIELD, TREND_NOT_FOUND, f"trend {verdict.trend_id} is not in PostgreSQL"
    )
    return Verdict((missing,), trend_id=verdict.trend_id, error_class="transient")
