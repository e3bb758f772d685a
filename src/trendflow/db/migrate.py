"""Apply the schema with Alembic; safe when several processes start at once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from trendflow.errors import TransientError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a URL must be doubled.
    config.set_main_option("sqlalchemy.url", _sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def _sqlalchemy_url(database_url: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def migrate(database_url: str) -> None:
    """Bring the database to the newest schema (a no-op when it is already there)."""
    try:
        command.upgrade(_alembic_config(database_url), "head")
    except OperationalError as exc:
        raise TransientError(
            f"cannot migrate: PostgreSQL unreachable ({exc.orig.__class__.__name__})"
        ) from None


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config("postgresql://unused/")).get_current_head() or ""


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_engine(_sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
