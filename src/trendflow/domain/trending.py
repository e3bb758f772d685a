"""What is trending: window arithmetic and burst scoring over per-window topic counts (pure, no I/O).

The database keeps exact counts per topic, source and 5-minute bucket of event time (`topic_volumes`); the
read side sums them into the current window and the windows of the same length before it, and this module
decides what stands out. The rules, and why, are in `specs/trending.md`.

    plan = plan_windows(parse_window("1h"), at=now, data_start=first_bucket)
    ranked = rank_trending([TopicCounts("eclipse", 40, (2, 1, 3, 2, 2, 2))], limit=10)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

BUCKET = timedelta(minutes=5)
BUCKET_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # the origin the migration's date_bin() uses
MAX_WINDOW = timedelta(days=7)
BASELINE_WINDOWS = 6  # preceding windows averaged into the baseline
SMOOTHING = 5.0  # pseudo-events added to both sides of the growth ratio
MIN_SUPPORT = 5  # events a topic needs in the current window to be ranked at all

_WINDOW = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_window(text: str) -> timedelta:
    """`15m`, `1h`, `6h`, `24h`, `2d`…: a whole number of 5-minute buckets, at most 7 days; else ValueError."""
    match = _WINDOW.match(text.lower())
    if match is None:
        raise ValueError(f"window {text!r} is not a duration like 15m, 1h, 6h or 24h")
    window = int(match.group(1)) * _UNIT[match.group(2)]
    if window <= timedelta(0) or window % BUCKET or window > MAX_WINDOW:
        raise ValueError(f"window {text!r} must be a multiple of 5 minutes between 5m and 7d")
    return window


def format_window(window: timedelta) -> str:
    minutes = int(window.total_seconds()) // 60
    if minutes % 60:
        return f"{minutes}m"
    return f"{minutes // 60}h"


def floor_to_bucket(moment: datetime) -> datetime:
    return BUCKET_ORIGIN + ((moment - BUCKET_ORIGIN) // BUCKET) * BUCKET


def ceil_to_bucket(moment: datetime) -> datetime:
    floor = floor_to_bucket(moment)
    return floor if floor == moment else floor + BUCKET


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """The current window [start, end) and the preceding windows of the same length that form the baseline.

    Window k (0 = current) is [end - (k + 1) * window, end - k * window).
    """

    window: timedelta
    end: datetime
    baseline_windows: int

    @property
    def start(self) -> datetime:
        return self.end - self.window

    @property
    def history_start(self) -> datetime:
        return self.end - (self.baseline_windows + 1) * self.window


def plan_windows(
    window: timedelta, at: datetime, *, data_start: datetime | None, baseline_windows: int = BASELINE_WINDOWS
) -> WindowPlan:
    """Windows ending at the bucket boundary at or after `at` (naive means UTC), so an event just before counts.

    Preceding windows that begin before `data_start` (the first bucket ever counted) are left out of the
    baseline: nothing was being counted then, and their zeros would make every topic look like a burst.
    """
    end = ceil_to_bucket(at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC))
    usable = baseline_windows
    if data_start is None:
        usable = 0
    else:
        while usable and end - (usable + 1) * window < data_start:
            usable -= 1
    return WindowPlan(window, end, usable)


@dataclass(frozen=True, slots=True)
class TopicCounts:
    """A topic's events in the current window and in each preceding window, nearest first."""

    topic: str
    current: int
    previous: tuple[int, ...]

    @property
    def baseline(self) -> float:
        return sum(self.previous) / len(self.previous) if self.previous else 0.0


@dataclass(frozen=True, slots=True)
class TrendingTopic:
    topic: str
    count: int
    baseline: float
    growth: float | None  # count / baseline; None for a topic with no events in the baseline
    score: float


def burst_score(count: int, baseline: float, *, smoothing: float = SMOOTHING) -> float:
    """ln of the smoothed growth, weighted by ln(1 + count): relative rise, backed by volume.

    Smoothing keeps a handful of events over an empty baseline from looking infinitely surprising; the
    volume weight keeps a tiny topic's big ratio from beating a loud topic's real burst.
    """
    growth = (count + smoothing) / (baseline + smoothing)
    return math.log(growth) * math.log1p(count)


def rank_trending(
    counts: Iterable[TopicCounts],
    *,
    limit: int,
    min_support: int = MIN_SUPPORT,
    smoothing: float = SMOOTHING,
) -> list[TrendingTopic]:
    """Topics whose current window stands out against their baseline, best first.

    A topic needs `min_support` events in the window and a positive score (more than its baseline);
    ties go to the larger count, then to the topic name.
    """
    ranked = []
    for item in counts:
        if item.current < min_support:
            continue
        baseline = item.baseline
        score = burst_score(item.current, baseline, smoothing=smoothing)
        if score <= 0:
            continue
        growth = item.current / baseline if baseline > 0 else None
        ranked.append(TrendingTopic(item.topic, item.current, baseline, growth, score))
    ranked.sort(key=lambda t: (-t.score, -t.count, t.topic))
    return ranked[:limit]
