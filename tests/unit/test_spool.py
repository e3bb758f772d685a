"""The fallback spool: append, status, verify and replay on a real file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trendflow.spool import Spool, SpoolProblem, SpoolStatus

FIXED_NOW = 1_733_300_000.0  # 2024-12-04T08:13:20Z


def fixed_clock() -> float:
    return FIXED_NOW


def make_spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool" / "ingest-fallback.jsonl", clock=fixed_clock)


def event(n: int) -> bytes:
    return json.dumps(
        {"source": "test", "external_id": str(n), "text": f"event {n}", "timestamp": 0}
    ).encode()


class Collector:
    """A publish callback that keeps every batch it was given, and the accepted time it came with."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.accepted_at_ms: list[int] = []

    async def __call__(self, batch: list[bytes], accepted_at_ms: int) -> None:
        self.batches.append(batch)
        self.accepted_at_ms.append(accepted_at_ms)

    @property
    def events(self) -> list[bytes]:
        return [item for batch in self.batches for item in batch]


async def test_replay_publishes_events_with_the_time_they_were_accepted(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1), event(2)], accepted_at_ms=1_000)
    spool.append([event(3)], accepted_at_ms=2_000)
    spool.append([event(4)])  # no time given: the spool's own clock

    publish = Collector()
    assert await spool.replay(publish) == 4

    assert publish.batches == [[event(1), event(2)], [event(3)], [event(4)]]
    assert publish.accepted_at_ms == [1_000, 2_000, int(FIXED_NOW * 1000)]


def test_a_record_without_its_accepted_time_is_a_bad_record(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1)])
    record = json.loads(spool.path.read_text())
    del record["at"]
    spool.path.write_text(json.dumps(record) + "\n")
    assert [problem.reason for problem in spool.verify().problems] == ["bad_record"]


def write_raw(spool: Spool, data: bytes) -> None:
    with spool.path.open("ab") as out:
        out.write(data)


def half_record(spool_dir: Path) -> bytes:
    """The first half of a genuine record, as a writer killed mid-write leaves it."""
    scratch = Spool(spool_dir / "scratch.jsonl", clock=fixed_clock)
    scratch.append([event(999)])
    whole = scratch.path.read_bytes()
    return whole[: len(whole) // 2]


@pytest.mark.asyncio
async def test_round_trip_preserves_order_and_bytes_exactly(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    events = [
        '{"text":"café ☕ 東京 🚀","source":"x"}'.encode(),
        b'{"text":"she said \\"hi\\"","source":"x"}',
        b'{"text":"line one\\nline two\\r\\n\\ttab","source":"x"}',
        '{"text":"separators \u2028 \u2029 and nul \\u0000"}'.encode(),
        b"  not even json, but bytes all the same  ",
        b"{}",
    ]
    spool.append(events[:2])
    spool.append(events[2:])

    assert spool.status() == SpoolStatus(events=6, bytes=spool.path.stat().st_size, torn=False)
    assert spool.verify().ok
    assert spool.path.read_bytes().count(b"\n") == 6  # one line per record, newlines inside are escaped

    publish = Collector()
    assert await spool.replay(publish) == 6
    assert publish.events == events
    assert spool.status() == SpoolStatus(events=0, bytes=0, torn=False)
    assert not spool.path.exists()


def test_records_are_readable_json_lines_with_a_checksum_and_the_time(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([b'{"a":1}'])

    record = json.loads(spool.path.read_bytes())

    assert record["v"] == 1
    assert record["at"] == 1_733_300_000_000
    assert record["event"] == '{"a":1}'
    assert len(record["sha256"]) == 64


def test_an_event_that_is_not_utf8_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1)])

    with pytest.raises(ValueError, match="UTF-8"):
        spool.append([event(2), b"\xff\xfe broken"])

    assert spool.status().events == 1


@pytest.mark.asyncio
async def test_replay_in_batches_of_three_over_ten_events_publishes_four_times(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    events = [event(n) for n in range(10)]
    spool.append(events)

    publish = Collector()
    assert await spool.replay(publish, batch_size=3) == 10

    assert [len(batch) for batch in publish.batches] == [3, 3, 3, 1]
    assert publish.events == events


@pytest.mark.asyncio
async def test_a_failed_publish_leaves_exactly_the_unpublished_records(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    events = [event(n) for n in range(10)]
    spool.append(events)
    published: list[bytes] = []

    async def publish_then_fail(batch: list[bytes], accepted_at_ms: int) -> None:
        if published:
            raise ConnectionError("redis went away again")
        published.extend(batch)

    with pytest.raises(ConnectionError):
        await spool.replay(publish_then_fail, batch_size=3)

    reopened = make_spool(tmp_path)  # as a fresh process would see it
    assert reopened.status().events == 7
    publish = Collector()
    assert await reopened.replay(publish, batch_size=3) == 7
    assert published == events[:3]
    assert publish.events == events[3:]


@pytest.mark.asyncio
async def test_a_torn_tail_is_reported_never_published_and_kept_aside(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    events = [event(n) for n in range(3)]
    spool.append(events)
    intact_size = spool.path.stat().st_size
    torn = half_record(tmp_path)
    write_raw(spool, torn)

    assert spool.status() == SpoolStatus(events=3, bytes=intact_size + len(torn), torn=True)
    assert spool.verify().problems == (SpoolProblem(line=4, offset=intact_size, reason="torn_record"),)

    publish = Collector()
    assert await spool.replay(publish) == 3
    assert publish.events == events
    assert spool.status() == SpoolStatus(events=0, bytes=0, torn=False)
    [aside] = spool.aside_files()
    assert aside.name == "ingest-fallback.jsonl.torn-20241204T081320Z"
    assert aside.read_bytes() == torn + b"\n"


@pytest.mark.asyncio
async def test_appending_after_a_torn_tail_starts_a_new_line(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1)])
    write_raw(spool, half_record(tmp_path))

    spool.append([event(2), event(3)])

    report = spool.verify()
    assert report.events == 3
    assert [(problem.line, problem.reason) for problem in report.problems] == [(2, "torn_record")]
    assert spool.status().torn
    publish = Collector()
    assert await spool.replay(publish) == 3
    assert publish.events == [event(1), event(2), event(3)]


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (lambda line: line.replace(b"event 1", b"event 7"), "bad_checksum"),
        (lambda line: b"{garbage that is not json}\n", "bad_json"),
        (lambda line: b'{"v":2,"note":"a record from the future"}\n', "bad_record"),
    ],
    ids=["bad_checksum", "bad_json", "bad_record"],
)
@pytest.mark.asyncio
async def test_a_corrupt_middle_record_is_reported_and_the_rest_is_replayed(
    tmp_path: Path, corrupt: object, reason: str
) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(n) for n in range(3)])
    lines = spool.path.read_bytes().splitlines(keepends=True)
    assert callable(corrupt)
    bad_line = corrupt(lines[1])
    spool.path.write_bytes(lines[0] + bad_line + lines[2])

    assert spool.status() == SpoolStatus(events=2, bytes=spool.path.stat().st_size, torn=False)
    assert spool.verify().problems == (SpoolProblem(line=2, offset=len(lines[0]), reason=reason),)

    publish = Collector()
    assert await spool.replay(publish) == 2
    assert publish.events == [event(0), event(2)]
    [aside] = spool.aside_files()
    assert aside.name.startswith("ingest-fallback.jsonl.corrupt-")
    assert aside.read_bytes() == bad_line


@pytest.mark.asyncio
async def test_problems_keep_their_file_line_numbers_after_a_partial_replay(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(n) for n in range(6)])
    lines = spool.path.read_bytes().splitlines(keepends=True)
    lines[4] = lines[4].replace(b"event 4", b"event X")
    spool.path.write_bytes(b"".join(lines))

    async def fail_on_second_batch(batch: list[bytes], accepted_at_ms: int) -> None:
        if batch[0] != event(0):
            raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await spool.replay(fail_on_second_batch, batch_size=3)

    report = spool.verify()
    assert report.events == 2
    assert report.bytes == sum(len(line) for line in lines[3:])
    assert report.problems == (
        SpoolProblem(line=5, offset=sum(len(line) for line in lines[:4]), reason="bad_checksum"),
    )


@pytest.mark.asyncio
async def test_a_missing_or_empty_spool_is_zero(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    publish = Collector()

    assert spool.status() == SpoolStatus(events=0, bytes=0, torn=False)
    assert spool.verify().ok
    assert await spool.replay(publish) == 0

    spool.path.parent.mkdir(parents=True, exist_ok=True)
    spool.path.touch()
    assert spool.status() == SpoolStatus(events=0, bytes=0, torn=False)
    assert await spool.replay(publish) == 0
    assert publish.batches == []


@pytest.mark.asyncio
async def test_an_append_that_lands_during_replay_is_replayed_too(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1), event(2)])
    other_process = make_spool(tmp_path)
    published: list[bytes] = []

    async def publish(batch: list[bytes], accepted_at_ms: int) -> None:
        if not published:
            other_process.append([event(3)])
        published.extend(batch)

    assert await spool.replay(publish, batch_size=1) == 3
    assert published == [event(1), event(2), event(3)]
    assert spool.status().events == 0


@pytest.mark.asyncio
async def test_a_second_replay_while_one_runs_publishes_nothing(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(1), event(2)])
    inner_results: list[int] = []
    outer = Collector()

    async def publish(batch: list[bytes], accepted_at_ms: int) -> None:
        inner_results.append(await make_spool(tmp_path).replay(Collector()))
        await outer(batch, accepted_at_ms)

    assert await spool.replay(publish) == 2
    assert inner_results == [0]
    assert outer.events == [event(1), event(2)]


@pytest.mark.asyncio
async def test_a_retirement_cut_short_by_a_crash_does_not_skip_new_records(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    spool.append([event(n) for n in range(4)])
    await spool.replay(Collector(), batch_size=2)
    # A crash after the replayed spool was renamed aside, before its cursor was deleted:
    spool.append([event(n) for n in range(4)])
    first_line = spool.path.read_bytes().splitlines(keepends=True)[0]
    cursor = spool.path.with_name(spool.path.name + ".cursor")
    cursor.write_text(json.dumps({"offset": len(first_line), "line": 1}))
    spool.path.rename(spool.path.with_name(spool.path.name + ".retired"))
    spool.append([event(5), event(6)])  # same record sizes: the stale cursor would land on a line start

    assert spool.status().events == 2
    publish = Collector()
    assert await spool.replay(publish) == 2
    assert publish.events == [event(5), event(6)]
    assert [path.name for path in spool.path.parent.iterdir()] == ["ingest-fallback.jsonl.replay-lock"]


@pytest.mark.asyncio
async def test_replay_of_a_large_spool_holds_one_batch_at_a_time(tmp_path: Path) -> None:
    spool = make_spool(tmp_path)
    total = 200_000
    spool.append([b'{"n":%d}' % n for n in range(total)])
    sizes: list[int] = []
    expected_next = 0

    async def publish(batch: list[bytes], accepted_at_ms: int) -> None:
        nonlocal expected_next
        sizes.append(len(batch))
        assert batch[0] == b'{"n":%d}' % expected_next
        expected_next += len(batch)

    assert await spool.replay(publish, batch_size=500) == total

    assert max(sizes) == 500
    assert len(sizes) == total // 500
    assert expected_next == total
