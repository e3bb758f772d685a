"""Every SQL statement trendflow runs, by name. Identifiers are fixed; values are always parameters."""

# -- trends -----------------------------------------------------------------------------------------------

CREATE_TREND_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS trend_staging (
    source text, external_id text, text text, timestamp timestamptz, topics text[], metadata jsonb,
    geo jsonb, language text, sentiment_score real, sentiment_label text, confidence_score real,
    enrichment_metadata jsonb, content_hash text, accepted_at timestamptz, ord integer
) ON COMMIT DELETE ROWS
"""

COPY_TREND_STAGING = """
COPY trend_staging (source, external_id, text, timestamp, topics, metadata, geo, language, sentiment_score,
    sentiment_label, confidence_score, enrichment_metadata, content_hash, accepted_at, ord) FROM STDIN
"""

# Within a batch the last entry of an identity wins (stream order). A redelivered event rewrites nothing it
# already holds: updated_at moves only when content changes, and a text change sends the row back to
# `pending` so that it is embedded again.
UPSERT_TRENDS_FROM_STAGING = """
INSERT INTO enriched_trends AS t (source, external_id, text, timestamp, topics, metadata, geo, language,
    sentiment_score, sentiment_label, confidence_score, enrichment_metadata, content_hash, accepted_at)
SELECT DISTINCT ON (source, external_id) source, external_id, text, timestamp, topics, metadata, geo, language,
    sentiment_score, sentiment_label, confidence_score, enrichment_metadata, content_hash, accepted_at
FROM trend_staging
ORDER BY source, external_id, ord DESC
ON CONFLICT (source, external_id) DO UPDATE SET
    text = EXCLUDED.text,
    timestamp = EXCLUDED.timestamp,
    topics = EXCLUDED.topics,
    metadata = EXCLUDED.metadata,
    geo = EXCLUDED.geo,
    language = EXCLUDED.language,
    sentiment_score = EXCLUDED.sentiment_score,
    sentiment_label = EXCLUDED.sentiment_label,
    confidence_score = EXCLUDED.confidence_score,
    enrichment_metadata = EXCLUDED.enrichment_metadata,
    content_hash = EXCLUDED.content_hash,
    embedding_status = CASE WHEN t.content_hash = EXCLUDED.content_hash THEN t.embedding_status ELSE 'pending' END,
    accepted_at = CASE WHEN t.content_hash = EXCLUDED.content_hash THEN t.accepted_at ELSE EXCLUDED.accepted_at END,
    updated_at = CASE
        WHEN (t.text, t.timestamp, t.topics, t.metadata, t.geo, t.language, t.sentiment_score, t.sentiment_label,
              t.confidence_score, t.enrichment_metadata)
             IS NOT DISTINCT FROM
             (EXCLUDED.text, EXCLUDED.timestamp, EXCLUDED.topics, EXCLUDED.metadata, EXCLUDED.geo,
              EXCLUDED.language, EXCLUDED.sentiment_score, EXCLUDED.sentiment_label, EXCLUDED.confidence_score,
              EXCLUDED.enrichment_metadata)
        THEN t.updated_at ELSE now() END
RETURNING id, source, external_id, embedding_status
"""

TREND_COLUMNS = """
t.id, t.source, t.external_id, t.text, t.timestamp, t.topics, t.metadata, t.geo, t.language, t.sentiment_score,
t.sentiment_label, t.confidence_score, t.embedding_status, t.enrichment_metadata, t.created_at, t.updated_at
"""

GET_TREND = f"SELECT {TREND_COLUMNS} FROM enriched_trends t WHERE t.id = %(id)s"

COUNT_TRENDS = "SELECT count(*) FROM enriched_trends"

LATEST_EVENT_TIME = "SELECT max(timestamp) FROM enriched_trends"

PROGRESS_OF_IDENTITIES = """
SELECT count(*), count(*) FILTER (WHERE embedding_status = 'succeeded')
FROM enriched_trends
WHERE (source, external_id) IN (SELECT * FROM unnest(%(sources)s::text[], %(external_ids)s::text[]))
"""

# -- embeddings ---------------------------------------------------------------------------------------------

LOAD_TRENDS_TO_EMBED = """
SELECT id, text, content_hash, accepted_at FROM enriched_trends WHERE id = ANY(%(ids)s)
"""

LOAD_CACHED_EMBEDDINGS = """
SELECT DISTINCT ON (content_hash) content_hash, embedding
FROM embedding_records
WHERE model = %(model)s AND content_hash = ANY(%(hashes)s)
"""

CREATE_EMBEDDING_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS embedding_staging (
    trend_id uuid, embedding vector, content_hash text
) ON COMMIT DELETE ROWS
"""

COPY_EMBEDDING_STAGING = (
    "COPY embedding_staging (trend_id, embedding, content_hash) FROM STDIN (FORMAT BINARY)"
)

UPSERT_EMBEDDINGS_FROM_STAGING = """
INSERT INTO embedding_records (enriched_trend_id, model, dim, embedding, content_hash)
SELECT trend_id, %(model)s, vector_dims(embedding), embedding, content_hash FROM embedding_staging
ON CONFLICT (enriched_trend_id, model) DO UPDATE SET
    embedding = EXCLUDED.embedding,
    dim = EXCLUDED.dim,
    content_hash = EXCLUDED.content_hash,
    status = 'succeeded',
    updated_at = now()
WHERE embedding_records.content_hash IS DISTINCT FROM EXCLUDED.content_hash
"""

# Only rows whose text is still the one embedded are marked: a newer text waits for its own job.
MARK_EMBEDDED = """
UPDATE enriched_trends t SET embedding_status = 'succeeded'
FROM embedding_records e
WHERE e.enriched_trend_id = t.id AND e.model = %(model)s AND e.content_hash = t.content_hash
  AND t.id = ANY(%(ids)s) AND t.embedding_status <> 'succeeded'
RETURNING t.id, t.accepted_at
"""

EMBEDDING_BACKLOG = "SELECT count(*) FROM enriched_trends WHERE embedding_status <> 'succeeded'"

# For agents polling for new material: when the newest trend was stored and the newest embedding written.
LATEST_ACTIVITY = """
SELECT (SELECT max(created_at) FROM enriched_trends), (SELECT max(updated_at) FROM embedding_records)
"""

# -- dead letters -------------------------------------------------------------------------------------------

UPSERT_DEAD_LETTER = """
INSERT INTO dead_letters AS d (stage, reason, error_class, message, payload, payload_hash, source, external_id,
    stream_id, deliveries, first_seen, last_seen)
VALUES (%(stage)s, %(reason)s, %(error_class)s, %(message)s, %(payload)s, %(payload_hash)s, %(source)s,
    %(external_id)s, %(stream_id)s, %(deliveries)s, %(now)s, %(now)s)
ON CONFLICT (stage, payload_hash) DO UPDATE SET
    reason = EXCLUDED.reason,
    error_class = EXCLUDED.error_class,
    message = EXCLUDED.message,
    stream_id = COALESCE(EXCLUDED.stream_id, d.stream_id),
    deliveries = GREATEST(d.deliveries, EXCLUDED.deliveries),
    occurrences = d.occurrences + 1,
    last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen)
RETURNING id, (xmax = 0) AS created
"""

DEAD_LETTER_COLUMNS = """
id, stage, reason, error_class, message, payload, source, external_id, stream_id, deliveries, occurrences,
first_seen, last_seen
"""

GET_DEAD_LETTER = f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = %(id)s"

DELETE_DEAD_LETTER = "DELETE FROM dead_letters WHERE id = %(id)s"

COUNT_DEAD_LETTERS = "SELECT count(*) FROM dead_letters"

MIGRATION_REVISION = "SELECT version_num FROM alembic_version"

# -- search -------------------------------------------------------------------------------------------------

# Both per transaction. ef_search widens the HNSW candidate list; pgvector 0.8's iterative scan keeps walking
# the graph until the filters have let k rows through, so a selective filter still yields k rows.
SET_HNSW_EF_SEARCH = "SET LOCAL hnsw.ef_search = {ef_search}"

SET_HNSW_ITERATIVE_SCAN = "SET LOCAL hnsw.iterative_scan = relaxed_order"

# {where} always holds `e.model = %(model)s`, then the read side's filters. relaxed_order may hand rows back
# slightly out of order, so the materialized inner scan is sorted again by exact distance.
NEAREST_FILTERED = """
WITH nearest AS MATERIALIZED (
    SELECT {columns}, e.embedding <=> %(vector)s AS distance
    FROM embedding_records e JOIN enriched_trends t ON t.id = e.enriched_trend_id
    WHERE {where}
    ORDER BY distance
    LIMIT %(k)s
)
SELECT *, 1 - distance AS score FROM nearest ORDER BY distance, id
"""

# No row: no such trend. A NULL embedding: the trend's current text has no vector from this model yet.
TREND_EMBEDDING = """
SELECT e.embedding
FROM enriched_trends t
LEFT JOIN embedding_records e
    ON e.enriched_trend_id = t.id AND e.model = %(model)s AND e.content_hash = t.content_hash
WHERE t.id = %(id)s
"""

# -- dead letters: listing, replay and purge ----------------------------------------------------------------

# {where} is composed in db/dead_letters.py from fixed conditions with psycopg's sql module.
LIST_DEAD_LETTERS = f"""
SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters{{where}} ORDER BY last_seen DESC, id DESC LIMIT %(limit)s
"""

# Oldest first, so that a bulk replay walks forward through the time range; {lock} is empty for a dry run.
SELECT_DEAD_LETTERS_TO_REPLAY = f"""
SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters{{where}} ORDER BY last_seen, id LIMIT %(limit)s{{lock}}
"""

LOCK_DEAD_LETTER = f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = %(id)s FOR UPDATE"

# A replay that still fails keeps the letter and says why it fails now; when it was last seen does not move.
MARK_DEAD_LETTER_STILL_FAILING = """
UPDATE dead_letters SET reason = %(reason)s, message = %(message)s, error_class = %(error_class)s
WHERE id = %(id)s
"""

DELETE_DEAD_LETTERS = "DELETE FROM dead_letters WHERE id = ANY(%(ids)s)"

PURGE_DEAD_LETTERS = "DELETE FROM dead_letters{where}"

COUNT_MATCHING_DEAD_LETTERS = "SELECT count(*) FROM dead_letters{where}"

EXISTING_TRENDS = "SELECT id FROM enriched_trends WHERE id = ANY(%(ids)s)"

# -- topic volumes (trending) -------------------------------------------------------------------------------

# topic_volumes is kept by triggers on enriched_trends (migration 0002); these statements only read and prune.
# `%(source)s` NULL means every source.

FIRST_VOLUME_BUCKET = "SELECT min(bucket_start) FROM topic_volumes"

# Events per topic and window (named by its start; windows without events are absent), for the topics with
# at least `min_support` events in the current window [start, end). One pass over the buckets, no join.
TOPIC_WINDOW_VOLUMES = """
WITH per_window AS (
    SELECT topic, date_bin(%(window)s, bucket_start, %(history_start)s) AS window_start, sum(count)::bigint AS n
    FROM topic_volumes
    WHERE bucket_start >= %(history_start)s AND bucket_start < %(end)s
      AND (%(source)s::text IS NULL OR source = %(source)s::text)
    GROUP BY topic, window_start
)
SELECT topic, window_start, n
FROM (
    SELECT topic, window_start, n,
           sum(n) FILTER (WHERE window_start = %(start)s) OVER (PARTITION BY topic) AS current
    FROM per_window
) AS w
WHERE current >= %(min_support)s
"""

# The newest few events of each topic in [start, end).
TOPIC_SAMPLE_IDS = """
SELECT topic, ARRAY(
    SELECT t.id FROM enriched_trends t
    WHERE t.topics @> ARRAY[topic] AND t.timestamp >= %(start)s AND t.timestamp < %(end)s
      AND (%(source)s::text IS NULL OR t.source = %(source)s::text)
    ORDER BY t.timestamp DESC, t.id DESC
    LIMIT %(per_topic)s
) AS ids
FROM unnest(%(topics)s::text[]) AS topic
"""

TOPIC_RANGE_COUNTS = """
SELECT topic, sum(n)::bigint AS count, jsonb_object_agg(source, n) AS sources
FROM (
    SELECT topic, source, sum(count)::bigint AS n
    FROM topic_volumes
    WHERE bucket_start >= %(since)s AND bucket_start < %(until)s
      AND (%(source)s::text IS NULL OR source = %(source)s::text)
    GROUP BY topic, source
) AS per_source
GROUP BY topic
ORDER BY count DESC, topic
LIMIT %(limit)s
"""

PRUNE_TOPIC_VOLUMES = "DELETE FROM topic_volumes WHERE bucket_start < %(before)s"

# -- api keys -----------------------------------------------------------------------------------------------

INSERT_API_KEY = """
INSERT INTO api_keys (name, key_hash, sources, created_at)
VALUES (%(name)s, %(key_hash)s, %(sources)s, %(now)s)
RETURNING id, name, sources, created_at, revoked_at
"""

LIST_API_KEYS = """
SELECT id, name, sources, created_at, revoked_at FROM api_keys ORDER BY created_at, id
"""

ACTIVE_API_KEY_HASHES = "SELECT id, key_hash, sources FROM api_keys WHERE revoked_at IS NULL"

REVOKE_API_KEY = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, %(now)s) WHERE id = %(id)s
RETURNING id, name, sources, created_at, revoked_at
"""

# -- re-embedding ---------------------------------------------------------------------------------------------

# Trends with no embedding of their current text by this model, oldest first, after a keyset position.
REEMBED_CANDIDATES = """
SELECT t.id, t.text, t.content_hash, t.accepted_at, t.created_at
FROM enriched_trends t
WHERE NOT EXISTS (
        SELECT 1 FROM embedding_records e
        WHERE e.enriched_trend_id = t.id AND e.model = %(model)s AND e.content_hash = t.content_hash)
  AND (%(since)s::timestamptz IS NULL OR t.timestamp >= %(since)s::timestamptz)
  AND (t.created_at, t.id) > (%(after_created)s, %(after_id)s)
ORDER BY t.created_at, t.id
LIMIT %(limit)s
"""

COUNT_REEMBED_CANDIDATES = """
SELECT count(*)
FROM enriched_trends t
WHERE NOT EXISTS (
        SELECT 1 FROM embedding_records e
        WHERE e.enriched_trend_id = t.id AND e.model = %(model)s AND e.content_hash = t.content_hash)
  AND (%(since)s::timestamptz IS NULL OR t.timestamp >= %(since)s::timestamptz)
"""
