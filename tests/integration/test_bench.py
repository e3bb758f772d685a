"""`trendflow bench` end to end on a tiny run: the report's shape and its numbers' sense, never their speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson

from trendflow.bench import BenchPlan, bench_payloads, cpu_model, load_corpus

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_short_corpus_still_gives_distinct_texts(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("sun is out\n\n  sun is out  \nrain again\n", encoding="utf-8")
    texts = load_corpus(corpus)
    assert texts == ["sun is out", "rain again"]

    events = [orjson.loads(p) for p in bench_payloads(texts, 5, source="bench", start=START)]
    assert [e["text"] for e in events] == [
        "sun is out", "rain again", "sun is out (1)", "rain again (1)", "sun is out (2)",
    ]  # fmt: skip
    assert [e["external_id"] for e in events] == [0, 1, 2, 3, 4]


def test_quick_plan_and_explicit_sizes() -> None:
    assert BenchPlan.of(quick=True) == BenchPlan(
        events=20_000, embed_texts=1_024, e2e_seconds=10.0, search_vectors=10_000, search_embed_s=15.0
    )
    assert BenchPlan.of(quick=False).search_vectors == 100_000
    tiny = BenchPlan.of(quick=True, events=100, e2e_seconds=0, search_vectors=0)
    assert (tiny.events, tiny.embed_texts, tiny.e2e_seconds, tiny.search_vectors) == (100, 100, 0, 0)


def test_cpu_model_is_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000 @ 3.00GHz\nflags\t: fpu\n")
    assert cpu_model(cpuinfo) == "Example CPU 9000 @ 3.00GHz"


def test_tiny_bench_reports_every_stage_beside_its_limit(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(f"tweet {i} about #topic{i % 7} in Paris" for i in range(150)), encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "trendflow", "bench", "--json", "--events", "200", "--e2e-seconds", "2",
         "--search-vectors", "300", "--corpus", str(corpus)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert set(report["machine"]) >= {"cores", "cpu_model", "python", "torch"}
    assert report["machine"]["cores"] >= 1
    stages = report["stages"]
    assert set(stages) == {"ingest", "etl", "embed", "e2e", "search"}
    for name in ("ingest", "etl", "embed"):
        stage = stages[name]
        assert set(stage) >= {"events_per_s", "limit_per_s", "ratio"}
        assert stage["events_per_s"] > 0 and stage["limit_per_s"] > 0 and stage["ratio"] > 0
        assert abs(stage["ratio"] - stage["events_per_s"] / stage["limit_per_s"]) < 0.01
    e2e = stages["e2e"]
    assert e2e["events"] == 200
    assert 0 < e2e["p50_s"] <= e2e["p99_s"]
    search = stages["search"]
    # 150 texts cannot hold 200 queries out and still fill 300 vectors: both are perturbed copies.
    assert (search["vectors"], search["queries"]) == (300, 200)
    assert (search["vector_source"], search["query_source"], search["model_vectors"]) == (
        "perturbed",
        "perturbed",
        150,
    )
    assert search["ef_search"] == 200  # the default TRENDFLOW_HNSW_EF_SEARCH
    assert 0 < search["p50_ms"] <= search["p99_ms"] and search["exact_p50_ms"] > 0
    assert 0 <= search["recall_at_10"] <= 1 and search["query_embed_p50_ms"] > 0
