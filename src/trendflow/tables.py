"""Rich tables for the terminal: the read side as `trendflow search`, `trending` and `demo` print it."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def search_table(query: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"semantic search: “{query}”")
    for column, justify in (("score", "right"), ("source", "left"), ("time", "left"), ("text", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(f"{row['score']:.3f}", row["source"], f"{row['timestamp']:%Y-%m-%d %H:%M}", row["text"])
    return table


def trending_table(report: dict[str, Any]) -> Table:
    """A table of `TrendingReport.to_json()`."""
    table = Table(title=f"trending over {report['window']} up to {report['window_end']}")
    for column in ("topic", "count", "baseline", "growth", "score"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for item in report["items"]:
        growth = "new" if item["growth"] is None else f"{item['growth']:.1f}x"
        numbers = (str(item["count"]), f"{item['baseline']:.1f}", growth, f"{item['score']:.2f}")
        table.add_row(item["topic"], *numbers)
    return table
