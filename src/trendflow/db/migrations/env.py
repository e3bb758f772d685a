"""Alembic environment: plain SQL migrations, serialized across processes by an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

# Any constant works as long as every trendflow process uses the same one.
MIGRATION_LOCK_KEY = 0x7472656E64  # "trend"


def run_migrations_online() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "", poolclass=None)
    with engine.connect() as connection:
        # Several processes may start at once: the first migrates, the others wait, then find nothing to do.
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


run_migrations_online()
