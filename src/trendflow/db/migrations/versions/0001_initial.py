"""The system of record: enriched trends, their embeddings, and dead letters.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE enriched_trends (
            id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            source              text NOT NULL,
            external_id         text NOT NULL,
            text                text NOT NULL,
            timestamp           timestamptz NOT NULL,
            topics              text[] NOT NULL DEFAULT '{}',
            metadata            jsonb NOT NULL DEFAULT '{}',
            geo                 jsonb,
            language            text,
            sentiment_score     real CHECK (sentiment_score BETWEEN -1 AND 1),
            sentiment_label     text CHECK (sentiment_label IN ('negative', 'neutral', 'positive')),
            confidence_score    real CHECK (confidence_score BETWEEN 0 AND 1),
            enrichment_metadata jsonb NOT NULL DEFAULT '{}',
            content_hash        text NOT NULL,
            embedding_status    text NOT NULL DEFAULT 'pending'
                                CHECK (embedding_status IN ('pending', 'succeeded', 'failed')),
            accepted_at         timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT enriched_trends_identity UNIQUE (source, external_id)
        )
        """
    )
    op.execute("CREATE INDEX enriched_trends_time ON enriched_trends (timestamp DESC, id DESC)")
    op.execute(
        "CREATE INDEX enriched_trends_source_time ON enriched_trends (source, timestamp DESC, id DESC)"
    )
    op.execute("CREATE INDEX enriched_trends_topics ON enriched_trends USING gin (topics)")
    op.execute("CREATE INDEX enriched_trends_content_hash ON enriched_trends (content_hash)")
    op.execute(
        "CREATE INDEX enriched_trends_embedding_backlog ON enriched_trends (created_at)"
        " WHERE embedding_status <> 'succeeded'"
    )
    op.execute(
        """
        CREATE TABLE embedding_records (
            id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            enriched_trend_id uuid NOT NULL REFERENCES enriched_trends (id) ON DELETE CASCADE,
            model             text NOT NULL,
            dim               integer NOT NULL CHECK (dim > 0),
            embedding         vector(384) NOT NULL,
            content_hash      text NOT NULL,
            status            text NOT NULL DEFAULT 'succeeded' CHECK (status IN ('succeeded', 'failed')),
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT embedding_records_one_per_model UNIQUE (enriched_trend_id, model)
        )
        """
    )
    op.execute(
        "CREATE INDEX embedding_records_hnsw ON embedding_records USING hnsw (embedding vector_cosine_ops)"
    )
    op.execute("CREATE INDEX embedding_records_cache ON embedding_records (model, content_hash)")
    op.execute(
        """
        CREATE TABLE dead_letters (
            id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            stage            text NOT NULL CHECK (stage IN ('api', 'etl', 'embed')),
            reason           text NOT NULL,
            error_class      text NOT NULL CHECK (error_class IN ('permanent', 'transient')),
            message          text NOT NULL DEFAULT '',
            payload          bytea NOT NULL,
            payload_hash     text NOT NULL,
            source           text,
            external_id      text,
            stream_id        text,
            deliveries       integer NOT NULL DEFAULT 1 CHECK (deliveries >= 0),
            occurrences      integer NOT NULL DEFAULT 1 CHECK (occurrences >= 1),
            first_seen       timestamptz NOT NULL,
            last_seen        timestamptz NOT NULL,
            CONSTRAINT dead_letters_one_per_payload UNIQUE (stage, payload_hash)
        )
        """
    )
    op.execute("CREATE INDEX dead_letters_recent ON dead_letters (last_seen DESC, id DESC)")
    op.execute("CREATE INDEX dead_letters_reason ON dead_letters (reason, last_seen DESC)")


def downgrade() -> None:
    op.execute("DROP TABLE dead_letters")
    op.execute("DROP TABLE embedding_records")
    op.execute("DROP TABLE enriched_trends")
