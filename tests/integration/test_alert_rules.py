"""The Prometheus alert rules are valid, and each fires on its shape and not on the healthy look-alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

# CI installs promtool (.ci/run), so there a missing promtool is a failure, not a skip.
pytestmark = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (Debian: apt-get update && apt-get install -y prometheus); CI installs it",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_rules_are_valid_and_cover_every_alert() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout


def test_every_alert_has_a_runbook_and_a_unit_test() -> None:
    rules = (RULES_DIR / "alerts.yml").read_text()
    tests = (RULES_DIR / "alerts_test.yml").read_text()
    alerts = re.findall(r"^\s*- alert: (\w+)$", rules, flags=re.MULTILINE)
    assert len(alerts) == 6
    assert rules.count("runbook: ") == len(alerts)
    assert [a for a in alerts if f"alertname: {a}" not in tests] == []


def test_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
