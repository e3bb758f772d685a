"""The trend shape every read endpoint returns (DESIGN §6)."""

from __future__ import annotations

from typing import Any


def trend_json(row: dict[str, Any]) -> dict[str, Any]:
    body = {
        "id": str(row["id"]),
        "source": row["source"],
        "external_id": row["external_id"],
        "text": row["text"],
        "timestamp": row["timestamp"].isoformat(),
        "topics": list(row["topics"] or []),
        "metadata": row["metadata"],
        "geo": row["geo"],
        "language": row["language"],
        "sentiment": {"score": row["sentiment_score"], "label": row["sentiment_label"]},
        "confidence_score": row["confidence_score"],
        "embedding_status": row["embedding_status"],
        "enrichment_metadata": row["enrichment_metadata"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if "score" in row:
        body["score"] = float(row["score"])
    return body
