"""The fallback spool under real processes: concurrent writers, and writers or replayers killed mid-way."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from trendflow.spool import Spool, SpoolStatus

SRC = Path(__file__).resolve().parents[2] / "src"
FIXED_NOW = 1_733_300_000.0

WRITER = """
import json, sys
from pathlib import Path
from trendflow.spool import Spool

spool = Spool(Path(sys.argv[1]), clock=lambda: 1_733_300_000.0)
writer = sys.argv[2]
sys.stdin.read()  # the start gate: every writer starts when the test closes stdin
for n in range(300):
    text = "x" * (20_000 if n % 10 == 0 else n)  # some records span several pages
    spool.append([json.dumps({"writer": writer, "n": n, "text": text}).encode()])
"""

ENDLESS_WRITER = """
import json, sys
from pathlib import Path
from trendflow.spool import Spool

spool = Spool(Path(sys.argv[1]), clock=lambda: 1_733_300_000.0)
n = 0
while True:
    batch = [json.dumps({"n": n + i, "text": "y" * 20_000}).encode() for i in range(200)]
    spool.append(batch)
    n += len(batch)
    print(n, flush=True)
"""

REPLAYER = """
import asyncio, os, sys
from pathlib import Path
from trendflow.spool import Spool

spool = Spool(Path(sys.argv[1]), clock=lambda: 1_733_300_000.0)
sink = open(sys.argv[2], "ab")

async def publish(batch, accepted_at_ms):
    sink.write(b"".join(event + b"\\n" for event in batch))
    sink.flush()
    os.fsync(sink.fileno())
    print(len(batch), flush=True)

asyncio.run(spool.replay(publish, batch_size=100))
"""


def start(script: str, *args: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_after(process: subprocess.Popen[bytes], lines: int, *, growing: Path | None = None) -> None:
    """SIGKILL the process after it printed ``lines`` progress lines and, if given, once ``growing`` grows."""
    assert process.stdout is not None
    for _ in range(lines):
        assert process.stdout.readline(), process.stderr.read() if process.stderr else b""
    if growing is not None:
        size = growing.stat().st_size
        while growing.stat().st_size == size and process.poll() is None:
            pass  # the next append is being written: kill it mid-write
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


async def replay_all(spool: Spool, batch_size: int = 500) -> list[bytes]:
    published: list[bytes] = []

    async def publish(batch: list[bytes], accepted_at_ms: int) -> None:
        published.extend(batch)

    assert await spool.replay(publish, batch_size=batch_size) == len(published)
    return published


@pytest.mark.asyncio
async def test_three_concurrent_writers_leave_exactly_their_900_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl", clock=lambda: FIXED_NOW)
    writers = [start(WRITER, str(spool.path), name, stdin=subprocess.PIPE) for name in ("a", "b", "c")]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.close()
    for writer in writers:
        assert writer.stderr is not None
        stderr = writer.stderr.read()
        assert writer.wait(timeout=120) == 0, stderr.decode()

    report = spool.verify()
    assert report.ok, report.problems
    assert report.events == 900

    published = [json.loads(event) for event in await replay_all(spool)]
    for name in ("a", "b", "c"):
        mine = [event for event in published if event["writer"] == name]
        assert [event["n"] for event in mine] == list(range(300))
        assert all(event["text"] == "x" * (20_000 if event["n"] % 10 == 0 else event["n"]) for event in mine)


@pytest.mark.asyncio
async def test_appends_racing_a_replay_are_all_published_exactly_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl", clock=lambda: FIXED_NOW)
    writers = [start(WRITER, str(spool.path), name, stdin=subprocess.PIPE) for name in ("a", "b", "c")]
    for writer in writers:
        assert writer.stdin is not None
        writer.stdin.close()
    published: list[bytes] = []
    while any(writer.poll() is None for writer in writers):
        published += await replay_all(spool)  # retires the file again and again under the writers
    published += await replay_all(spool)
    assert [writer.returncode for writer in writers] == [0, 0, 0]

    events = [json.loads(event) for event in published]
    for name in ("a", "b", "c"):
        assert [event["n"] for event in events if event["writer"] == name] == list(range(300))
    assert spool.status() == SpoolStatus(events=0, bytes=0, torn=False)


def waits_for_lock(path: Path) -> bool:
    """Whether some process is blocked in flock on this file, as the kernel lists it in /proc/locks."""
    inode = f":{path.stat().st_ino} "
    return any("->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines())


@pytest.mark.asyncio
async def test_an_append_blocked_while_the_spool_is_retired_lands_in_the_new_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl", clock=lambda: FIXED_NOW)
    spool.append([b'{"replayed":"already"}'])
    with spool.path.open("rb") as retiring:
        fcntl.flock(retiring.fileno(), fcntl.LOCK_EX)  # what a replay holds while it retires the file
        appender = threading.Thread(target=spool.append, args=([b'{"late":"append"}'],))
        appender.start()
        while not waits_for_lock(spool.path):
            assert appender.is_alive()
        spool.path.unlink()  # the retirement: the fully replayed file goes away under the lock
    appender.join(timeout=30)

    assert await replay_all(spool) == [b'{"late":"append"}']


def encoded_record(folder: Path, event: bytes) -> bytes:
    """The bytes one record takes on disk, as a writer appends them."""
    scratch = Spool(folder / "scratch.jsonl", clock=lambda: FIXED_NOW)
    scratch.append([event])
    return scratch.path.read_bytes()


@pytest.mark.asyncio
async def test_a_replay_waits_for_a_record_being_written_instead_of_setting_it_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool" / "spool.jsonl", clock=lambda: FIXED_NOW)
    spool.append([b'{"n":1}'])
    record = encoded_record(tmp_path, b'{"n":2}')
    with spool.path.open("ab") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # a writer in the middle of its append
        writer.write(record[:20])
        writer.flush()
        replay = asyncio.create_task(replay_all(spool))
        while not waits_for_lock(spool.path):
            assert not replay.done()
            await asyncio.sleep(0)
        writer.write(record[20:])
        writer.flush()

    assert await replay == [b'{"n":1}', b'{"n":2}']
    assert spool.aside_files() == []


def test_status_waits_for_a_record_being_written_instead_of_calling_it_torn(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool" / "spool.jsonl", clock=lambda: FIXED_NOW)
    spool.append([b'{"n":1}'])
    record = encoded_record(tmp_path, b'{"n":2}')
    seen: list[SpoolStatus] = []
    with spool.path.open("ab") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        writer.write(record[:20])
        writer.flush()
        reader = threading.Thread(target=lambda: seen.append(spool.status()))
        reader.start()
        while not waits_for_lock(spool.path):
            assert reader.is_alive()
        writer.write(record[20:])
        writer.flush()
    reader.join(timeout=30)

    assert seen == [SpoolStatus(events=2, bytes=spool.path.stat().st_size, torn=False)]


@pytest.mark.asyncio
async def test_a_writer_killed_mid_append_leaves_at_most_one_torn_record(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl", clock=lambda: FIXED_NOW)
    writer = start(ENDLESS_WRITER, str(spool.path))
    kill_after(writer, lines=5, growing=spool.path)  # 1,000 events acknowledged, the 6th batch mid-write

    report = spool.verify()
    assert len(report.problems) <= 1
    assert all(problem.reason == "torn_record" for problem in report.problems)
    assert report.events >= 1_000

    published = await replay_all(spool)
    assert [json.loads(event)["n"] for event in published] == list(range(report.events))
    assert spool.status().events == 0
    assert len(spool.aside_files()) == len(report.problems)  # the torn tail is kept for the operator
    spool.append([b'{"after":"the crash"}'])
    assert await replay_all(spool) == [b'{"after":"the crash"}']


@pytest.mark.asyncio
async def test_a_replayer_killed_mid_way_republishes_at_most_one_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl", clock=lambda: FIXED_NOW)
    events = [json.dumps({"n": n}).encode() for n in range(5_000)]
    spool.append(events)
    sink = tmp_path / "published.jsonl"

    replayer = start(REPLAYER, str(spool.path), str(sink))
    kill_after(replayer, lines=10)
    cursor = len(events) - spool.status().events  # what the killed replayer made durable
    assert 900 <= cursor < len(events)  # the 10th batch was published; its cursor may not be saved yet

    child_output = sink.read_bytes()
    child_delivered = child_output[
        : child_output.rfind(b"\n") + 1
    ].splitlines()  # a half line is not delivered
    delivered = child_delivered + await replay_all(spool, batch_size=100)

    republished = len(delivered) - len(events)
    assert 0 <= republished <= 100
    assert delivered == events[: cursor + republished] + events[cursor:]
