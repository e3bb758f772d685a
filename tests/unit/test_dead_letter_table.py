"""`trendflow dlq list` as a table: legible at 80 columns, the payload preview only where there is room."""

from __future__ import annotations

import io

from rich.console import Console

from trendflow.cli import dead_letter_table

ITEMS = [
    {
        "id": "a08bf70b-b09d-4f31-ab00-bab343c46070",
        "stage": "api",
        "reason": "missing_field:external_id",
        "occurrences": 3,
        "last_seen": "2026-03-01T10:15:00+00:00",
        "payload": '{"source":"web","text":"x"}',
        "payload_encoding": "utf-8",
    },
    {
        "id": "8f7593ce-61a0-4fb8-afd1-bcd9e0d4a5a7",
        "stage": "etl",
        "reason": "bad_json",
        "occurrences": 1,
        "last_seen": "2026-03-01T09:00:00+00:00",
        "payload": "bm90IGpzb24=",
        "payload_encoding": "base64",
    },
]


def render(width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(dead_letter_table(ITEMS, more=False, width=width))
    return console.export_text().splitlines()


def test_at_80_columns_every_id_stage_reason_and_count_is_shown() -> None:
    lines = render(80)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert ITEMS[0]["id"] in text and ITEMS[1]["id"] in text  # whole: they are copied into `dlq show`
    assert "etl" in text and "bad_json" in text and "3×" in text and "03-01 10:15" in text
    header = next(line for line in lines if line.startswith("id "))
    reason = slice(header.index("reason"), header.index("seen"))
    folded = "".join(line[reason].strip() for line in lines[lines.index(header) + 2 :])
    assert folded == "missing_field:external_idbad_json"  # a long reason folds onto a second line, whole
    assert "payload" not in text


def test_a_wide_console_also_previews_the_payload() -> None:
    text = "\n".join(render(160))
    assert "payload" in text and '{"source":"web","text":"x"}' in text and "base64:bm90IGpzb24=" in text
    assert "2026-03-01 10:15" in text
