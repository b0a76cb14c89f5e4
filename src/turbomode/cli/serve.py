"""``turbomode serve``: the BentoML service (predictions, signals, dashboard) on this machine.

A thin adapter over ``bentoml serve turbomode.serving.service:TurboMode``: it resolves the
settings the way every other command does (``--config``, ``--data-dir``, environment), hands
them to the server's workers as environment variables (absolute paths, so the workers read the
same stores whatever their working directory) and then becomes the BentoML server process.
Standalone: ``python -m turbomode.cli.serve --port 3000``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from turbomode.cli.common import err, global_options, handles_errors, settings_from
from turbomode.config import Settings

SERVICE = "turbomode.serving.service:TurboMode"


def _exec(path: str, argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Replace this process with the server (signals and exit status go straight to it)."""
    os.execvpe(path, list(argv), dict(env))


run_server: Callable[[str, Sequence[str], Mapping[str, str]], NoReturn] = _exec


def server_environment(
    settings: Settings, config: Path | None, workers: int | None, base: Mapping[str, str]
) -> dict[str, str]:
    """The workers' environment: this one plus the settings they must share with the CLI."""
    env = dict(base)
    env["TURBOMODE_DATA__DATA_DIR"] = str(Path(settings.data.data_dir).resolve())
    if config is not None:
        env["TURBOMODE_CONFIG"] = str(Path(config).resolve())
    if workers is not None:
        env["TURBOMODE_SERVE_WORKERS"] = str(workers)
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    return env


# The port `turbomode serve` listens on unless told otherwise (the dashboard is at /dashboard).
DEFAULT_PORT = 3000


@handles_errors
def serve_command(
    ctx: typer.Context,
    port: Annotated[
        int, typer.Option("--port", "-p", min=1, max=65535, help="HTTP port.")
    ] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for every one).")
    ] = "127.0.0.1",
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Worker processes (default 1).")
    ] = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when the code changes (development).")
    ] = False,
) -> None:
    """Serve predictions, the latest scan's signals and the dashboard (BentoML).

    Endpoints: POST /predict, /predict_batch, /predict_features; GET /signals,
    /signals/{symbol}, /sectors, /health, /metrics; the dashboard at /dashboard; the API
    document at /. Stop with Ctrl+C.
    """
    settings = settings_from(ctx)
    clean = settings.data.clean_dir / "prices.parquet"
    if not clean.exists():
        err.print(
            f"[yellow]warning:[/] no clean store at {escape(str(settings.data.clean_dir))}: the "
            "service starts but is not ready until `make run` (ingest, features, train, scan) "
            "has filled the data directory",
            soft_wrap=True,
            highlight=False,
        )
    config, _ = global_options(ctx)
    env = server_environment(settings, config, workers, os.environ)
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    if reload:
        argv.append("--reload")
    err.print(f"serving on http://{host}:{port} (dashboard: /dashboard)", highlight=False)
    run_server(sys.executable, argv, env)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(serve_command)

if __name__ == "__main__":  # pragma: no cover
    app()
