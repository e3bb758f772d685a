"""API keys issued at run time: only the SHA-256 hash of each key is stored, never the key itself.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name       text,
            key_hash   text NOT NULL UNIQUE,
            sources    text[],
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
