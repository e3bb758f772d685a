"""Real processes for end-to-end tests: `trendflow up` (or single roles) on a throwaway data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    check: Callable[[], T | None], *, timeout_s: float = 120.0, interval_s: float = 0.2, what: str = ""
) -> T:
    """Poll `check` until it returns something truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s:.0f} s waiting for {what or check.__name__} (last: {last!r})"
    )


@dataclass
class Pipeline:
    """A running trendflow process tree; `env` is what every process of the test gets."""

    data_dir: Path
    port: int
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def create(cls, **settings: str) -> Pipeline:
        # Not under pytest's tmp_path: as root, the embedded PostgreSQL runs as its own user and needs the path.
        data_dir = Path(tempfile.mkdtemp(prefix="trendflow-e2e-"))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDFLOW_")}
        env.update(
            TRENDFLOW_DATA_DIR=str(data_dir),
            TRENDFLOW_API_PORT=str(port),
            TRENDFLOW_LOG_LEVEL="info",
            **settings,
        )
        return cls(data_dir, port, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> subprocess.Popen:
        """Start `trendflow ARGS...` (e.g. "up", or "worker", "etl") as a real process."""
        log = open(self.data_dir / f"{'-'.join(args)}-{len(self.processes)}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "trendflow", *args], env=self.env, stdout=log, stderr=log
        )
        self.processes.append(proc)
        return proc

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s=timeout_s, what="the API to be ready")

    def database_url(self) -> str:
        """The embedded PostgreSQL's URL, read from the supervisor's state file."""
        return str(json.loads((self.data_dir / "engines" / "state.json").read_text())["database_url"])

    def redis_url(self) -> str:
        return str(json.loads((self.data_dir / "engines" / "state.json").read_text())["redis_url"])

    def query(self, sql: str, params: Any = None) -> list[tuple]:
        with psycopg.connect(self.database_url(), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self, timeout_s: float = 60.0) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-5000:] for p in sorted(self.data_dir.glob("*.log")))


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that records every JSON body POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
