"""Fault injection on real processes: Redis, PostgreSQL and workers die or stall under load; nothing is lost.

One pipeline (API, two ETL workers, an embed worker, the monitor, each its own process) serves the whole module
so that the engines and the model load once; each test posts under its own source and counts only that source.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis

from tests.e2e.harness import Pipeline, free_port, wait_for
from trendflow.engines import engine_processes
from trendflow.spool import Spool
from trendflow.streams import names

pytestmark = pytest.mark.e2e

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CLAIM_IDLE_MS = 1500
MAX_DELIVERIES = 5  # the default: the drills run with the delivery budget operators get


@dataclass
class Cluster:
    """The module's pipeline and its worker processes by role."""

    pipeline: Pipeline
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str, role: str) -> subprocess.Popen:
        """Start `trendflow worker ROLE` and wait until it has its engines and schema (its log says so)."""
        log = self.pipeline.data_dir / f"worker-{role}-{len(self.pipeline.processes)}.log"
        self.workers[name] = self.pipeline.start("worker", role)
        wait_for(lambda: "worker_started" in log.read_text(errors="replace"), what=f"worker {name} to start")
        return self.workers[name]

    def redis(self) -> redis.Redis:
        state = json.loads((self.pipeline.data_dir / "engines" / "state.json").read_text())
        return redis.Redis.from_url(state["redis_url"], socket_timeout=5)


@dataclass
class Tally:
    """What one test sent and what the user can see afterwards, for one source."""

    sent: int = 0
    queued: int = 0
    spooled: int = 0
    other_answers: list[str] = field(default_factory=list)
    stored: int = 0
    embedded: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    slowest_answer_s: float = 0.0

    @property
    def accepted(self) -> int:
        return self.queued + self.spooled

    def report(self, name: str) -> str:
        return (
            f"\n[{name}] sent {self.sent}, accepted {self.accepted} (queued {self.queued}, spooled"
            f" {self.spooled}), stored {self.stored}, embedded {self.embedded}, duplicates {self.duplicates},"
            f" dead letters {self.dead_letters}, slowest answer {self.slowest_answer_s:.1f} s"
        )


def make_event(source: str, i: int) -> dict:
    return {
        "external_id": f"{source}-{i}",
        "source": source,
        "text": f"Fault drill {source}: the river festival draws a crowd, post {i}",
        "timestamp": (START + timedelta(seconds=i)).isoformat(),
        "topics": ["faults"],
    }


# A dead letter of a source's event: a raw payload naming one of its ids, or an embed job naming one of its rows.
LETTER_OF_SOURCE = """(
    encode(d.payload, 'escape') LIKE '%%' || %s || '-%%'
    OR (d.stage = 'embed' AND EXISTS (
        SELECT 1 FROM enriched_trends t
        WHERE t.source = %s AND position(t.id::text IN encode(d.payload, 'escape')) > 0))
)"""
COUNT_LETTERS = "SELECT count(*) FROM dead_letters d WHERE " + LETTER_OF_SOURCE
LIST_LETTERS = (
    "SELECT stage, reason, error_class, deliveries, message FROM dead_letters d WHERE " + LETTER_OF_SOURCE
)


def count_into(pipeline: Pipeline, source: str, tally: Tally) -> Tally:
    [(rows, identities, embedded)] = pipeline.query(
        "SELECT count(*), count(DISTINCT external_id), count(*) FILTER (WHERE embedding_status = 'succeeded')"
        " FROM enriched_trends WHERE source = %s",
        (source,),
    )
    [(records, trends_with_records)] = pipeline.query(
        "SELECT count(*), count(DISTINCT r.enriched_trend_id) FROM embedding_records r"
        " JOIN enriched_trends t ON t.id = r.enriched_trend_id WHERE t.source = %s",
        (source,),
    )
    [(letters,)] = pipeline.query(COUNT_LETTERS, (source, source))
    tally.stored, tally.embedded = identities, embedded
    tally.duplicates = (rows - identities) + (records - trends_with_records)
    tally.dead_letters = letters
    return tally


def letters_of(pipeline: Pipeline, source: str) -> list[tuple]:
    """The dead letters whose payload names this source's events: what to look at when one appears."""
    return pipeline.query(LIST_LETTERS, (source, source))


def all_stored_and_embedded(pipeline: Pipeline, source: str, tally: Tally) -> bool:
    count_into(pipeline, source, tally)
    return tally.stored == tally.sent and tally.embedded == tally.sent


def post_steadily(
    pipeline: Pipeline,
    source: str,
    *,
    per_second: float,
    seconds: float,
    during: Callable[[float], None] | None = None,
) -> Tally:
    """Post single events at a steady rate from a thread pool; `during(elapsed)` runs fault steps meanwhile."""
    tally = Tally()
    lock = threading.Lock()
    total = int(per_second * seconds)

    def post(client: httpx.Client, i: int) -> None:
        began = time.monotonic()
        try:
            response = client.post("/v1/events", json=make_event(source, i))
            answer = response.json().get("status") if response.status_code == 202 else None
            error = f"{response.status_code} {response.text}"
        except httpx.HTTPError as exc:
            answer, error = None, f"{exc.__class__.__name__}: {exc}"
        with lock:
            tally.slowest_answer_s = max(tally.slowest_answer_s, time.monotonic() - began)
            if answer == "queued":
                tally.queued += 1
            elif answer == "spooled":
                tally.spooled += 1
            else:
                tally.other_answers.append(error)

    with httpx.Client(base_url=pipeline.url, timeout=60) as client, ThreadPoolExecutor(64) as pool:
        started = time.monotonic()
        futures = []
        for i in range(total):
            due = started + i / per_second
            while (now := time.monotonic()) < due:
                if during is not None:
                    during(now - started)
                time.sleep(min(0.01, due - now))
            futures.append(pool.submit(post, client, i))
        for future in futures:
            future.result()
    tally.sent = total
    return tally


def etl_pending(cluster: Cluster) -> dict[str, int]:
    """Pending entries of trends:raw per consumer of the ETL group."""
    client = cluster.redis()
    try:
        consumers = client.xinfo_consumers(names.RAW_STREAM, names.ETL_GROUP)
    except redis.ResponseError:  # no stream or group yet
        return {}
    finally:
        client.close()
    return {
        c["name"].decode() if isinstance(c["name"], bytes) else c["name"]: c["pending"] for c in consumers
    }


def consumer_of(proc: subprocess.Popen, role: str) -> str:
    """The consumer name a worker process reads under (role-host-pid, as the worker loop names it)."""
    return f"{role}-{socket.gethostname()}-{proc.pid}"


def engine(cluster: Cluster, name: str) -> list[psutil.Process]:
    return [p for p in engine_processes(cluster.pipeline.data_dir) if p.name() == name]


def raw_stream_settled(cluster: Cluster) -> bool:
    """Every entry of trends:raw delivered to the ETL group and acknowledged."""
    client = cluster.redis()
    try:
        last_id = client.xinfo_stream(names.RAW_STREAM)["last-generated-id"]
        group = next(
            g for g in client.xinfo_groups(names.RAW_STREAM) if g["name"] == names.ETL_GROUP.encode()
        )
    finally:
        client.close()
    return bool(group["pending"] == 0 and group["last-delivered-id"] == last_id)


class Outage:
    """Signals engine processes to start and end an outage, once each, and measures how long it lasted."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.ended_at: float | None = None

    @property
    def started(self) -> bool:
        return self.started_at is not None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def seconds(self) -> float:
        return (self.ended_at or 0.0) - (self.started_at or 0.0)

    def start(self, procs: list[psutil.Process], sig: signal.Signals) -> None:
        self.started_at = time.monotonic()
        for proc in procs:
            proc.send_signal(sig)

    def end(self, procs: list[psutil.Process], sig: signal.Signals) -> None:
        if self.started and not self.ended:
            for proc in procs:
                proc.send_signal(sig)
            self.ended_at = time.monotonic()


# A row PostgreSQL refuses with a transient error class (53100 disk_full), every time it is written.
POISON_TRIGGER = """
CREATE OR REPLACE FUNCTION faults_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.external_id = 'poison' THEN
        RAISE EXCEPTION 'fault injection: no space left for this row' USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER faults_refuse_poison BEFORE INSERT OR UPDATE ON enriched_trends
    FOR EACH ROW EXECUTE FUNCTION faults_refuse_poison();
"""
DROP_POISON_TRIGGER = """
DROP TRIGGER IF EXISTS faults_refuse_poison ON enriched_trends;
DROP FUNCTION IF EXISTS faults_refuse_poison();
"""


def execute(pipeline: Pipeline, statements: str) -> None:
    with psycopg.connect(pipeline.database_url(), autocommit=True) as conn:
        conn.execute(statements)


def _deliveries(client: redis.Redis, entry_id: str) -> int:
    try:
        found = client.xpending_range(names.RAW_STREAM, names.ETL_GROUP, min=entry_id, max=entry_id, count=1)
    except redis.ResponseError:  # no group yet: the workers are still starting
        return 0
    return int(found[0]["times_delivered"]) if found else 0


def _letter(pipeline: Pipeline, stream_id: str) -> list[tuple]:
    return pipeline.query(
        "SELECT reason, error_class, deliveries, payload FROM dead_letters WHERE stage = 'etl' AND stream_id = %s",
        (stream_id,),
    )


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    pipeline = Pipeline.create(
        TRENDFLOW_INGEST_TIMEOUT_MS="500",
        TRENDFLOW_CLAIM_IDLE_MS=str(CLAIM_IDLE_MS),
        TRENDFLOW_ETL_BATCH_SIZE="50",
        TRENDFLOW_MAX_DELIVERIES=str(MAX_DELIVERIES),
    )
    running = Cluster(pipeline)
    try:
        pipeline.start("api")
        pipeline.wait_ready()
        for name, role in (("etl-1", "etl"), ("etl-2", "etl"), ("embed", "embed"), ("monitor", "monitor")):
            running.start_worker(name, role)
        yield running
    finally:
        pipeline.stop()
        wait_for(lambda: not engine_processes(pipeline.data_dir), timeout_s=60, what="the engines to stop")
        if request.session.testsfailed:
            print(f"\nkept {pipeline.data_dir} (process logs *.log, engines/, redis/) for inspection")
        else:
            shutil.rmtree(pipeline.data_dir, ignore_errors=True)


def test_etl_worker_killed_mid_batch_its_entries_are_reclaimed_once(cluster: Cluster) -> None:
    source = "faults-etl-kill"
    victim = cluster.workers["etl-1"]
    victim_name = consumer_of(victim, "etl")
    killed = threading.Event()
    sent: list[int] = []
    refused: list[str] = []

    def post_until_killed() -> None:
        """Batches of 50, four a second, until the victim is dead and at least 400 events went out."""
        with httpx.Client(base_url=cluster.pipeline.url, timeout=60) as client:
            while len(sent) < 400 or (not killed.is_set() and len(sent) < 5000):
                time.sleep(0.25)
                batch = [make_event(source, i) for i in range(len(sent), len(sent) + 50)]
                response = client.post("/v1/events/batch", json=batch)
                if response.status_code != 202 or response.json()["accepted"] != len(batch):
                    refused.append(response.text)
                sent.extend(range(len(batch)))

    poster = threading.Thread(target=post_until_killed)
    poster.start()
    try:
        # Pending entries under the victim's name are a batch it has read and not yet acked. Freeze it there
        # (SIGSTOP), check that it still holds them, and kill it: the kill lands mid-batch, never between two.
        def frozen_holding_a_batch() -> int:
            if etl_pending(cluster).get(victim_name, 0) == 0:
                return 0
            victim.send_signal(signal.SIGSTOP)
            holding = etl_pending(cluster).get(victim_name, 0)
            if not holding:
                victim.send_signal(signal.SIGCONT)
            return holding

        held = wait_for(frozen_holding_a_batch, interval_s=0.005, what="the victim holding a batch")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        sent_at_kill = len(sent)
    finally:
        killed.set()
        poster.join()

    tally = Tally(sent=len(sent), queued=len(sent) - 50 * len(refused))
    wait_for(
        lambda: all_stored_and_embedded(cluster.pipeline, source, tally),
        timeout_s=150,
        what="every event stored and embedded after the kill",
    )
    wait_for(
        lambda: etl_pending(cluster).get(victim_name, 0) == 0, what="the dead worker's entries reclaimed"
    )
    print(
        tally.report("ETL worker SIGKILLed mid-batch")
        + f"; the dead worker held {held} entries, killed after {sent_at_kill} were sent"
    )
    assert refused == []
    assert held > 0
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (
        len(sent),
        len(sent),
        0,
        0,
    )
    cluster.start_worker("etl-1", "etl")  # back to two workers for the tests that follow


def test_postgres_stalled_api_keeps_accepting_and_workers_ride_it_out(cluster: Cluster) -> None:
    source = "faults-pg-stall"
    workers_before = {name: proc.pid for name, proc in cluster.workers.items()}
    postgres = engine(cluster, "postgres")
    assert postgres, "the embedded PostgreSQL is not running"
    outage = Outage()

    def fault(elapsed: float) -> None:
        if elapsed >= 2.0 and not outage.started:
            outage.start(postgres, signal.SIGSTOP)
        if elapsed >= 7.0 and not outage.ended:
            outage.end(postgres, signal.SIGCONT)

    try:
        tally = post_steadily(cluster.pipeline, source, per_second=20, seconds=10, during=fault)
    finally:
        outage.end(postgres, signal.SIGCONT)
    wait_for(
        lambda: all_stored_and_embedded(cluster.pipeline, source, tally),
        timeout_s=150,
        what="every event stored and embedded after PostgreSQL came back",
    )
    print(tally.report(f"PostgreSQL stopped {outage.seconds:.1f} s"))
    assert tally.other_answers == []
    assert tally.queued == tally.sent == 200  # Redis buffered everything: nothing needed the spool
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (200, 200, 0, 0), (
        letters_of(cluster.pipeline, source)
    )
    assert {name: proc.pid for name, proc in cluster.workers.items()} == workers_before
    assert all(proc.poll() is None for proc in cluster.workers.values())


def test_postgres_killed_and_restarted_nothing_lost_no_worker_restarted(cluster: Cluster) -> None:
    source = "faults-pg-kill"
    workers_before = {name: proc.pid for name, proc in cluster.workers.items()}
    killed = Outage()
    postmaster = [_postmaster(cluster)]

    def fault(elapsed: float) -> None:
        if elapsed >= 2.0 and not killed.started:
            killed.start(
                postmaster, signal.SIGKILL
            )  # the supervisor restarts it; crash recovery replays the WAL
        if killed.started and not killed.ended and _postgres_answers(cluster):
            killed.ended_at = time.monotonic()

    tally = post_steadily(cluster.pipeline, source, per_second=20, seconds=10, during=fault)
    wait_for(
        lambda: all_stored_and_embedded(cluster.pipeline, source, tally),
        timeout_s=150,
        what="every event stored and embedded after PostgreSQL was restarted",
    )
    print(tally.report(f"PostgreSQL SIGKILLed, back in {killed.seconds:.1f} s"))
    assert killed.ended, "PostgreSQL was not restarted by the supervisor"
    assert tally.other_answers == []
    assert tally.queued == tally.sent == 200
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (200, 200, 0, 0), (
        letters_of(cluster.pipeline, source)
    )
    assert {name: proc.pid for name, proc in cluster.workers.items()} == workers_before
    assert all(proc.poll() is None for proc in cluster.workers.values())


def _postmaster(cluster: Cluster) -> psutil.Process:
    pid = int((cluster.pipeline.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def _postgres_answers(cluster: Cluster) -> bool:
    try:
        with psycopg.connect(cluster.pipeline.database_url(), connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError, ValueError):
        return False


def test_poison_entry_ends_as_a_dead_letter_while_the_others_flow(cluster: Cluster) -> None:
    """No payload alone makes the ETL fail transiently (anything it cannot normalize is a permanent dead letter
    at once, and a row the database refuses as data is too), so the fault is injected where such failures
    come from: PostgreSQL answers `disk_full` for this one row, every time, while every other row is stored."""
    source = "faults-poison"
    poison = make_event(source, 0) | {"external_id": "poison"}
    execute(cluster.pipeline, POISON_TRIGGER)
    client = cluster.redis()
    try:
        entry_id = client.xadd(names.RAW_STREAM, {names.EVENT_FIELD: json.dumps(poison)})
        poison_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        wait_for(lambda: _deliveries(client, poison_id) >= 2, what="the poison entry to be retried")
        tally = post_steadily(cluster.pipeline, source, per_second=50, seconds=2)
        wait_for(lambda: _letter(cluster.pipeline, poison_id), timeout_s=60, what="the poison's dead letter")
    finally:
        client.close()
        execute(cluster.pipeline, DROP_POISON_TRIGGER)
    wait_for(
        lambda: all_stored_and_embedded(cluster.pipeline, source, tally) and raw_stream_settled(cluster),
        what="the others stored and embedded, and the raw stream settled",
    )
    [(reason, error_class, deliveries, payload)] = _letter(cluster.pipeline, poison_id)
    print(tally.report("poison entry") + f"; the poison ended as {reason} after {deliveries} deliveries")
    assert (reason, error_class) == ("max_deliveries_exceeded", "transient")
    assert deliveries == MAX_DELIVERIES + 1
    assert json.loads(payload) == poison
    assert cluster.pipeline.query("SELECT 1 FROM enriched_trends WHERE external_id = 'poison'") == []
    assert tally.queued == 100 and tally.other_answers == []
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (100, 100, 0, 0), (
        letters_of(cluster.pipeline, source)
    )
    assert all(proc.poll() is None for proc in cluster.workers.values())


def test_redis_killed_then_stalled_under_load_every_event_answered_and_stored_once(cluster: Cluster) -> None:
    source = "faults-redis"
    killed = Outage()
    stalled = Outage()
    restarted: list[psutil.Process] = []
    victim = engine(cluster, "redis-server")
    assert len(victim) == 1, victim

    def fault(elapsed: float) -> None:
        if elapsed >= 2.0 and not killed.started:
            killed.start(victim, signal.SIGKILL)  # the supervisor restarts it from its append-only file
        if killed.started and not killed.ended:
            fresh = [p for p in engine(cluster, "redis-server") if p.pid != victim[0].pid]
            if fresh and _answers(cluster):
                killed.ended_at = time.monotonic()
                restarted.extend(fresh)
        if restarted and elapsed >= 8.0 and not stalled.started:
            stalled.start(restarted, signal.SIGSTOP)
        if elapsed >= 13.0:
            stalled.end(restarted, signal.SIGCONT)

    try:
        tally = post_steadily(cluster.pipeline, source, per_second=20, seconds=15, during=fault)
    finally:
        stalled.end(restarted, signal.SIGCONT)
    wait_for(
        lambda: all_stored_and_embedded(cluster.pipeline, source, tally),
        timeout_s=150,
        what="every event stored and embedded after Redis came back",
    )
    spool = wait_for(lambda: _spool_empty(cluster), what="the spool to be replayed")
    print(
        tally.report(
            f"Redis SIGKILLed (back in {killed.seconds:.1f} s), then SIGSTOPped {stalled.seconds:.1f} s"
        )
        + f"; spool left {spool}"
    )
    assert killed.ended and stalled.ended, "Redis was not restarted by the supervisor"
    assert tally.other_answers == []
    assert tally.accepted == tally.sent == 300
    assert tally.spooled > 0, "no request ever met the outage"
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (300, 300, 0, 0), (
        letters_of(cluster.pipeline, source)
    )
    assert all(proc.poll() is None for proc in cluster.workers.values())


def _answers(cluster: Cluster) -> bool:
    client = cluster.redis()
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _spool_empty(cluster: Cluster) -> dict | None:
    """`trendflow spool status --json`, when it says nothing waits."""
    done = subprocess.run(
        [sys.executable, "-m", "trendflow", "spool", "status", "--json"],
        env=cluster.pipeline.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    status = json.loads(done.stdout)
    return status if status["events"] == 0 and not status["torn"] else None


def test_torn_spool_is_reported_by_verify_and_replay_sets_it_aside_and_publishes_the_rest(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An API process died mid-append: `spool verify` says where, `spool replay` keeps the torn bytes aside."""
    source = "faults-torn-spool"
    spool_path = tmp_path_factory.mktemp("spool") / "ingest-fallback.jsonl"
    Spool(spool_path).append([json.dumps(make_event(source, i)).encode() for i in range(3)])
    with spool_path.open("ab") as spool:
        spool.write(b'{"v":1,"sha256":"')  # the writer died here
    env = cluster.pipeline.env | {"TRENDFLOW_SPOOL_PATH": str(spool_path)}

    def spool_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trendflow", "spool", *args], env=env, capture_output=True, text=True, timeout=120
        )  # fmt: skip

    verify = spool_command("verify")
    status = json.loads(spool_command("status", "--json").stdout)
    replay = spool_command("replay")
    after = json.loads(spool_command("status", "--json").stdout)
    tally = Tally(sent=3, spooled=3)
    wait_for(lambda: all_stored_and_embedded(cluster.pipeline, source, tally), what="the replayed events")
    print(tally.report("torn spool replayed by hand") + f"; set aside: {after['aside_files']}")
    assert verify.returncode == 1 and "line 4 (byte" in verify.stdout and "torn_record" in verify.stdout
    assert (status["events"], status["torn"]) == (3, True)
    assert replay.returncode == 0 and "replayed 3 events" in replay.stdout, replay.stdout + replay.stderr
    assert (after["events"], after["torn"], len(after["aside_files"])) == (0, False, 1)
    assert Path(after["aside_files"][0]).read_bytes() == b'{"v":1,"sha256":"\n'
    assert (tally.stored, tally.embedded, tally.duplicates, tally.dead_letters) == (3, 3, 0, 0)


class UnixForwarder:
    """127.0.0.1:port forwarded to a Unix socket, from `open()` on; until then nothing listens there."""

    def __init__(self, port: int, target: str) -> None:
        self.port, self.target = port, target
        self.server: socket.socket | None = None

    def open(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:  # closed
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_a_worker_started_while_postgres_is_unreachable_waits_and_then_works(cluster: Cluster) -> None:
    """Nothing listens where the worker looks for PostgreSQL; it waits, and starts once something answers."""
    real = psycopg.conninfo.conninfo_to_dict(cluster.pipeline.database_url())
    forwarder = UnixForwarder(free_port(), f"{real['host']}/.s.PGSQL.{real['port']}")
    env = cluster.pipeline.env | {
        "TRENDFLOW_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{forwarder.port}/{real['dbname']}"
    }
    log_path = cluster.pipeline.data_dir / "worker-etl-late.log"
    with log_path.open("ab") as log:
        late = subprocess.Popen(
            [sys.executable, "-m", "trendflow", "worker", "etl"], env=env, stdout=log, stderr=log
        )
    cluster.pipeline.processes.append(late)
    try:
        wait_for(lambda: "worker_waiting_for_database" in log_path.read_text(errors="replace"),
                 what="the worker to say it waits for PostgreSQL")  # fmt: skip
        assert late.poll() is None
        forwarder.open()
        wait_for(lambda: "worker_started" in log_path.read_text(errors="replace"), what="the worker to start")
        wait_for(
            lambda: consumer_of(late, "etl") in etl_pending(cluster), what="the worker to read the stream"
        )
        assert late.poll() is None
    finally:
        late.send_signal(signal.SIGTERM)
        late.wait(60)
        forwarder.close()
    assert late.returncode == 0
