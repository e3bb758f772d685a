"""Prometheus metrics, all named trendflow_*; one registry per process (multiprocess-aware under `up`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVENTS_ACCEPTED = Counter(
    "trendflow_events_accepted_total", "Events accepted by the API or import", ["source"]
)
EVENTS_REJECTED = Counter("trendflow_events_rejected_total", "Events refused at ingest", ["reason"])
EVENTS_SPOOLED = Counter("trendflow_events_spooled_total", "Events written to the fallback spool", ["source"])
EVENTS_STORED = Counter("trendflow_events_stored_total", "Events upserted into enriched_trends by the ETL")
EVENTS_EMBEDDED = Counter("trendflow_events_embedded_total", "Trends whose embedding was stored")
DEAD_LETTERS = Counter("trendflow_dead_letters_total", "Payloads dead-lettered", ["stage", "reason"])
INGEST_PUBLISH_SECONDS = Histogram(
    "trendflow_ingest_publish_seconds",
    "Time to publish one ingest request to the stream",
    buckets=LATENCY_BUCKETS,
)
ETL_BATCH_SECONDS = Histogram(
    "trendflow_etl_batch_seconds", "Time to process one ETL batch", buckets=LATENCY_BUCKETS
)
EMBED_BATCH_SECONDS = Histogram(
    "trendflow_embed_batch_seconds", "Time to process one embedding batch", buckets=LATENCY_BUCKETS
)
MODEL_BATCH_SIZE = Histogram(
    "trendflow_model_batch_size", "Texts per model call", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
)
TIME_TO_SEARCHABLE_SECONDS = Histogram(
    "trendflow_time_to_searchable_seconds",
    "From the API accepting an event to its embedding being stored",
    buckets=(*LATENCY_BUCKETS, 60.0, 300.0),
)
