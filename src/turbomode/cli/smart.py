"""``turbomode smart-scan``, ``turbomode ranking update`` and ``turbomode universe curate``:
thin adapters over :mod:`turbomode.smart.run`.

The Helm chart's CronWorkflows run ``ranking update`` (monthly) and ``universe curate``
(quarterly) with no further arguments, so every option here has a default that is right on
the schedule: the date is today, the horizon the settings' ``backtest.default_horizon``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from turbomode.cli.common import console, handles_errors, parse_day, settings_from

ranking_app = typer.Typer(help="The Smart Scanner's adaptive tiers from measured performance.")

DateOption = Annotated[
    str | None, typer.Option("--date", help="As of this day, YYYY-MM-DD (default: today).")
]
HorizonOption = Annotated[
    int | None,
    typer.Option(
        "--horizon",
        help="Horizon (days) of the outcomes and signals used (default: the settings' "
        "backtest.default_horizon).",
    ),
]


@ranking_app.callback()
def _ranking() -> None:
    """Adaptive ranking (a group, so `ranking update` keeps its name with one command)."""


@ranking_app.command("update")
@handles_errors
def ranking_update(
    ctx: typer.Context, as_of: DateOption = None, horizon: HorizonOption = None
) -> None:
    """Rank every symbol Elite/Strong/Average/Weak/Avoid from its closed BUY outcomes as of the
    first day of the month, and save tiers_<YYYY-MM>.json (monthly job)."""
    from turbomode.smart.run import update_ranking

    result = update_ranking(settings_from(ctx), parse_day(as_of), horizon)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    console.print(
        f"[bold]Ranking {result.as_of:%Y-%m}[/] ({result.horizon}d, {result.n_trades} closed "
        f"BUY outcomes): {len(result.ranks)} symbols — {counts}",
        soft_wrap=True,
    )
    typer.echo(f"written: {result.path}")


@handles_errors
def curate_command(
    ctx: typer.Context, as_of: DateOption = None, horizon: HorizonOption = None
) -> None:
    """Drop from the universe the symbols ranked Avoid at each of the last quarterly rankings,
    and save universe_<YYYY>Q<q>.json (quarterly job)."""
    from turbomode.smart.run import curate

    result = curate(settings_from(ctx), parse_day(as_of), horizon)
    cur = result.curation
    console.print(
        f"[bold]Universe {result.quarter}[/] ({result.horizon}d): {len(cur.kept)} kept, "
        f"{len(cur.dropped)} dropped",
        soft_wrap=True,
    )
    for sym, why in cur.dropped.items():
        console.print(f"  dropped {escape(sym)}: {escape(why)}", highlight=False, soft_wrap=True)
    typer.echo(f"written: {result.path}")


@handles_errors
def smart_scan_command(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option("--date", help="Scan date YYYY-MM-DD (default: the latest scan)."),
    ] = None,
    horizon: HorizonOption = None,
    equity: Annotated[
        float | None,
        typer.Option("--equity", help="Account equity for shares (default: backtest cash)."),
    ] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Modifier rules YAML (default: none).")
    ] = None,
    earnings: Annotated[
        Path | None,
        typer.Option("--earnings", help="Earnings calendar CSV symbol,date (default: none)."),
    ] = None,
    holdings: Annotated[
        Path | None,
        typer.Option("--holdings", help="Open positions CSV ticker,sector,size,stop_distance."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the SignalV2 JSON.")] = False,
) -> None:
    """Tonight's BUY signals through tiers, modifiers, Kelly sizing and the portfolio limits:
    SignalV2 records as JSON, CSV and a console summary."""
    from turbomode.smart.run import run_smart_scan

    result = run_smart_scan(
        settings_from(ctx),
        as_of=parse_day(as_of),
        equity=equity,
        rules_path=rules,
        earnings_csv=earnings,
        horizon=horizon,
        holdings_csv=holdings,
    )
    if as_json:
        print(Path(result.files["json"]).read_text(encoding="utf-8"), end="")
        return
    typer.echo(result.summary())  # fixed-width table: no rich wrapping
    typer.echo(f"written: {result.files['json']}, {result.files['csv']}")
