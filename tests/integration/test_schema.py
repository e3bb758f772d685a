"""The schema on a real PostgreSQL: migrations that can run any number of times, at once, and the constraints
that keep the data whole."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from trendflow.db.migrate import current_revision, head_revision, migrate

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
VECTOR_384 = "[" + ",".join(["0.1"] * 384) + "]"

# Import everything first, say so, then migrate when the parent says go: both processes hit the database
# together instead of one finishing its imports while the other has already migrated.
MIGRATE_PROGRAM = """
import sys
from trendflow.db.migrate import migrate
print("ready", flush=True)
sys.stdin.readline()
migrate(sys.argv[1])
print("migrated", flush=True)
"""


def scalar(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def insert_trend(conn: psycopg.Connection, source: str = "web", external_id: str = "e1") -> uuid.UUID:
    row = conn.execute(
        "INSERT INTO enriched_trends (source, external_id, text, timestamp, content_hash)"
        " VALUES (%s, %s, 'hello', '2026-03-01T12:00:00Z', 'h') RETURNING id",
        (source, external_id),
    ).fetchone()
    assert row is not None
    return row[0]


def insert_embedding(conn: psycopg.Connection, trend_id: uuid.UUID) -> None:
    conn.execute(
        "INSERT INTO embedding_records (enriched_trend_id, model, dim, embedding, content_hash)"
        " VALUES (%s, 'all-MiniLM-L6-v2', 384, %s::vector, 'h')",
        (trend_id, VECTOR_384),
    )


def table_count(url: str) -> int:
    return int(
        scalar(  # type: ignore[call-overload]
            url,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_name IN ('enriched_trends', 'embedding_records', 'dead_letters', 'alembic_version')",
        )
    )


def test_migrating_twice_changes_nothing(empty_database: str) -> None:
    assert current_revision(empty_database) is None

    migrate(empty_database)
    migrate(empty_database)

    assert current_revision(empty_database) == head_revision()
    assert table_count(empty_database) == 4
    assert scalar(empty_database, "SELECT count(*) FROM alembic_version") == 1


def test_two_processes_migrating_one_empty_database_both_succeed(empty_database: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), os.environ.get("PYTHONPATH", "")])}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_PROGRAM, empty_database],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.communicate(timeout=30)[1]
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert "migrated" in stdout
    assert current_revision(empty_database) == head_revision()
    assert table_count(empty_database) == 4
    assert scalar(empty_database, "SELECT count(*) FROM alembic_version") == 1
    assert scalar(empty_database, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1


def test_the_same_identity_cannot_be_stored_twice(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        insert_trend(conn, "web", "e1")
        insert_trend(conn, "batch", "e1")  # another source may reuse the id

        with pytest.raises(psycopg.errors.UniqueViolation):
            insert_trend(conn, "web", "e1")

    assert scalar(database_url, "SELECT count(*) FROM enriched_trends") == 2


def test_an_embedding_needs_its_trend(database_url: str) -> None:
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ForeignKeyViolation),
    ):
        insert_embedding(conn, uuid.uuid4())

    assert scalar(database_url, "SELECT count(*) FROM embedding_records") == 0


def test_deleting_a_trend_deletes_its_embeddings(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        doomed = insert_trend(conn, "web", "doomed")
        kept = insert_trend(conn, "web", "kept")
        insert_embedding(conn, doomed)
        insert_embedding(conn, kept)

        conn.execute("DELETE FROM enriched_trends WHERE id = %s", (doomed,))

        remaining = conn.execute("SELECT enriched_trend_id FROM embedding_records").fetchall()
    assert remaining == [(kept,)]


def test_the_vector_extension_is_installed(database_url: str) -> None:
    assert scalar(database_url, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
    assert scalar(database_url, "SELECT %s::vector <=> %s::vector", ("[1,0]", "[1,0]")) == 0


def test_embeddings_have_an_hnsw_cosine_index(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        definitions = [
            row[0]
            for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'embedding_records'"
            ).fetchall()
        ]
    assert any("USING hnsw" in d and "vector_cosine_ops" in d for d in definitions), definitions
