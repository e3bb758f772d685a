"""The `trendflow` command as a user runs it: every documented command listed, honest about what is missing,
and `trendflow migrate` against given engines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from trendflow.cli import app
from trendflow.db.migrate import current_revision, head_revision

# DESIGN §6, in the order of its table.
COMMANDS = {
    "up", "demo", "api", "worker", "import", "status", "dlq", "search", "trending", "spool", "reembed", "keys",
    "migrate", "bench",
}  # fmt: skip
SUBCOMMANDS = {
    "worker": {"etl", "embed", "monitor"},
    "dlq": {"list", "show", "replay", "purge"},
    "spool": {"status", "verify", "replay"},
    "keys": {"create", "list", "revoke"},
}
COMMAND_LINE = re.compile(r"^[│|]\s+([a-z][\w-]*)\s", re.MULTILINE)


def trendflow_command() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = shutil.which("trendflow", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "trendflow"]


def run_trendflow(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRENDFLOW_")}
    return subprocess.run(
        [*trendflow_command(), *args],
        cwd=cwd,
        env={**base, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listed_commands(help_text: str) -> set[str]:
    commands_box = help_text.split("Commands", 1)[1]
    return set(COMMAND_LINE.findall(commands_box))


def test_help_lists_every_documented_command(tmp_path: Path) -> None:
    result = run_trendflow("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert listed_commands(result.stdout) == COMMANDS


@pytest.mark.parametrize("group", sorted(SUBCOMMANDS))
def test_help_of_a_group_lists_its_subcommands(group: str) -> None:
    result = CliRunner().invoke(app, [group, "--help"], terminal_width=200, env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert listed_commands(result.output) == SUBCOMMANDS[group]


def test_migrate_creates_the_schema_on_the_given_database(
    tmp_path: Path, empty_database: str, redis_url: str
) -> None:
    data_dir = tmp_path / "data"
    env = {
        "TRENDFLOW_DATABASE_URL": empty_database,
        "TRENDFLOW_REDIS_URL": redis_url,
        "TRENDFLOW_DATA_DIR": str(data_dir),
    }

    result = run_trendflow("migrate", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"revision {head_revision()}" in result.stdout
    assert current_revision(empty_database) == head_revision()
    with psycopg.connect(empty_database) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchall()
        }
    assert {"enriched_trends", "embedding_records", "dead_letters"} <= tables
    assert not data_dir.exists(), "with both URLs given, no embedded engine is started"


def test_migrate_with_a_bad_setting_names_it(tmp_path: Path) -> None:
    result = run_trendflow("migrate", cwd=tmp_path, env={"TRENDFLOW_DATABASE_URL": "mysql://u:pw@x/db"})

    assert result.returncode == 2
    assert "TRENDFLOW_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
