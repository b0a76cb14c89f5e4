"""``turbomode scan`` and ``turbomode signals``: tonight's signals, and the latest scan's
again — thin adapters over :mod:`turbomode.signals.scan`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import (
    console,
    err,
    handles_errors,
    print_frame,
    progress_bar,
    settings_from,
)
from turbomode.config import Settings

# `turbomode scan` without --date when no bar newer than the last scan's arrived: nothing was
# scanned (the CronWorkflow's step fails visibly, and TurboModeScanNoNewData fires).
NO_NEW_BAR_EXIT = 3


@handles_errors
def scan_command(
    ctx: typer.Context,
    date: Annotated[
        str | None, typer.Option("--date", help="Scan date, YYYY-MM-DD (default: newest bar).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Signals shown per cap class and side.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print latest_scan.json.")] = False,
) -> None:
    """Tonight's signals: online features → production ensembles → signal rules, stop and
    target → positions → the signals store, latest_scan.json and a CSV."""
    import pandas as pd

    from turbomode.signals.scan import NoNewBarError, run_scan

    try:
        settings = settings_from(ctx)
        day = pd.Timestamp(date).date() if date else None
        with progress_bar(transient=True) as progress:
            task = progress.add_task("scan", total=None)
            result = run_scan(
                settings,
                scan_date=day,
                on_stage=lambda s: progress.update(task, description=f"scan: {s}"),
            )
    except NoNewBarError as exc:
        err.print(f"[bold yellow]no new data:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=NO_NEW_BAR_EXIT) from None
    if as_json:
        print(Path(result.files["json"]).read_text())
        return
    _print_scan(result, settings, top)


def _print_scan(result: Any, settings: Settings, top: int) -> None:
    """Tonight's run in one line, then the signal tables."""
    console.print(
        f"[bold]Scan {result.scan_date}[/]: {result.n_scored}/{result.n_symbols} symbols "
        f"scored, {len(result.failures)} skipped, {len(result.fresh)} fresh signals, "
        f"{len(result.active)} active, {len(result.events)} position events "
        f"(entry thresholds BUY ≥ {result.thresholds['buy']:.3f}, "
        f"SELL ≥ {result.thresholds['sell']:.3f}; {result.seconds:.1f} s)"
    )
    if result.stale_features:
        console.print(
            f"[yellow]{result.stale_features} symbol(s) not scored: their newest features are "
            f"older than {result.scan_date}[/] (run `turbomode features materialize`?)"
        )
    if result.feature_source == "offline":
        console.print(f"features: point-in-time vectors of {result.scan_date} (offline store)")
    from turbomode.signals.scan import scan_document

    _print_signals(scan_document(result, settings), top)
    console.print(f"written: {result.files['json']}, {result.files['csv']}")


def _print_signals(doc: dict[str, Any], top: int) -> None:
    """Top signals per cap class and side with stop, target and age; the sector overview —
    from a scan document (``latest_scan.json``)."""
    import pandas as pd

    for key in doc["missing_models"]:
        console.print(f"[yellow]no production model[/] for {escape(key)}: no signals from it")
    frame = pd.DataFrame(doc["signals"])
    if frame.empty:
        console.print("No active signals tonight.")
    else:
        frame = frame.sort_values("effective_confidence", ascending=False)
        for (cap, side), rows in frame.groupby(["cap_class", "side"], sort=True):
            table = Table(title=f"{side} — {cap} cap (top {min(top, len(rows))} of {len(rows)})")
            for col in ("symbol", "sector", "h", "conf", "eff", "age", "close", "stop", "target"):
                table.add_column(col)
            for r in rows.head(top).itertuples():
                table.add_row(
                    str(r.symbol),
                    str(r.sector),
                    f"{r.horizon}d",
                    f"{r.confidence:.3f}",
                    f"{r.effective_confidence:.3f}",
                    f"{r.age_days}d {r.age_bucket}",
                    f"{r.close:.2f}",
                    f"{r.stop:.2f}",
                    f"{r.target:.2f}",
                )
            console.print(table)
    if doc["sectors"]:
        print_frame(pd.DataFrame(doc["sectors"]), "Sectors")


@handles_errors
def signals_command(
    ctx: typer.Context,
    top: Annotated[int, typer.Option("--top", help="Signals shown per cap class and side.")] = 5,
) -> None:
    """Print the latest scan's signals (``latest_scan.json``) without scanning again."""

    from turbomode.signals.scan import latest_document

    doc = latest_document(settings_from(ctx))
    console.print(
        f"[bold]Scan {doc['scan_date']}[/]: {doc['n_scored']}/{doc['n_symbols']} symbols "
        f"scored, {doc['n_failed']} skipped, {len(doc['signals'])} active signals "
        f"(entry thresholds BUY ≥ {doc['thresholds']['buy']:.3f}, "
        f"SELL ≥ {doc['thresholds']['sell']:.3f})"
    )
    _print_signals(doc, top)
