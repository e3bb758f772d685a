"""The embedded engines: shared by every process on a data dir, stopped with the last one, crash-safe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from trendflow.engines import EngineLayout, acquire_engines, engine_processes

SRC_DIR = Path(__file__).resolve().parents[2] / "src"

# A trendflow process in miniature: lease the engines, report their URLs, hold them until told to exit.
USER_PROGRAM = """
import json, os, sys, time
from pathlib import Path
from trendflow.engines import acquire_engines

started = time.monotonic()
engines = acquire_engines(Path(sys.argv[1]))
report = {
    "pid": os.getpid(),
    "database_url": engines.database_url,
    "redis_url": engines.redis_url,
    "acquire_s": time.monotonic() - started,
}
print(json.dumps(report), flush=True)
sys.stdin.readline()
"""


class User:
    """A separate process that holds the engines of a data dir until exit() or kill()."""

    def __init__(self, data_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-c", USER_PROGRAM, str(data_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            _, stderr = self.process.communicate(timeout=60)
            raise AssertionError(f"the user process failed to acquire the engines:\n{stderr}")
        report = json.loads(line)
        self.database_url: str = report["database_url"]
        self.redis_url: str = report["redis_url"]
        self.acquire_s: float = report["acquire_s"]

    def exit(self) -> None:
        _, stderr = self.process.communicate(input="\n", timeout=60)
        assert self.process.returncode == 0, stderr

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=60)


def engine_roles(data_dir: Path) -> dict[str, list[int]]:
    """Pids of the supervisor, the postmaster and redis-server serving data_dir."""
    roles: dict[str, list[int]] = {"supervisor": [], "postgres": [], "redis": []}
    for proc in engine_processes(data_dir):
        name, cmdline = proc.name(), proc.cmdline()
        if name == "redis-server":
            roles["redis"].append(proc.pid)
        elif name == "postgres" and "-D" in cmdline:
            roles["postgres"].append(proc.pid)
        elif name != "postgres":
            roles["supervisor"].append(proc.pid)
    return roles


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting until {what}")
        time.sleep(0.05)


def write_note(user: User, body: str) -> None:
    with psycopg.connect(user.database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO notes VALUES (1, %s)", (body,))
    redis.Redis.from_url(user.redis_url).set("note", body)


def read_note(user: User) -> tuple[object, object]:
    with psycopg.connect(user.database_url) as conn:
        row = conn.execute("SELECT body FROM notes WHERE id = 1").fetchone()
    return (row[0] if row else None), redis.Redis.from_url(user.redis_url).get("note")


def kill_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", f"{pid} died")


@pytest.fixture(scope="module")
def engines_root() -> Iterator[Path]:
    """A home for data dirs outside pytest's tmp dir.

    PostgreSQL runs as the `pgserver` user when we are root, so it must traverse every parent of its
    data dir; pytest resets its base temp dir to mode 0700 (and prunes old ones) whenever another
    session starts, which would pull the floor from under a running server.
    """
    root = Path(tempfile.mkdtemp(prefix="trendflow-engines-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def initialised_pgdata(engines_root: Path) -> Path:
    """A pgdata made by a cold start (initdb included), copied by each test to skip initdb."""
    data_dir = engines_root / "template"
    User(data_dir).exit()
    assert engine_processes(data_dir) == []
    return EngineLayout.of(data_dir).pgdata


def prepare_data_dir(data_dir: Path, pgdata: Path) -> Path:
    data_dir.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(pgdata), str(EngineLayout.of(data_dir).pgdata)], check=True)
    return data_dir


@pytest.fixture
def test_root(engines_root: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=engines_root))


@pytest.fixture
def data_dir(test_root: Path, initialised_pgdata: Path) -> Iterator[Path]:
    data_dir = prepare_data_dir(test_root / "data", initialised_pgdata)
    yield data_dir
    for proc in engine_processes(data_dir):  # only after a failed test
        proc.kill()


def test_last_user_exit_stops_the_engines_and_data_survives_a_restart(data_dir: Path) -> None:
    first = User(data_dir)
    assert {role: len(pids) for role, pids in engine_roles(data_dir).items()} == {
        "supervisor": 1,
        "postgres": 1,
        "redis": 1,
    }
    write_note(first, "kept")
    first.exit()
    assert engine_processes(data_dir) == []

    second = User(data_dir)
    assert read_note(second) == ("kept", b"kept")
    second.exit()
    assert engine_processes(data_dir) == []


def test_database_is_trendflow_with_pgvector(data_dir: Path) -> None:
    user = User(data_dir)
    with psycopg.connect(user.database_url) as conn:
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert conn.info.dbname == "trendflow"
        assert conn.execute("SELECT '[1,2]'::vector <=> '[2,4]'::vector").fetchone() == (0.0,)
    user.exit()
    assert row is not None and row[0].startswith("0.8")


def test_two_processes_share_one_set_of_engines(data_dir: Path) -> None:
    first = User(data_dir)
    roles = engine_roles(data_dir)
    second = User(data_dir)
    assert (second.database_url, second.redis_url) == (first.database_url, first.redis_url)
    assert engine_roles(data_dir) == roles

    first.exit()
    assert engine_roles(data_dir) == roles
    write_note(second, "still up")
    assert read_note(second) == ("still up", b"still up")

    second.exit()
    assert engine_processes(data_dir) == []


def test_sigkill_of_the_only_user_stops_the_engines(data_dir: Path) -> None:
    user = User(data_dir)
    user.kill()
    wait_for(lambda: engine_processes(data_dir) == [], "the engines stopped")
    assert list(EngineLayout.of(data_dir).leases_dir.iterdir()) == []


def test_acquire_recovers_from_stale_pid_lease_and_state_files(data_dir: Path) -> None:
    throwaway = subprocess.Popen(["true"])
    throwaway.wait()
    dead_pid = throwaway.pid
    layout = EngineLayout.of(data_dir)
    layout.leases_dir.mkdir(parents=True)
    layout.supervisor_pid_path.write_text(f"{dead_pid}\n")
    (layout.leases_dir / str(dead_pid)).touch()
    stale = {
        "database_url": "postgresql://nowhere/x",
        "redis_url": "unix:///nowhere",
        "supervisor_pid": dead_pid,
    }
    layout.state_path.write_text(json.dumps(stale))

    user = User(data_dir)
    assert (user.database_url, user.redis_url) != (stale["database_url"], stale["redis_url"])
    write_note(user, "fresh")
    user.exit()
    assert engine_processes(data_dir) == []
    assert list(layout.leases_dir.iterdir()) == []


def test_acquire_recovers_engines_left_running_by_a_killed_run(data_dir: Path) -> None:
    crashed = User(data_dir)
    write_note(crashed, "before the crash")
    (supervisor,) = engine_roles(data_dir)["supervisor"]
    kill_process(supervisor)
    crashed.kill()
    left = engine_roles(data_dir)
    assert left["supervisor"] == [] and len(left["postgres"]) == 1 and len(left["redis"]) == 1

    user = User(data_dir)
    assert read_note(user) == ("before the crash", b"before the crash")
    roles = engine_roles(data_dir)
    assert len(roles["supervisor"]) == 1 and len(roles["postgres"]) == 1
    assert len(roles["redis"]) == 1 and roles["redis"] != left["redis"]
    user.exit()
    assert engine_processes(data_dir) == []


def test_last_user_stops_engines_whose_supervisor_was_killed(data_dir: Path) -> None:
    user = User(data_dir)
    (supervisor,) = engine_roles(data_dir)["supervisor"]
    kill_process(supervisor)
    user.exit()
    assert engine_processes(data_dir) == []


def test_supervisor_restarts_a_redis_server_that_died(data_dir: Path) -> None:
    user = User(data_dir)
    write_note(user, "acknowledged")
    (old_redis,) = engine_roles(data_dir)["redis"]
    kill_process(old_redis)

    def redis_is_back() -> bool:
        try:
            return bool(redis.Redis.from_url(user.redis_url).ping())
        except redis.ConnectionError:
            return False

    wait_for(redis_is_back, "redis-server answers again")
    assert read_note(user) == ("acknowledged", b"acknowledged")
    user.exit()
    assert engine_processes(data_dir) == []


def test_supervisor_restarts_a_postgres_that_died(data_dir: Path) -> None:
    user = User(data_dir)
    write_note(user, "committed")
    (old_postmaster,) = engine_roles(data_dir)["postgres"]
    kill_process(old_postmaster)

    def postgres_is_back() -> bool:
        try:
            return read_note(user)[0] == "committed"
        except psycopg.OperationalError:
            return False

    wait_for(postgres_is_back, "PostgreSQL answers again")
    user.exit()
    assert engine_processes(data_dir) == []


def test_sigterm_to_the_supervisor_stops_the_engines(data_dir: Path) -> None:
    user = User(data_dir)
    (supervisor,) = engine_roles(data_dir)["supervisor"]
    os.kill(supervisor, signal.SIGTERM)
    wait_for(lambda: engine_processes(data_dir) == [], "the engines stopped")
    user.exit()


def test_handles_in_one_process_share_one_lease(data_dir: Path) -> None:
    first = acquire_engines(data_dir)
    second = acquire_engines(data_dir)
    assert (second.database_url, second.redis_url) == (first.database_url, first.redis_url)
    first.release()
    first.release()
    assert redis.Redis.from_url(second.redis_url).ping()
    second.release()
    assert engine_processes(data_dir) == []


def test_long_data_dir_paths_get_short_socket_paths(test_root: Path, initialised_pgdata: Path) -> None:
    data_dir = prepare_data_dir(test_root / ("deep-" * 30) / "data", initialised_pgdata)
    user = User(data_dir)
    assert user.redis_url.startswith("unix:///tmp/trendflow-")
    write_note(user, "short sockets")
    assert read_note(user) == ("short sockets", b"short sockets")
    user.exit()
    assert engine_processes(data_dir) == []
