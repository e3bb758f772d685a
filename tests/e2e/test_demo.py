"""`trendflow demo` (what `make demo` runs) from start to exit, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.harness import wait_for
from trendflow.engines import engine_processes

pytestmark = pytest.mark.e2e


def test_demo_prints_the_burst_and_a_search_then_leaves_nothing_running() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="trendflow-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDFLOW_")}
    env["TRENDFLOW_DATA_DIR"] = str(data_dir)
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "trendflow", "demo"], env=env, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "accepted 262 (spooled 0), rejected 3" in out
    topics_table = out[out.index("trending over 1h") :]
    first_row = next(line for line in topics_table.splitlines() if line.startswith("│"))
    assert "solareclipse" in first_row or "space" in first_row, topics_table
    assert "semantic search" in out and "eclipse" in out[out.index("semantic search") :]
    wait_for(lambda: not engine_processes(data_dir), timeout_s=30, what="the demo's engines to stop")
