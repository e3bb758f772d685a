"""Prometheus metrics, all named trendflow_*.

Under `trendflow up` every child writes its samples to PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode), so the API's /metrics answers for the whole process tree.
"""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Sources are named by clients: past this many distinct ones, new sources share the label "other", so that a
# client cannot grow the metrics without bound.
MAX_SOURCE_LABELS = 200
_source_labels: set[str] = set()


def source_label(source: str) -> str:
    if source in _source_labels or len(_source_labels) < MAX_SOURCE_LABELS:
        _source_labels.add(source)
        return source
    return "other"


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

# Gauges read from the engines when /metrics is scraped (exact, from XINFO and PostgreSQL counts).
STREAM_LENGTH = Gauge(
    "trendflow_stream_length", "Entries in a stream", ["stream"], multiprocess_mode="mostrecent"
)
STREAM_LAG = Gauge(
    "trendflow_stream_lag",
    "Entries not yet delivered to a consumer group",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
STREAM_PENDING = Gauge(
    "trendflow_stream_pending",
    "Entries delivered but not acknowledged",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
CONSUMER_IDLE_SECONDS = Gauge(
    "trendflow_consumer_idle_seconds",
    "Time since a consumer last read",
    ["stream", "group", "consumer"],
    multiprocess_mode="mostrecent",
)
DEAD_LETTERS_STORED = Gauge(
    "trendflow_dead_letters_stored", "Dead letters held in PostgreSQL", multiprocess_mode="mostrecent"
)
SPOOL_EVENTS = Gauge(
    "trendflow_spool_events", "Events waiting in the fallback spool", multiprocess_mode="mostrecent"
)
SPOOL_BYTES = Gauge("trendflow_spool_bytes", "Size of the fallback spool", multiprocess_mode="mostrecent")
EMBEDDING_BACKLOG = Gauge(
    "trendflow_embedding_backlog",
    "Stored trends whose embedding is not stored yet",
    multiprocess_mode="mostrecent",
)


def export_status(status: dict) -> None:
    """Copy an ops status document (trendflow.status.collect_status) into the gauges."""
    CONSUMER_IDLE_SECONDS.clear()
    for stream, info in status["streams"].items():
        STREAM_LENGTH.labels(stream=stream).set(info["length"])
        for group, g in info["groups"].items():
            STREAM_LAG.labels(stream=stream, group=group).set(g["lag"])
            STREAM_PENDING.labels(stream=stream, group=group).set(g["pending"])
            for consumer in g["consumers"]:
                CONSUMER_IDLE_SECONDS.labels(stream=stream, group=group, consumer=consumer["name"]).set(
                    consumer["idle_ms"] / 1000
                )
    DEAD_LETTERS_STORED.set(status["dead_letters"])
    SPOOL_EVENTS.set(status["spool"]["events"])
    SPOOL_BYTES.set(status["spool"]["bytes"])
    EMBEDDING_BACKLOG.set(status["embedding_backlog"])


def render_metrics() -> bytes:
    """The text exposition: of this process, or of every process of the tree in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def serve_metrics(port: int) -> None:
    """Expose this worker's metrics on http://0.0.0.0:PORT/metrics (`--metrics-port`)."""
    from prometheus_client import start_http_server

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)
