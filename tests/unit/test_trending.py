"""The trending scorer and window arithmetic: pure, with fixed numbers and fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trendflow.domain.trending import (
    MIN_SUPPORT,
    TopicCounts,
    burst_score,
    ceil_to_bucket,
    floor_to_bucket,
    format_window,
    parse_window,
    plan_windows,
    rank_trending,
)

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_burst_outranks_a_steady_loud_topic_and_a_small_newcomer() -> None:
    ranked = rank_trending(
        [
            TopicCounts("football", 40, (40, 40, 40, 40, 40, 40)),
            TopicCounts("eclipse", 40, (2, 2, 2, 2, 2, 2)),
            TopicCounts("newcomer", 3, (0, 0, 0, 0, 0, 0)),
        ],
        limit=10,
    )
    assert [t.topic for t in ranked] == ["eclipse"]
    [eclipse] = ranked
    assert (eclipse.count, eclipse.baseline, eclipse.growth) == (40, 2.0, 20.0)


def test_a_newcomer_above_minimum_support_still_ranks_below_the_burst() -> None:
    ranked = rank_trending(
        [TopicCounts("eclipse", 40, (2,) * 6), TopicCounts("newcomer", 20, (0,) * 6)], limit=10
    )
    assert [t.topic for t in ranked] == ["eclipse", "newcomer"]
    assert ranked[1].growth is None  # nothing to compare with: "new", not infinity


def test_a_brand_new_topic_with_a_real_burst_beats_a_smaller_rise() -> None:
    ranked = rank_trending(
        [TopicCounts("eclipse", 40, (2,) * 6), TopicCounts("quake", 60, (0,) * 6)], limit=10
    )
    assert [t.topic for t in ranked] == ["quake", "eclipse"]


def test_a_loud_topic_with_a_mild_rise_ranks_below_a_burst() -> None:
    ranked = rank_trending(
        [TopicCounts("news", 12_000, (10_000,) * 6), TopicCounts("eclipse", 40, (2,) * 6)], limit=10
    )
    assert [t.topic for t in ranked] == ["eclipse", "news"]


def test_minimum_support_and_falling_topics_are_left_out() -> None:
    ranked = rank_trending(
        [
            TopicCounts("tiny", MIN_SUPPORT - 1, ()),
            TopicCounts("fading", 10, (30, 30)),
            TopicCounts("flat", 10, (10, 10)),
            TopicCounts("enough", MIN_SUPPORT, ()),
        ],
        limit=10,
    )
    assert [t.topic for t in ranked] == ["enough"]


def test_equal_scores_go_by_name_and_limit_cuts() -> None:
    same = [TopicCounts(name, 10, (1, 1)) for name in ("b", "a", "c")]
    ranked = rank_trending(same, limit=2)
    assert [t.topic for t in ranked] == ["a", "b"]


def test_baseline_is_the_mean_of_the_preceding_windows() -> None:
    assert TopicCounts("x", 9, (1, 2, 3, 6)).baseline == 3.0
    assert TopicCounts("x", 9, ()).baseline == 0.0


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.floats(0, 1))
def test_above_its_baseline_the_score_rises_with_the_count_and_falls_with_the_baseline(
    a: int, b: int, fraction: float
) -> None:
    low, high = sorted((a, b))
    baseline = low * fraction
    assert burst_score(low, baseline) <= burst_score(high, baseline)
    assert burst_score(high, baseline) >= burst_score(high, baseline + 1)


@given(st.integers(0, 10_000))
def test_a_topic_at_its_baseline_scores_zero(count: int) -> None:
    assert burst_score(count, float(count)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "length"),
    [("15m", timedelta(minutes=15)), ("1h", HOUR), ("6h", 6 * HOUR), ("24h", 24 * HOUR), ("2d", 48 * HOUR),
     (" 1H ", HOUR)],
)  # fmt: skip
def test_windows_parse(text: str, length: timedelta) -> None:
    assert parse_window(text) == length


@pytest.mark.parametrize("text", ["", "1", "h", "0m", "7m", "8d", "1.5h", "-1h", "1w"])
def test_bad_windows_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        parse_window(text)


def test_windows_format_back() -> None:
    assert [format_window(parse_window(w)) for w in ("15m", "1h", "6h", "24h", "90m")] == [
        "15m", "1h", "6h", "24h", "90m",
    ]  # fmt: skip


def test_buckets_are_five_minutes_aligned_to_the_clock() -> None:
    moment = datetime(2026, 3, 1, 11, 7, 30, tzinfo=UTC)
    assert floor_to_bucket(moment) == datetime(2026, 3, 1, 11, 5, tzinfo=UTC)
    assert ceil_to_bucket(moment) == datetime(2026, 3, 1, 11, 10, tzinfo=UTC)
    assert ceil_to_bucket(AT) == floor_to_bucket(AT) == AT


def test_the_window_ends_at_the_bucket_boundary_at_or_after_at() -> None:
    plan = plan_windows(HOUR, datetime(2026, 3, 1, 11, 58, tzinfo=UTC), data_start=AT - 48 * HOUR)
    assert (plan.start, plan.end) == (AT - HOUR, AT)
    assert plan.baseline_windows == 6
    assert plan.history_start == AT - 7 * HOUR


def test_windows_before_the_first_counted_bucket_are_left_out_of_the_baseline() -> None:
    assert plan_windows(HOUR, AT, data_start=AT - 3 * HOUR).baseline_windows == 2
    assert plan_windows(HOUR, AT, data_start=AT - 3 * HOUR + timedelta(minutes=5)).baseline_windows == 1
    assert plan_windows(HOUR, AT, data_start=AT - timedelta(minutes=5)).baseline_windows == 0
    assert plan_windows(HOUR, AT, data_start=None).baseline_windows == 0


def test_an_at_in_another_zone_is_read_as_the_same_instant() -> None:
    from zoneinfo import ZoneInfo

    plan = plan_windows(HOUR, AT.astimezone(ZoneInfo("America/New_York")), data_start=AT - 48 * HOUR)
    assert plan.end == AT and plan.end.tzinfo == UTC
    assert plan_windows(HOUR, AT.replace(tzinfo=None), data_start=None).end == AT  # naive means UTC
