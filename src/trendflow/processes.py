"""`trendflow up`: one process per role, started, watched and stopped together."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger()

UP_ROLES: tuple[tuple[str, ...], ...] = (
    ("api",),
    ("worker", "etl"),
    ("worker", "embed"),
    ("worker", "monitor"),
)


def multiprocess_metrics_env(data_dir: Path) -> dict[str, str]:
    """The children's environment, with a fresh prometheus multiprocess dir so /metrics covers the whole tree."""
    metrics_dir = data_dir.resolve() / "metrics" / str(os.getpid())
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}


@dataclass
class ProcessTree:
    """Children running `python -m trendflow <role>`; a child that dies is restarted, SIGTERM stops them all."""

    roles: Sequence[tuple[str, ...]] = UP_ROLES
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    children: dict[tuple[str, ...], subprocess.Popen] = field(default_factory=dict)

    def start(self) -> None:
        for role in self.roles:
            self.children[role] = self._spawn(role)

    def _spawn(self, role: tuple[str, ...]) -> subprocess.Popen:
        log.info("process_started", role=" ".join(role))
        return subprocess.Popen([sys.executable, "-m", "trendflow", *role], env=self.env)

    def restart_dead(self) -> None:
        for role, child in list(self.children.items()):
            if child.poll() is not None:
                log.warning("process_died_restarting", role=" ".join(role), exit_code=child.returncode)
                if "PROMETHEUS_MULTIPROC_DIR" in self.env:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(child.pid, self.env["PROMETHEUS_MULTIPROC_DIR"])
                self.children[role] = self._spawn(role)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every child (each finishes its batch in hand), then wait; SIGKILL what outlives the timeout."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
