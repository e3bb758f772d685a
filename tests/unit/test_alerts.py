"""Alert grouping with the clock passed in: a new key alerts at once, a flood is one alert per interval."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trendflow.alerts import DEAD_LETTER, Alert, Alerter, AlertGrouper

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 60.0


def raised(key: str = "etl:bad_json", at: datetime = T0, count: int = 1) -> Alert:
    return Alert(DEAD_LETTER, key, "warning", f"dead letters: {key}", at, count)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class RecordingSink:
    """A real sink that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    async def aclose(self) -> None:
        return None


class BrokenSink:
    def send(self, alert: Alert) -> None:
        raise RuntimeError("this sink is broken")

    async def aclose(self) -> None:
        return None


def test_ten_thousand_alerts_of_one_key_are_one_now_and_one_grouped_after_the_interval() -> None:
    grouper = AlertGrouper(INTERVAL)

    sent = [a for n in range(10_000) if (a := grouper.offer(raised(at=at(n * 0.001)), at(n * 0.001)))]
    early = grouper.due(at(INTERVAL - 0.5))
    grouped = grouper.due(at(INTERVAL))

    assert [(a.count, a.first_seen) for a in sent] == [(1, T0)]
    assert early == []
    assert [(a.key, a.count, a.first_seen) for a in grouped] == [("etl:bad_json", 9_999, at(0.001))]
    assert grouper.due(at(2 * INTERVAL)) == []  # nothing new: nothing sent


def test_a_new_key_alerts_at_once_while_another_is_grouped() -> None:
    grouper = AlertGrouper(INTERVAL)

    first = grouper.offer(raised("etl:bad_json"), T0)
    repeat = grouper.offer(raised("etl:bad_json", at(1)), at(1))
    other = grouper.offer(raised("api:missing_field:text", at(2)), at(2))

    assert first is not None and first.count == 1
    assert repeat is None
    assert other is not None and (other.key, other.count) == ("api:missing_field:text", 1)


def test_the_same_key_under_another_kind_is_another_alert() -> None:
    grouper = AlertGrouper(INTERVAL)
    grouper.offer(raised("etl"), T0)

    assert grouper.offer(Alert("consumer_stalled", "etl", "warning", "stalled", T0), T0) is not None


def test_an_alert_after_the_interval_carries_the_count_held_back_until_then() -> None:
    grouper = AlertGrouper(INTERVAL)
    grouper.offer(raised(), T0)
    for n in range(1, 5):
        assert grouper.offer(raised(at=at(n)), at(n)) is None

    late = grouper.offer(raised(at=at(61)), at(61))

    assert late is not None and (late.count, late.first_seen) == (5, at(1))  # 4 held back + this one
    assert grouper.due(at(200)) == []


def test_a_key_quiet_for_an_interval_alerts_at_once_again() -> None:
    grouper = AlertGrouper(INTERVAL)
    grouper.offer(raised(), T0)
    assert grouper.due(at(INTERVAL)) == []  # quiet: forgotten

    again = grouper.offer(raised(at=at(90)), at(90))

    assert again is not None and again.count == 1


def test_a_batch_counts_as_many_occurrences() -> None:
    grouper = AlertGrouper(INTERVAL)

    first = grouper.offer(raised(count=500), T0)
    grouper.offer(raised(at=at(10), count=250), at(10))
    grouper.offer(raised(at=at(20), count=250), at(20))

    assert first is not None and first.count == 500
    assert [a.count for a in grouper.due(at(INTERVAL))] == [500]


def test_one_alert_per_key_per_interval_over_a_long_flood() -> None:
    grouper = AlertGrouper(INTERVAL)
    sent: list[Alert] = []
    for second in range(0, 600):  # ten minutes, one alert a second, due() checked every second
        offered = grouper.offer(raised(at=at(second)), at(second))
        sent += [offered] if offered else []
        sent += grouper.due(at(second + 0.5))

    assert len(sent) == 10
    assert sum(a.count for a in sent) + sum(a.count for a in grouper.due(at(10_000), force=True)) == 600


def test_force_sends_what_is_held_even_before_the_interval() -> None:
    grouper = AlertGrouper(INTERVAL)
    grouper.offer(raised(), T0)
    grouper.offer(raised(at=at(1)), at(1))

    assert [a.count for a in grouper.due(at(2), force=True)] == [1]
    assert grouper.due(at(3), force=True) == []


def test_alerter_groups_dead_letters_by_stage_and_reason() -> None:
    clock, sink = ManualClock(T0), RecordingSink()
    alerter = Alerter([sink], interval_s=INTERVAL, clock=clock)

    alerter.dead_letters("etl", ["bad_json"] * 3 + ["missing_field:text"])
    alerter.dead_letters("api", ["bad_json"])
    for _ in range(9_999):
        alerter.dead_letters("etl", ["bad_json"])
    assert alerter.flush() == 0
    clock.now = at(INTERVAL)
    assert alerter.flush() == 1

    assert [(a.key, a.count) for a in sink.sent] == [
        ("etl:bad_json", 3), ("etl:missing_field:text", 1), ("api:bad_json", 1), ("etl:bad_json", 9_999),
    ]  # fmt: skip
    assert sink.sent[0].details == {"stage": "etl", "reason": "bad_json"}
    assert sink.sent[0].to_json() == {
        "kind": "dead_letter", "key": "etl:bad_json", "severity": "warning",
        "summary": "payloads dead-lettered at stage etl: bad_json", "details": {"stage": "etl", "reason": "bad_json"},
        "first_seen": "2026-03-01T12:00:00+00:00", "count": 3,
    }  # fmt: skip


def test_a_broken_sink_never_reaches_the_caller_nor_the_other_sinks() -> None:
    sink = RecordingSink()
    alerter = Alerter([BrokenSink(), sink], interval_s=INTERVAL, clock=ManualClock(T0))

    alerter.alert("spool", "not_empty", summary="the spool holds events", severity="critical")

    assert [a.kind for a in sink.sent] == ["spool"]


async def test_closing_sends_what_is_still_grouped() -> None:
    sink = RecordingSink()
    alerter = Alerter([sink], interval_s=INTERVAL, clock=ManualClock(T0))
    alerter.dead_letters("etl", ["bad_json"])
    alerter.dead_letters("etl", ["bad_json", "bad_json"])

    await alerter.aclose()

    assert [a.count for a in sink.sent] == [1, 2]
