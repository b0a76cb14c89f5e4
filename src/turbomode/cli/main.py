"""The ``turbomode`` command: the root app, its global options, and every command group
mounted on it (one module per group in this package)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from turbomode import __version__, logs
from turbomode.cli.backtest import backtest_command, regime_command
from turbomode.cli.common import console
from turbomode.cli.data import config_app, features_app, ingest_command, universe_app
from turbomode.cli.drift import drift_command
from turbomode.cli.models import evaluate_command, models_app, train_command
from turbomode.cli.outcomes import outcomes_app, replay_command, retrain_command
from turbomode.cli.pipelines import pipelines_app
from turbomode.cli.report import report_command
from turbomode.cli.research import research_command
from turbomode.cli.scan import NO_NEW_BAR_EXIT, scan_command, signals_command
from turbomode.cli.serve import serve_command
from turbomode.cli.smart import ranking_app, smart_scan_command
from turbomode.cli.status import status_command
from turbomode.cli.tune import tune_command
from turbomode.cli.wallet import wallet_app

__all__ = ["NO_NEW_BAR_EXIT", "app"]

app = typer.Typer(
    name="turbomode",
    help="TurboMode: nightly ML signals for S&P 500 stocks — ingest, features, train, scan.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# The order of registration is the order `turbomode --help` lists them in (the single
# commands first, then the groups).
app.add_typer(universe_app, name="universe")
app.add_typer(config_app, name="config")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.command("tune")(tune_command)
app.add_typer(outcomes_app, name="outcomes")
app.command("retrain")(retrain_command)
app.command("replay")(replay_command)
app.add_typer(pipelines_app, name="pipelines")
app.command("serve")(serve_command)
app.command("backtest")(backtest_command)
app.command("regime")(regime_command)
app.command("smart-scan")(smart_scan_command)
app.add_typer(ranking_app, name="ranking")
app.add_typer(wallet_app, name="wallet")
app.command("research")(research_command)


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML settings file (overrides defaults).",
            envvar="TURBOMODE_CONFIG",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Root of the local stores (default: ./data).")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning.")
    ] = "warning",
) -> None:
    """Settings come from defaults < YAML file < TURBOMODE_* environment variables."""
    # config and data_dir stay in the context's params: turbomode.cli.common.settings_from
    # reads them there, for every command.
    logs.configure(log_level)


@app.command()
def version() -> None:
    """Print the TurboMode version."""
    console.print(__version__)


app.command("ingest")(ingest_command)
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("scan")(scan_command)
app.command("drift")(drift_command)
app.command("signals")(signals_command)
app.command("status")(status_command)
app.command("report")(report_command)


if __name__ == "__main__":  # pragma: no cover
    app()
