"""Metric labels that clients choose are capped."""

from __future__ import annotations

from trendflow import metrics


def test_sources_past_the_cap_share_the_label_other(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(metrics, "_source_labels", set())
    monkeypatch.setattr(metrics, "MAX_SOURCE_LABELS", 3)
    assert [metrics.source_label(s) for s in ("a", "b", "c", "d", "a", "e")] == [
        "a",
        "b",
        "c",
        "other",
        "a",
        "other",
    ]
