"""Topic volumes: events per topic, source and 5-minute bucket of event time, kept exact by triggers.

Triggers on enriched_trends turn every INSERT, UPDATE and DELETE into per-bucket deltas (the old row's
topics subtracted, the new row's added) in the writer's own transaction; existing rows are backfilled.
See specs/trending.md.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# {changes} yields (source, timestamp, topics, sign) rows; one contribution per distinct topic of each.
_CONTRIBUTIONS = """
    SELECT t.topic, c.source, c.sign,
           date_bin('5 minutes', c.timestamp, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket_start
    FROM ({changes}) AS c (source, timestamp, topics, sign)
    CROSS JOIN LATERAL (SELECT DISTINCT unnest(c.topics) AS topic) AS t
"""

# Contributions summed per bucket, zeros dropped, as one topic_volume_delta[] (NULL when nothing changes).
_DELTAS = """
    SELECT array_agg(ROW(topic, source, bucket_start, delta)::topic_volume_delta)
    FROM (
        SELECT topic, source, bucket_start, sum(sign)::bigint AS delta
        FROM ({contributions}) AS contributions
        GROUP BY topic, source, bucket_start
        HAVING sum(sign) <> 0
    ) AS d
"""


def _deltas(changes: str) -> str:
    return _DELTAS.format(contributions=_CONTRIBUTIONS.format(changes=changes))


# Statement level, over the transition table: one pass per batch, however many rows it holds. Inserts only
# add, so they go straight in (in key order, so that concurrent writers take row locks in the same order).
_TRACK_ROWS = f"""
CREATE FUNCTION track_topic_volumes_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas topic_volume_delta[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO topic_volumes AS v (topic, source, bucket_start, count)
        SELECT topic, source, bucket_start, sum(sign)
        FROM ({_CONTRIBUTIONS.format(changes="SELECT source, timestamp, topics, 1 FROM new_rows")}) AS c
        GROUP BY topic, source, bucket_start
        ORDER BY topic, source, bucket_start
        ON CONFLICT (topic, source, bucket_start) DO UPDATE SET count = v.count + EXCLUDED.count;
    ELSE
        {_deltas("SELECT source, timestamp, topics, -1 FROM old_rows")} INTO deltas;
        IF deltas IS NOT NULL THEN
            PERFORM apply_topic_volume_deltas(deltas);
        END IF;
    END IF;
    RETURN NULL;
END
$$
"""

# Row level, and only for rows whose counted columns changed (the trigger's WHEN): a redelivered event
# rewrites its row but never reaches this function.
_TRACK_CHANGE = f"""
CREATE FUNCTION track_topic_volumes_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas topic_volume_delta[];
BEGIN
    {_deltas("VALUES (OLD.source, OLD.timestamp, OLD.topics, -1), (NEW.source, NEW.timestamp, NEW.topics, 1)")}
    INTO deltas;
    IF deltas IS NOT NULL THEN
        PERFORM apply_topic_volume_deltas(deltas);
    END IF;
    RETURN NULL;
END
$$
"""

# Additions go in key order, so that concurrent writers take row locks in the same order. A subtraction
# from a bucket that is gone (pruned by retention) finds nothing to subtract from; empty buckets are removed.
_APPLY = """
CREATE FUNCTION apply_topic_volume_deltas(deltas topic_volume_delta[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO topic_volumes AS v (topic, source, bucket_start, count)
    SELECT topic, source, bucket_start, delta FROM unnest(deltas) WHERE delta > 0
    ORDER BY topic, source, bucket_start
    ON CONFLICT (topic, source, bucket_start) DO UPDATE SET count = v.count + EXCLUDED.count;

    UPDATE topic_volumes AS v SET count = greatest(v.count + d.delta, 0)
    FROM unnest(deltas) AS d
    WHERE d.delta < 0 AND v.topic = d.topic AND v.source = d.source AND v.bucket_start = d.bucket_start;

    DELETE FROM topic_volumes AS v
    USING unnest(deltas) AS d
    WHERE d.delta < 0 AND v.count = 0
      AND v.topic = d.topic AND v.source = d.source AND v.bucket_start = d.bucket_start;
$$
"""

_CLEAR = """
CREATE FUNCTION clear_topic_volumes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE topic_volumes;
    RETURN NULL;
END
$$
"""

_TRIGGERS = {
    "topic_volumes_on_insert": "AFTER INSERT ON enriched_trends REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION track_topic_volumes_rows()",
    "topic_volumes_on_delete": "AFTER DELETE ON enriched_trends REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION track_topic_volumes_rows()",
    "topic_volumes_on_update": "AFTER UPDATE OF source, timestamp, topics ON enriched_trends FOR EACH ROW"
    " WHEN ((OLD.source, OLD.timestamp, OLD.topics) IS DISTINCT FROM (NEW.source, NEW.timestamp, NEW.topics))"
    " EXECUTE FUNCTION track_topic_volumes_change()",
    "topic_volumes_on_truncate": "AFTER TRUNCATE ON enriched_trends"
    " FOR EACH STATEMENT EXECUTE FUNCTION clear_topic_volumes()",
}

_BACKFILL = f"""
INSERT INTO topic_volumes (topic, source, bucket_start, count)
SELECT topic, source, bucket_start, sum(sign)
FROM ({_CONTRIBUTIONS.format(changes="SELECT source, timestamp, topics, 1 FROM enriched_trends")}) AS c
GROUP BY topic, source, bucket_start
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE topic_volumes (
            topic        text NOT NULL,
            source       text NOT NULL,
            bucket_start timestamptz NOT NULL,
            count        bigint NOT NULL CHECK (count >= 0),
            PRIMARY KEY (topic, source, bucket_start)
        )
        """
    )
    op.execute("CREATE INDEX topic_volumes_time ON topic_volumes (bucket_start)")
    op.execute(
        "CREATE TYPE topic_volume_delta AS (topic text, source text, bucket_start timestamptz, delta bigint)"
    )
    for function in (_APPLY, _TRACK_ROWS, _TRACK_CHANGE, _CLEAR):
        op.execute(function)
    # The triggers come before the backfill: CREATE TRIGGER locks writers out of enriched_trends until this
    # transaction commits, so no row is written between the backfill's snapshot and the triggers taking over.
    for name, definition in _TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {definition}")
    op.execute(_BACKFILL)


def downgrade() -> None:
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON enriched_trends")
    op.execute("DROP FUNCTION clear_topic_volumes()")
    op.execute("DROP FUNCTION track_topic_volumes_change()")
    op.execute("DROP FUNCTION track_topic_volumes_rows()")
    op.execute("DROP FUNCTION apply_topic_volume_deltas(topic_volume_delta[])")
    op.execute("DROP TYPE topic_volume_delta")
    op.execute("DROP TABLE topic_volumes")
