"""The `trendflow` command. Thin: each command calls the same service functions as the API."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from trendflow.config import Settings, load_settings
from trendflow.errors import ConfigError, NotBuiltError, TrendflowError
from trendflow.logs import configure_logging

app = typer.Typer(help="trendflow: ingest, enrich, store, embed and rank social-media trend events.", no_args_is_help=True)
worker_app = typer.Typer(help="Run one worker role in this process.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead letters.", no_args_is_help=True)
spool_app = typer.Typer(help="The fallback spool used while Redis is unreachable.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys issued at run time.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
app.add_typer(dlq_app, name="dlq")
app.add_typer(spool_app, name="spool")
app.add_typer(keys_app, name="keys")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """The one error handler: trendflow's exceptions become a clean message and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            err_console.print(f"[red]configuration error:[/red] {exc}")
            raise typer.Exit(2) from None
        except NotBuiltError as exc:
            err_console.print(f"[yellow]not built yet:[/yellow] {exc}")
            raise typer.Exit(2) from None
        except TrendflowError as exc:
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    loaded = load_settings()
    configure_logging(loaded.log_level)
    return loaded


def not_built(command: str, issue: str) -> None:
    raise NotBuiltError(f"`trendflow {command}` is not built yet ({issue}); nothing was done.")


# -- processes ----------------------------------------------------------------------------------------------


@app.command()
@handles_errors
def up() -> None:
    """API + ETL + embed + monitor in one process tree, on the embedded engines when no URLs are set."""
    from trendflow.processes import ProcessTree
    from trendflow.runtime import prepare_database

    config = settings()
    prepare_database(config)  # start (or join) the engines and migrate once, before the children race to
    tree = ProcessTree()
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    tree.start()
    console.print(f"trendflow is up: API on http://{config.api_host}:{config.api_port} (Ctrl-C stops everything)")
    while not stopping:
        time.sleep(0.5)
        tree.restart_dead()
    console.print("stopping: each process finishes its batch in hand")
    tree.stop()


@app.command()
@handles_errors
def api() -> None:
    """The HTTP API alone (run as many as you like against the same engines)."""
    import uvicorn

    from trendflow.api.app import create_app

    config = settings()
    uvicorn.run(create_app(config), host=config.api_host, port=config.api_port, log_level="warning")


@worker_app.command("etl")
@handles_errors
def worker_etl() -> None:
    """Consumer group `etl`: normalize, enrich, upsert, publish embed jobs."""
    from trendflow.workers.run import run_worker

    run_worker("etl", settings())


@worker_app.command("embed")
@handles_errors
def worker_embed() -> None:
    """Consumer group `embedder`: embed stored trends with all-MiniLM-L6-v2."""
    from trendflow.workers.run import run_worker

    run_worker("embed", settings())


@worker_app.command("monitor")
@handles_errors
def worker_monitor() -> None:
    """Replay the spool, remove dead consumers, watch lag."""
    from trendflow.workers.run import run_worker

    run_worker("monitor", settings())


@app.command()
@handles_errors
def migrate() -> None:
    """Apply database migrations (every process also does this on start)."""
    from trendflow.config import redact_url
    from trendflow.db.migrate import head_revision
    from trendflow.runtime import prepare_database

    endpoints = prepare_database(settings())
    console.print(f"schema at revision {head_revision()} on {redact_url(endpoints.database_url)}")


@app.command("import")
@handles_errors
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON Lines, a JSON array, or CSV")],
    source: Annotated[str | None, typer.Option(help="source for events that name none")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Send a file's events into the pipeline, through the same checks as the API."""
    from trendflow.importer import import_events

    summary = asyncio.run(import_events(settings(), file, default_source=source, batch_size=batch_size, console=console))
    summary.print(console)
    if summary.accepted == 0 and summary.rejected:
        raise typer.Exit(1)


@app.command()
@handles_errors
def demo() -> None:
    """Run the whole pipeline over the bundled sample, show what is trending and one search, then stop."""
    from trendflow.demo import run_demo

    run_demo(settings(), console)


@app.command()
@handles_errors
def status(as_json: Annotated[bool, typer.Option("--json", help="print the JSON document")] = False) -> None:
    """Stream lengths, lag and pending per group, consumers, dead letters, spool, embedding backlog."""
    from trendflow.ops_cli import print_status, read_status

    report = asyncio.run(read_status(settings()))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_status(report, console)


@app.command()
@handles_errors
def search(query: str, k: int = 10) -> None:
    """Semantic search from a terminal."""
    not_built("search", "issue 6: semantic search")


@app.command()
@handles_errors
def trending(window: str = "1h", limit: int = 10) -> None:
    """What is trending now."""
    not_built("trending", "issue 7: trending")


@app.command()
@handles_errors
def reembed(model: str | None = None) -> None:
    """Backfill embeddings for a model."""
    not_built("reembed", "issue 6: re-embedding")


@app.command()
@handles_errors
def bench(quick: bool = False, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The benchmark suite: each stage as a ratio to its raw limit, measured in the same run."""
    not_built("bench", "issue 8: benchmarks")


@dlq_app.command("list")
@handles_errors
def dlq_list() -> None:
    """List dead letters."""
    not_built("dlq list", "issue 4: dead letters")


@dlq_app.command("show")
@handles_errors
def dlq_show(letter_id: str) -> None:
    """Show one dead letter."""
    not_built("dlq show", "issue 4: dead letters")


@dlq_app.command("replay")
@handles_errors
def dlq_replay(letter_id: str | None = None) -> None:
    """Replay dead letters through the current normalizer."""
    not_built("dlq replay", "issue 4: dead letters")


@dlq_app.command("purge")
@handles_errors
def dlq_purge() -> None:
    """Delete dead letters."""
    not_built("dlq purge", "issue 4: dead letters")


@spool_app.command("status")
@handles_errors
def spool_status() -> None:
    """How many events wait in the spool."""
    not_built("spool status", "issue 5: reliability")


@spool_app.command("verify")
@handles_errors
def spool_verify() -> None:
    """Check every spooled record's checksum."""
    not_built("spool verify", "issue 5: reliability")


@spool_app.command("replay")
@handles_errors
def spool_replay() -> None:
    """Replay the spool into the stream now."""
    not_built("spool replay", "issue 5: reliability")


@keys_app.command("create")
@handles_errors
def keys_create() -> None:
    """Issue an API key."""
    not_built("keys create", "issue 9: security")


@keys_app.command("list")
@handles_errors
def keys_list() -> None:
    """List API keys."""
    not_built("keys list", "issue 9: security")


@keys_app.command("revoke")
@handles_errors
def keys_revoke(key_id: str) -> None:
    """Revoke an API key."""
    not_built("keys revoke", "issue 9: security")


def main() -> None:
    app()
