"""`trendflow import`: the three file formats, through the same ingest path as the API, on real engines."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis as sync_redis
from rich.console import Console

from trendflow.config import Settings
from trendflow.domain.models import FieldError
from trendflow.importer import import_events, read_events
from trendflow.streams import names

EVENTS = [
    {
        "external_id": 1,
        "source": "files",
        "text": "first",
        "timestamp": "2026-03-01T10:00:00Z",
        "topics": "a,b",
    },
    {"external_id": 2, "text": "no source given", "timestamp": 1772358000},
    {"external_id": 3, "source": "files", "timestamp": "2026-03-01T10:00:00Z"},  # no text: rejected
]


def write_formats(tmp_path: Path) -> dict[str, Path]:
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(b"\n".join(orjson.dumps(e) for e in EVENTS) + b"\n\nnot json\n")
    array = tmp_path / "events.json"
    array.write_bytes(orjson.dumps(EVENTS))
    csv = tmp_path / "events.csv"
    csv.write_text(
        "external_id,source,text,timestamp,topics\n"
        '1,files,first,2026-03-01T10:00:00Z,"a,b"\n'
        "2,,no source given,1772358000,\n"
        "3,files,,2026-03-01T10:00:00Z,\n"
    )
    return {"jsonl": jsonl, "json": array, "csv": csv}


def test_each_format_yields_every_event_with_the_default_source(tmp_path: Path) -> None:
    for kind, path in write_formats(tmp_path).items():
        items = list(read_events(path, default_source="fallback"))
        parsed = [p for p, _ in items if not isinstance(p, FieldError)]
        assert [str(p["external_id"]) for p in parsed] == ["1", "2", "3"], kind  # type: ignore[index]
        assert parsed[1]["source"] == "fallback", kind  # type: ignore[index]
        assert parsed[0]["source"] == "files", kind  # type: ignore[index]
    broken = [p for p, _ in read_events(write_formats(tmp_path)["jsonl"]) if isinstance(p, FieldError)]
    assert [e.reason for e in broken] == ["bad_json"]


async def test_import_publishes_accepted_and_summarizes_rejected(tmp_path: Path, settings: Settings) -> None:
    path = write_formats(tmp_path)["jsonl"]
    summary = await import_events(
        settings, path, default_source="fallback", batch_size=2, console=Console(quiet=True)
    )
    assert (summary.accepted, summary.spooled, summary.rejected) == (2, 0, 2)
    assert summary.reasons == {"missing_field:text": 1, "bad_json": 1}
    assert summary.identities == [("files", "1"), ("fallback", "2")]
    with sync_redis.Redis.from_url(settings.redis_url) as r:  # type: ignore[arg-type]
        entries = r.xrange(names.RAW_STREAM)
    assert [orjson.loads(fields[b"event"])["external_id"] for _, fields in entries] == [1, 2]
