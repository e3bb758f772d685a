"""A worker started while PostgreSQL is unreachable waits for it, on an injected clock."""

from __future__ import annotations

import random

import pytest

from trendflow.domain.retry import Backoff
from trendflow.errors import TransientError
from trendflow.runtime import Endpoints
from trendflow.workers.run import wait_for_database

ENDPOINTS = Endpoints("postgresql://db/trendflow", "redis://cache/0")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait(prepare, clock: Clock, wait_s: float = 60.0) -> Endpoints:  # type: ignore[no-untyped-def]
    backoff = Backoff(base=1.0, cap=4.0, rng=random.Random(8))
    return wait_for_database(
        prepare, wait_s=wait_s, backoff=backoff, monotonic=clock.monotonic, sleep=clock.sleep
    )


def test_the_worker_starts_once_the_database_answers() -> None:
    clock, tries = Clock(), []

    def prepare() -> Endpoints:
        tries.append(clock.now)
        if len(tries) < 4:
            raise TransientError("cannot migrate: PostgreSQL unreachable (OperationalError)")
        return ENDPOINTS

    assert wait(prepare, clock) == ENDPOINTS
    assert len(tries) == 4
    assert tries == sorted(tries) and tries[0] == 0.0 and tries[-1] > 0.0


def test_the_worker_gives_up_after_the_wait() -> None:
    clock, tries = Clock(), []

    def prepare() -> Endpoints:
        tries.append(clock.now)
        raise TransientError("cannot migrate: PostgreSQL unreachable (OperationalError)")

    with pytest.raises(TransientError):
        wait(prepare, clock, wait_s=30.0)
    assert 30.0 - 4.0 <= clock.now <= 30.0  # gave up when the next try would come after the deadline
    assert len(tries) > 5


def test_an_error_that_will_not_pass_is_not_retried() -> None:
    clock, tries = Clock(), []

    def prepare() -> Endpoints:
        tries.append(clock.now)
        raise ValueError("the schema is newer than this trendflow")

    with pytest.raises(ValueError):
        wait(prepare, clock)
    assert tries == [0.0]
