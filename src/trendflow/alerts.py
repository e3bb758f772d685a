"""Alerts for operators: grouped so that a flood is one message per interval, sent without ever blocking.

A new (kind, key) alerts at once; while it keeps firing, the occurrences are counted and sent as one alert per
key per TRENDFLOW_ALERT_INTERVAL_S, carrying the count. Every alert is logged; with
TRENDFLOW_ALERT_WEBHOOK_URL set it is also POSTed there as JSON, from a background task with a bounded queue::

    alerter = Alerter.from_settings(settings)
    alerter.dead_letters("etl", ["bad_json", "bad_json", "missing_field:text"])  # returns at once, never raises
    ...
    await alerter.aclose()  # sends what is still grouped, then stops the sinks
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from trendflow.clock import Clock, system_clock
from trendflow.config import Settings
from trendflow.domain.retry import Backoff

log = structlog.get_logger()

DEAD_LETTER = "dead_letter"
SPOOLING = "spooling"  # the API could not reach Redis and is writing to the fallback spool
SPOOL_NOT_EMPTY = "spool_not_empty"
STALLED_CONSUMER = "stalled_consumer"
EMBEDDING_BACKLOG = "embedding_backlog"


@dataclass(frozen=True, slots=True)
class Alert:
    """One message to operators; `count` occurrences of (kind, key) since `first_seen`."""

    kind: str
    key: str
    severity: str  # info | warning | critical
    summary: str
    first_seen: datetime
    count: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "severity": self.severity,
            "summary": self.summary,
            "details": self.details,
            "first_seen": self.first_seen.isoformat(),
            "count": self.count,
        }


@dataclass(slots=True)
class _Window:
    sent_at: datetime
    pending: int = 0  # occurrences counted since sent_at, not yet sent
    pending_since: datetime | None = None
    latest: Alert | None = None


class AlertGrouper:
    """Pure: which alerts go out, given the time. One alert per (kind, key) per interval, carrying the count."""

    def __init__(self, interval_s: float) -> None:
        self.interval = timedelta(seconds=interval_s)
        self._windows: dict[tuple[str, str], _Window] = {}

    def offer(self, alert: Alert, now: datetime) -> Alert | None:
        """The alert to send now (a new key, or a key whose interval has passed), or None when it is counted."""
        key = (alert.kind, alert.key)
        window = self._windows.get(key)
        if window is None or now - window.sent_at >= self.interval:
            held = window.pending if window else 0
            first_seen = window.pending_since if window and window.pending_since else alert.first_seen
            self._windows[key] = _Window(sent_at=now)
            return replace(alert, count=alert.count + held, first_seen=first_seen)
        window.pending += alert.count
        window.pending_since = window.pending_since or alert.first_seen
        window.latest = alert
        return None

    def due(self, now: datetime, *, force: bool = False) -> list[Alert]:
        """Grouped alerts whose interval has passed (all of them with `force`); keys quiet for an interval are forgotten."""
        out = []
        for key, window in list(self._windows.items()):
            if not force and now - window.sent_at < self.interval:
                continue
            if window.pending and window.latest is not None:
                first_seen = window.pending_since or window.latest.first_seen
                out.append(replace(window.latest, count=window.pending, first_seen=first_seen))
                self._windows[key] = _Window(sent_at=now)
            elif not force:
                del self._windows[key]  # quiet for a whole interval: its next alert is news again
        return out


class AlertSink(Protocol):
    """Where alerts go. `send` must return at once and never raise: alerting never holds up the pipeline."""

    def send(self, alert: Alert) -> None: ...

    async def aclose(self) -> None: ...


class LogSink:
    """Every alert as one structured log line; always on."""

    def send(self, alert: Alert) -> None:
        method = log.error if alert.severity == "critical" else log.warning
        method("alert", **alert.to_json())

    async def aclose(self) -> None:
        return None


class WebhookSink:
    """POSTs each alert as JSON from a background task; retries with backoff, drops (and logs) when full."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 1000,
        attempts: int = 5,
        backoff: Backoff | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.where = webhook_origin(url)  # what logs may say: webhook URLs often carry a secret token
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.delivered = 0
        self.failed = 0  # given up after every attempt, or refused by the receiver (4xx)
        self.dropped = 0  # never attempted: the queue was full, no event loop, or the sink closed

    def send(self, alert: Alert) -> None:
        if self._closed:
            self._drop(alert, "sink_closed")
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drop(alert, "no_event_loop")
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._deliver_forever(), name="alert-webhook")
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._drop(alert, "queue_full")

    async def drain(self) -> None:
        """Wait until every queued alert was delivered or given up on."""
        await self._queue.join()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (for at most `timeout_s`), then stop."""
        self._closed = True
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._queue.qsize():
            log.warning("alerts_not_delivered_at_close", count=self._queue.qsize(), webhook=self.where)

    def _drop(self, alert: Alert, why: str) -> None:
        self.dropped += 1
        log.warning("alert_dropped", why=why, kind=alert.kind, key=alert.key, count=alert.count)

    async def _deliver_forever(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while True:
                alert = await self._queue.get()
                try:
                    await self._deliver(client, alert)
                except Exception as exc:  # a bug here must not kill delivery of the alerts behind it
                    self.failed += 1
                    log.error("alert_webhook_error", error=repr(exc), kind=alert.kind, key=alert.key)
                finally:
                    self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        body = orjson.dumps(alert.to_json())
        backoff = Backoff(base=self._backoff.base, cap=self._backoff.cap, rng=self._backoff.rng)
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await client.post(
                    self.url, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                error = f"{exc.__class__.__name__}: {exc}"
            else:
                if response.is_success:
                    self.delivered += 1
                    return
                error = f"HTTP {response.status_code}"
                if response.is_client_error and response.status_code not in (408, 429):
                    break  # the receiver refuses this alert; asking again will not change its mind
            if attempt < self.attempts:
                await asyncio.sleep(backoff.next_delay())
        self.failed += 1
        log.error("alert_webhook_failed", webhook=self.where, error=error, kind=alert.kind, key=alert.key)


def webhook_origin(url: str) -> str:
    """scheme://host[:port] of a webhook URL: its path and query often hold the secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


class Alerter:
    """Raise alerts from anywhere in the pipeline; grouping, logging and delivery happen behind this call."""

    def __init__(
        self,
        sinks: Sequence[AlertSink],
        *,
        interval_s: float = 60.0,
        clock: Clock = system_clock,
        autoflush: bool = True,
    ) -> None:
        self.sinks = list(sinks)
        self.clock = clock
        self.autoflush = autoflush
        self._grouper = AlertGrouper(interval_s)
        self._tick_s = min(1.0, interval_s / 10)
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = system_clock) -> Alerter:
        sinks: list[AlertSink] = [LogSink()]
        if settings.alert_webhook_url:
            sinks.append(WebhookSink(settings.alert_webhook_url))
        return cls(sinks, interval_s=settings.alert_interval_s, clock=clock)

    def alert(
        self,
        kind: str,
        key: str,
        *,
        summary: str,
        severity: str = "warning",
        details: dict[str, Any] | None = None,
        count: int = 1,
    ) -> None:
        """Raise `count` occurrences of (kind, key); sent now when the key is new, else grouped."""
        now = self.clock()
        alert = Alert(kind, key, severity, summary, now, count, details or {})
        ready = self._grouper.offer(alert, now)
        if ready is not None:
            self._send(ready)
        self._ensure_flusher()

    def dead_letters(self, stage: str, reasons: Sequence[str]) -> None:
        """Payloads were dead-lettered at `stage`, one reason code each: one alert per reason, keyed stage:reason."""
        for reason, count in Counter(reasons).items():
            self.alert(
                DEAD_LETTER, f"{stage}:{reason}", summary=f"payloads dead-lettered at stage {stage}: {reason}",
                details={"stage": stage, "reason": reason}, count=count,
            )  # fmt: skip

    def flush(self, *, force: bool = False) -> int:
        """Send the grouped alerts whose interval has passed (every one with `force`); returns how many."""
        ready = self._grouper.due(self.clock(), force=force)
        for alert in ready:
            self._send(alert)
        return len(ready)

    async def aclose(self) -> None:
        """Send what is still grouped, then close the sinks (a webhook gets a few seconds to deliver)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.flush(force=True)
        for sink in self.sinks:
            await sink.aclose()

    def _send(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:  # a sink's bug must never reach the caller, even when logging fails too
                with contextlib.suppress(Exception):
                    log.error("alert_sink_error", sink=type(sink).__name__, error=repr(exc))

    def _ensure_flusher(self) -> None:
        """Grouped alerts must go out even when nothing else is raised, so a task sends them when due."""
        if not self.autoflush or (self._flusher is not None and not self._flusher.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a one-shot command): flush() and aclose() still send the groups
        self._flusher = loop.create_task(self._flush_forever(), name="alert-flusher")

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self.flush()
            except Exception as exc:
                log.error("alert_flush_error", error=repr(exc))
