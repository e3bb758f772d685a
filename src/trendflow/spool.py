"""The crash-safe fallback spool: where accepted events wait while Redis is unreachable.

The spool is a JSON Lines file, one record per event::

    {"v":1,"sha256":"<hex of the event bytes>","at":<ms>,"event":"<the event's JSON text>"}

``at`` is when the API accepted the event (Unix ms); replay publishes it as the entry's ``accepted_at``, so
time-to-searchable counts the time an event waited in the spool.

Writers (several API processes may share the file) append whole batches with ``O_APPEND`` under an
exclusive ``flock`` and fsync before returning. A writer that finds the file not ending in a newline
(a writer died mid-record) starts a new line, so a torn record never swallows the next one.

Replay progress lives beside the spool in ``<spool>.cursor`` (byte offset and line number replayed so
far), replaced atomically and fsync'd only after ``publish`` returned, so a crash republishes at most
the batch in flight. Only one replay runs at a time (``<spool>.replay-lock``). Once everything is
replayed, the spool is retired under its ``flock``: renamed to ``<spool>.retired``, then the cursor
and the retired file are deleted. A retired file left by a crash means "fully replayed"; its cursor
is stale and ignored. Appenders that opened the old file before it was retired notice that the path
no longer names it and reopen, so no concurrent append is lost. A second replay started while one runs
returns 0 at once.

An unfinished last line is only judged torn under the writers' lock (no writer is mid-write then).
A torn record stays a ``torn_record`` after a later append has closed its line. Events must be UTF-8
(they are JSON text); ``append`` refuses anything else before writing.

Invalid records are never published and never silently dropped. ``status`` and ``verify`` report
them; ``replay`` sets them aside, byte for byte, into ``<spool>.torn-<UTC time>`` (a torn record:
the process died mid-write) or ``<spool>.corrupt-<UTC time>`` (bad checksum, bad JSON, bad record
shape), logs a warning, and carries on with the records after them. An operator inspects those
files with ``aside_files()`` or ``ls``; nothing reads them again.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import itertools
import json
import logging
import operator
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

RECORD_VERSION = 1
TORN_RECORD = "torn_record"
BAD_JSON = "bad_json"
BAD_RECORD = "bad_record"
BAD_CHECKSUM = "bad_checksum"

_JSON = json.JSONDecoder()

# Called with events spooled at one moment, and that moment (ms): `accepted_at_ms` of their stream entries.
Publish = Callable[[list[bytes], int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What waits in the spool: valid records not yet replayed, their size, and whether one is torn."""

    events: int
    bytes: int
    torn: bool


@dataclass(frozen=True, slots=True)
class SpoolProblem:
    """One invalid record: its 1-based line number, byte offset and reason code."""

    line: int
    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Every record not yet replayed, checked."""

    events: int
    bytes: int
    problems: tuple[SpoolProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Cursor:
    """A position at a line boundary: the byte offset and how many lines lie before it."""

    offset: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class _Line:
    """One line read from the spool; ``event`` is None when the record is invalid."""

    start: _Cursor
    raw: bytes
    event: bytes | None
    reason: str | None
    at: int = 0

    @property
    def end(self) -> _Cursor:
        return _Cursor(self.start.offset + len(self.raw), self.start.line + 1)

    def problem(self) -> SpoolProblem:
        return SpoolProblem(line=self.start.line + 1, offset=self.start.offset, reason=self.reason or "")


@dataclass(frozen=True, slots=True)
class _Batch:
    events: list[tuple[bytes, int]]  # (event, accepted at)
    invalid: list[_Line]
    end: _Cursor


class Spool:
    """A crash-safe append-only spool file of event JSON bytes, replayed in order.

    Usage::

        spool = Spool(settings.spool_path)
        await asyncio.to_thread(spool.append, [event_json_bytes], accepted_at_ms=accepted_at_ms)
        published = await spool.replay(publish_events, batch_size=500)
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._cursor_path = path.with_name(path.name + ".cursor")
        self._retired_path = path.with_name(path.name + ".retired")
        self._replay_lock_path = path.with_name(path.name + ".replay-lock")

    def append(self, events: Sequence[bytes], *, accepted_at_ms: int | None = None) -> None:
        """Append one record per event and fsync before returning (blocking: run it in a thread).
        `accepted_at_ms` is when the events were accepted (Unix ms); the spool's clock when not given.

        Raises ValueError, writing nothing, when an event is not UTF-8 text.
        """
        if not events:
            return
        at = int(self._clock() * 1000) if accepted_at_ms is None else accepted_at_ms
        payload = b"".join(_encode_record(event, at) for event in events)
        _make_dirs(self.path.parent)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _names_file(self.path, fd):
                    continue  # a replay retired this file while we waited for the lock
                size = os.fstat(fd).st_size
                glue = b"\n" if size and os.pread(fd, 1, size - 1) != b"\n" else b""
                _write_all(fd, glue + payload)
                os.fsync(fd)
                if size == 0:
                    _fsync_dir(self.path.parent)  # the first writer makes the new file's name durable
                return
            finally:
                os.close(fd)

    def status(self) -> SpoolStatus:
        """Count the valid records not yet replayed and say whether a torn one was found."""
        report = self.verify()
        return SpoolStatus(
            events=report.events,
            bytes=report.bytes,
            torn=any(problem.reason == TORN_RECORD for problem in report.problems),
        )

    def verify(self) -> VerifyReport:
        """Check every record not yet replayed, streaming, and list the invalid ones."""
        try:
            spool = self.path.open("rb")
        except FileNotFoundError:
            return VerifyReport(events=0, bytes=0, problems=())
        with spool:
            start = self._load_cursor(spool)
            events = 0
            problems: list[SpoolProblem] = []
            for line in _read_lines_settled(spool, start):
                if line.event is not None:
                    events += 1
                elif line.reason is not None:
                    problems.append(line.problem())
            size = os.fstat(spool.fileno()).st_size
        return VerifyReport(events=events, bytes=size - start.offset, problems=tuple(problems))

    def aside_files(self) -> list[Path]:
        """The files replay has set invalid records aside into, oldest first."""
        folder, name = self.path.parent, self.path.name
        return sorted([*folder.glob(name + ".torn-*"), *folder.glob(name + ".corrupt-*")])

    async def replay(self, publish: Publish, *, batch_size: int = 500) -> int:
        """Publish every valid record in order, ``batch_size`` at a time, and return how many were published.

        Progress becomes durable after each ``publish`` returns; if ``publish`` raises, the exception
        propagates and the unpublished records stay. Returns 0 at once when another replay holds the spool.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        lock = await asyncio.to_thread(self._try_lock_replay)
        if lock is None:
            log.info("spool %s: another replay is running", self.path)
            return 0
        try:
            return await self._replay_locked(publish, batch_size)
        finally:
            os.close(lock)

    async def _replay_locked(self, publish: Publish, batch_size: int) -> int:
        await asyncio.to_thread(self._discard_retired)
        cursor = await asyncio.to_thread(self._read_cursor_for_replay)
        published = 0
        while True:
            batch = await asyncio.to_thread(self._read_batch, cursor, batch_size)
            if batch.end == cursor:
                if await asyncio.to_thread(self._retire_if_drained, cursor):
                    return published
                continue
            if batch.invalid:
                await asyncio.to_thread(self._set_aside, batch.invalid)
            # A run of records spooled at one moment (one request's events) is published with that moment.
            for at, run in itertools.groupby(batch.events, key=operator.itemgetter(1)):
                await publish([event for event, _ in run], at)
            published += len(batch.events)
            await asyncio.to_thread(self._save_cursor, batch.end)
            cursor = batch.end

    def _read_batch(self, cursor: _Cursor, batch_size: int) -> _Batch:
        """Read up to ``batch_size`` complete lines after the cursor (an unfinished last line is left)."""
        events: list[tuple[bytes, int]] = []
        invalid: list[_Line] = []
        end = cursor
        try:
            spool = self.path.open("rb")
        except FileNotFoundError:
            return _Batch(events, invalid, end)
        with spool:
            for count, line in enumerate(_read_lines(spool, cursor), start=1):
                if not line.raw.endswith(b"\n"):
                    break  # maybe still being written; _retire_if_drained decides under the lock
                if line.event is not None:
                    events.append((line.event, line.at))
                elif line.reason is not None:
                    invalid.append(line)
                end = line.end
                if count == batch_size:
                    break
        return _Batch(events, invalid, end)

    def _retire_if_drained(self, cursor: _Cursor) -> bool:
        """Under the writers' lock: unless a complete line follows, set aside a torn tail, retire the file."""
        try:
            spool = self.path.open("rb")
        except FileNotFoundError:
            self._delete_cursor()
            return True
        with spool:
            fcntl.flock(spool.fileno(), fcntl.LOCK_EX)
            spool.seek(cursor.offset)
            tail = spool.readline()
            if tail.endswith(b"\n"):
                return False  # an append landed meanwhile: replay it first
            if tail:
                self._set_aside([_Line(cursor, tail, None, TORN_RECORD)])
            os.replace(self.path, self._retired_path)
            _fsync_dir(self.path.parent)
            self._discard_retired()
        return True

    def _set_aside(self, lines: list[_Line]) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        by_kind: dict[str, list[_Line]] = {}
        for line in lines:
            by_kind.setdefault("torn" if line.reason == TORN_RECORD else "corrupt", []).append(line)
        for kind, chosen in by_kind.items():
            aside = self.path.with_name(f"{self.path.name}.{kind}-{stamp}")
            with aside.open("ab") as out:
                for line in chosen:
                    out.write(line.raw if line.raw.endswith(b"\n") else line.raw + b"\n")
                out.flush()
                os.fsync(out.fileno())
            _fsync_dir(self.path.parent)
            for line in chosen:
                log.warning(
                    "spool %s: set aside invalid record (%s) from line %d, offset %d, into %s",
                    self.path,
                    line.reason,
                    line.start.line + 1,
                    line.start.offset,
                    aside,
                )

    def _try_lock_replay(self) -> int | None:
        _make_dirs(self.path.parent)
        fd = os.open(self._replay_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _discard_retired(self) -> None:
        """Finish a retirement a crash interrupted: the retired file was fully replayed."""
        if self._retired_path.exists():
            self._delete_cursor()
            _fsync_dir(self.path.parent)  # the stale cursor must be gone before the retired file is
            self._retired_path.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)

    def _read_cursor_for_replay(self) -> _Cursor:
        try:
            with self.path.open("rb") as spool:
                return self._load_cursor(spool)
        except FileNotFoundError:
            return _Cursor()

    def _load_cursor(self, spool: BinaryIO) -> _Cursor:
        """The replayed position in this spool; the start when there is none or it cannot be this file's."""
        if self._retired_path.exists():
            return _Cursor()
        try:
            saved = json.loads(self._cursor_path.read_bytes())
            cursor = _Cursor(offset=int(saved["offset"]), line=int(saved["line"]))
        except FileNotFoundError:
            return _Cursor()
        except (ValueError, KeyError, TypeError):
            log.warning("spool %s: unreadable cursor, replaying from the start", self.path)
            return _Cursor()
        size = os.fstat(spool.fileno()).st_size
        fits = 0 <= cursor.offset <= size and cursor.line >= 0
        if not fits or (cursor.offset > 0 and os.pread(spool.fileno(), 1, cursor.offset - 1) != b"\n"):
            log.warning("spool %s: cursor does not fit the file, replaying from the start", self.path)
            return _Cursor()
        return cursor

    def _save_cursor(self, cursor: _Cursor) -> None:
        temporary = self._cursor_path.with_name(self._cursor_path.name + ".tmp")
        with temporary.open("wb") as out:
            out.write(json.dumps({"offset": cursor.offset, "line": cursor.line}).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._cursor_path)
        _fsync_dir(self.path.parent)

    def _delete_cursor(self) -> None:
        self._cursor_path.unlink(missing_ok=True)


def _encode_record(event: bytes, at: int) -> bytes:
    try:
        text = event.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"a spooled event must be UTF-8 text: {error}") from error
    record = {"v": RECORD_VERSION, "sha256": hashlib.sha256(event).hexdigest(), "at": at, "event": text}
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _decode_line(position: _Cursor, raw: bytes) -> _Line:
    """One line: its event bytes and accepted time, or the reason it is invalid; neither for a blank line."""
    if not raw.endswith(b"\n"):
        return _Line(position, raw, None, TORN_RECORD)
    body = raw.rstrip(b"\r\n")
    if not body.strip():
        return _Line(position, raw, None, None)
    try:
        record = _JSON.decode(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        # A record cut short by a crash (a later append closed its line) never ends with its closing brace.
        return _Line(position, raw, None, BAD_JSON if body.rstrip().endswith(b"}") else TORN_RECORD)
    if (
        not isinstance(record, dict)
        or record.get("v") != RECORD_VERSION
        or not isinstance(record.get("sha256"), str)
        or not isinstance(record.get("event"), str)
        or type(record.get("at")) is not int
    ):
        return _Line(position, raw, None, BAD_RECORD)
    try:
        event = record["event"].encode("utf-8")
    except UnicodeEncodeError:
        return _Line(position, raw, None, BAD_RECORD)
    if hashlib.sha256(event).hexdigest() != record["sha256"]:
        return _Line(position, raw, None, BAD_CHECKSUM)
    return _Line(position, raw, event, None, record["at"])


def _read_lines(spool: BinaryIO, start: _Cursor) -> Iterator[_Line]:
    """Every line from ``start`` to the end of the file, decoded; the last may lack its newline."""
    spool.seek(start.offset)
    position = start
    for raw in iter(spool.readline, b""):
        line = _decode_line(position, raw)
        yield line
        position = line.end


def _read_lines_settled(spool: BinaryIO, start: _Cursor) -> Iterator[_Line]:
    """Like ``_read_lines``, but an unfinished last line is judged under a shared lock (no writer active)."""
    for line in _read_lines(spool, start):
        if line.raw.endswith(b"\n"):
            yield line
            continue
        fcntl.flock(spool.fileno(), fcntl.LOCK_SH)
        try:
            yield from _read_lines(spool, line.start)
        finally:
            fcntl.flock(spool.fileno(), fcntl.LOCK_UN)
        return


def _names_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the open file ``fd`` (a replay may have retired it)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _make_dirs(directory: Path) -> None:
    """Create missing directories, making each new name durable in its parent."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return
    _fsync_dir(directory.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as error:  # some filesystems refuse fsync on a directory
        if error.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
