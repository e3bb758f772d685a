"""Shared fixtures: real engines (embedded by default), a fresh database and Redis keyspace per test.

TRENDFLOW_TEST_DATABASE_URL / TRENDFLOW_TEST_REDIS_URL point the suite at external servers instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis as sync_redis

from trendflow.config import Settings, load_settings
from trendflow.db.migrate import migrate

FIXED_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEMPLATE_DB = "trendflow_test_template"


def fixed_clock() -> datetime:
    return FIXED_NOW


@pytest.fixture(scope="session")
def engine_urls() -> Iterator[tuple[str, str]]:
    """(database_url, redis_url) of the engines the whole session shares."""
    database_url = os.environ.get("TRENDFLOW_TEST_DATABASE_URL")
    redis_url = os.environ.get("TRENDFLOW_TEST_REDIS_URL")
    handle = None
    if not (database_url and redis_url):
        from trendflow.engines import acquire_engines

        # Not under pytest's tmp_path: as root, pytest resets its base dir to 0700 and the engines'
        # `pgserver` user can no longer reach its data dir.
        data_dir = Path(tempfile.mkdtemp(prefix="trendflow-test-engines-"))
        handle = acquire_engines(data_dir)
        database_url = database_url or handle.database_url
        redis_url = redis_url or handle.redis_url
    yield database_url, redis_url
    if handle is not None:
        handle.release()
        shutil.rmtree(data_dir, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def template_database(engine_urls: tuple[str, str]) -> str:
    """A migrated database that each test's fresh database is copied from (CREATE DATABASE … TEMPLATE)."""
    admin_url = engine_urls[0]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    migrate(with_database(admin_url, TEMPLATE_DB))
    return TEMPLATE_DB


@contextmanager
def scratch_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A database of its own for one test (a copy of `template` when given), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(engine_urls: tuple[str, str], template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    with scratch_database(engine_urls[0], template_database) as url:
        yield url


@pytest.fixture
def empty_database(engine_urls: tuple[str, str]) -> Iterator[str]:
    """A database with nothing in it: no extension, no table, no alembic_version."""
    with scratch_database(engine_urls[0]) as url:
        yield url


@pytest.fixture
def redis_url(engine_urls: tuple[str, str]) -> str:
    """The session's Redis, emptied for this test (tests run one at a time)."""
    url = engine_urls[1]
    client = sync_redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=database_url, redis_url=redis_url)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator:
    from trendflow.runtime import Endpoints, open_runtime

    async with open_runtime(settings, Endpoints(settings.database_url, settings.redis_url)) as opened:  # type: ignore[arg-type]
        yield opened


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: this test reads the shared corpus beside the project")
    return path
