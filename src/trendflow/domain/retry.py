"""Retry schedules: exponential backoff with full jitter, pure given the random draw."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays of base·2^n seconds, capped, each drawn uniformly in [delay/2, delay] so that workers spread out."""

    base: float = 0.1
    cap: float = 10.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return self.rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0
