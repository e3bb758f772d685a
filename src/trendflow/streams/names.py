"""Stream, group and field names: one place, so producers and consumers never disagree."""

RAW_STREAM = "trends:raw"
EMBED_STREAM = "trends:embed"
ETL_GROUP = "etl"
EMBED_GROUP = "embedder"

# Fields of a trends:raw entry: the raw event as JSON text, exactly as posted, and (from the API) when it was
# accepted, in epoch milliseconds. Producers writing straight into the stream send only `event`.
EVENT_FIELD = "event"
ACCEPTED_AT_FIELD = "accepted_at"

# Fields of a trends:embed entry.
TREND_ID_FIELD = "trend_id"

GROUPS = {RAW_STREAM: ETL_GROUP, EMBED_STREAM: EMBED_GROUP}
