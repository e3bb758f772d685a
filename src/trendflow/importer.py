"""`trendflow import FILE`: JSON Lines, a JSON array or CSV, sent through the same ingest path as the API."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from trendflow.config import Settings
from trendflow.domain.models import FieldError
from trendflow.domain.normalize import Limits, parse_event_json
from trendflow.ingest import Ingestor, Received
from trendflow.runtime import open_runtime
from trendflow.spool import Spool


@dataclass
class ImportSummary:
    accepted: int = 0
    spooled: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    identities: list[tuple[str, str]] = field(default_factory=list)  # (source, external_id) accepted

    def print(self, console: Console) -> None:
        console.print(f"accepted {self.accepted} (spooled {self.spooled}), rejected {self.rejected}")
        for reason, count in self.reasons.most_common():
            console.print(f"  {count:>6}  {reason}")
        if self.rejected:
            console.print("rejected events are dead letters (stage api): see `trendflow dlq list`")


def read_events(path: Path, *, default_source: str | None = None) -> Iterator[Received]:
    """Each event of the file with its bytes; the format is told by the extension, or sniffed."""
    data = path.read_bytes()
    head = data.lstrip()[:1]
    if path.suffix.lower() == ".csv":
        rows: Iterator[Received] = _csv_rows(data)
    elif head == b"[":
        parsed = parse_event_json(data)
        rows = iter([(parsed, data)]) if isinstance(parsed, FieldError) else _array_items(parsed)
    else:
        rows = ((parse_event_json(line), line) for line in data.splitlines() if line.strip())
    for parsed, raw in rows:
        if default_source and isinstance(parsed, dict) and not parsed.get("source"):
            parsed = {**parsed, "source": default_source}
        yield parsed, raw


def _array_items(parsed: object) -> Iterator[Received]:
    items = parsed if isinstance(parsed, list) else [parsed]
    for item in items:
        yield item, orjson.dumps(item)


def _csv_rows(data: bytes) -> Iterator[Received]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig", errors="replace")))
    for row in reader:
        event = {k: v for k, v in row.items() if k and v not in (None, "")}
        yield event, orjson.dumps(event)


async def import_events(
    settings: Settings, path: Path, *, default_source: str | None, batch_size: int, console: Console
) -> ImportSummary:
    items = list(read_events(path, default_source=default_source))
    summary = ImportSummary()
    async with open_runtime(settings, pool_size=2) as runtime:
        ingestor = Ingestor(
            runtime.pool, runtime.redis, Spool(settings.spool_path), Limits(max_text_chars=settings.max_text_chars),
            publish_budget_s=settings.ingest_timeout_ms / 1000,
        )  # fmt: skip
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("import", total=len(items))
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                outcome = await ingestor.ingest_events(batch)
                summary.accepted += len(outcome.accepted)
                summary.identities += outcome.accepted
                summary.spooled += outcome.spooled
                summary.rejected += len(outcome.rejected)
                summary.reasons.update(r.errors[0].reason for r in outcome.rejected)
                progress.advance(task, len(batch))
    return summary
