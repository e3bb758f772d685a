"""The alert webhook against a real HTTP receiver: one POST per key per interval, and failures stay contained."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trendflow.alerts import Alert, Alerter, WebhookSink
from trendflow.domain.retry import Backoff

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 60.0
QUICK = Backoff(base=0.01, cap=0.02)


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """A tiny webhook receiver on 127.0.0.1 that records every POST and answers with `status`."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.posts: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(json.loads(body))
                receiver.content_types.append(self.headers["Content-Type"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/alerts"  # nothing listens there once the probe is closed


async def test_a_flood_is_one_post_per_reason_per_interval(receiver: Receiver) -> None:
    clock = ManualClock(T0)
    sink = WebhookSink(receiver.url, backoff=QUICK)
    alerter = Alerter([sink], interval_s=INTERVAL, clock=clock, autoflush=False)

    for _ in range(10_000):
        alerter.dead_letters("etl", ["bad_json"])
    alerter.dead_letters("api", ["missing_field:text"] * 3)
    await sink.drain()
    immediate = [(p["details"]["reason"], p["count"]) for p in receiver.posts]

    clock.now = T0 + timedelta(seconds=INTERVAL - 1)
    alerter.flush()
    await sink.drain()
    assert len(receiver.posts) == 2  # still inside the interval: nothing more

    clock.now = T0 + timedelta(seconds=INTERVAL)
    alerter.flush()
    await sink.drain()
    clock.now = T0 + timedelta(seconds=3 * INTERVAL)
    alerter.flush()
    await alerter.aclose()

    assert immediate == [("bad_json", 1), ("missing_field:text", 3)]
    assert len(receiver.posts) == 3
    grouped = receiver.posts[2]
    assert grouped == {
        "kind": "dead_letter",
        "key": "etl:bad_json",
        "severity": "warning",
        "summary": "payloads dead-lettered at stage etl: bad_json",
        "details": {"stage": "etl", "reason": "bad_json"},
        "first_seen": T0.isoformat(),
        "count": 9_999,
    }
    assert set(receiver.content_types) == {"application/json"}
    assert (sink.delivered, sink.failed, sink.dropped) == (3, 0, 0)


async def test_a_receiver_answering_500_is_retried_then_given_up_without_raising() -> None:
    with Receiver(status=500) as failing:
        sink = WebhookSink(failing.url, attempts=3, backoff=QUICK)
        alerter = Alerter([sink], interval_s=INTERVAL, clock=ManualClock(T0), autoflush=False)

        alerter.dead_letters("etl", ["bad_json"])  # returns at once; delivery happens behind it
        await sink.drain()
        await alerter.aclose()

    assert len(failing.posts) == 3
    assert (sink.delivered, sink.failed) == (0, 1)


async def test_a_receiver_refusing_the_alert_is_not_asked_again() -> None:
    with Receiver(status=400) as refusing:
        sink = WebhookSink(refusing.url, attempts=3, backoff=QUICK)
        sink.send(Alert("spool", "not_empty", "critical", "the spool holds events", T0))
        await sink.drain()
        await sink.aclose()

    assert len(refusing.posts) == 1 and sink.failed == 1


async def test_a_closed_port_never_raises_into_the_caller() -> None:
    sink = WebhookSink(closed_port_url(), attempts=2, backoff=QUICK, timeout_s=1.0)
    alerter = Alerter([sink], interval_s=INTERVAL, clock=ManualClock(T0), autoflush=False)

    alerter.dead_letters("api", ["bad_json", "bad_encoding"])
    await sink.drain()
    await alerter.aclose()

    assert (sink.delivered, sink.failed, sink.dropped) == (0, 2, 0)


async def test_a_full_queue_drops_and_counts_instead_of_blocking(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url, queue_size=2, backoff=QUICK)

    for n in range(5):  # no await in between: the delivery task has not taken anything yet
        sink.send(Alert("dead_letter", f"etl:reason_{n}", "warning", "dead letters", T0))
    await sink.drain()
    await sink.aclose()

    assert sink.dropped == 3
    assert [p["key"] for p in receiver.posts] == ["etl:reason_0", "etl:reason_1"]


def test_without_an_event_loop_an_alert_is_dropped_not_raised(receiver: Receiver) -> None:
    sink = WebhookSink(receiver.url)

    sink.send(Alert("dead_letter", "etl:bad_json", "warning", "dead letters", T0))

    assert sink.dropped == 1 and receiver.posts == []
