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
    print_json,
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
    top: Annotated[int, typer.Option("--top", help="Signals shown per side.")] = 5,
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
    """The strongest signals of each side with their cap class, stop, target and age; the
    sector overview — from a scan document (``latest_scan.json``)."""
    import pandas as pd

    missing = doc["missing_models"]
    if missing:
        console.print(
            f"[yellow]no production model[/] for {len(missing)} sector/horizon(s), so no "
            f"signals from them: {escape(', '.join(missing))}",
            soft_wrap=True,
        )
    frame = pd.DataFrame(doc["signals"])
    if frame.empty:
        console.print("No active signals tonight.")
    else:
        frame = frame.sort_values("effective_confidence", ascending=False)
        for side, rows in frame.groupby("side", sort=True):
            caps = rows["cap_class"].value_counts()
            counts = ", ".join(f"{cap} {caps[cap]}" for cap in CAP_ORDER if cap in caps)
            table = Table(
                title=f"{side}: the strongest {min(top, len(rows))} of {len(rows)} ({counts})"
            )
            for col in SIGNAL_COLUMNS:
                table.add_column(col, overflow="fold")
            for r in rows.head(top).itertuples():
                table.add_row(
                    str(r.symbol),
                    escape(str(r.sector)),
                    str(r.cap_class),
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
        _print_sectors(doc["sectors"])


CAP_ORDER = ("large", "mid", "small", "unknown")
SIGNAL_COLUMNS = (
    "symbol",
    "sector",
    "cap",
    "horizon",
    "confidence",
    "effective",
    "age",
    "close",
    "stop",
    "target",
)
# The sector overview's columns: (field of the scan document, heading), in reading order.
SECTOR_COLUMNS = (
    ("sector", "sector"),
    ("stance", "stance"),
    ("n_buy", "BUY"),
    ("n_sell", "SELL"),
    ("net", "net"),
    ("buy_share", "BUY share"),
    ("mean_eff_buy", "mean effective BUY"),
    ("mean_eff_sell", "mean effective SELL"),
)


def _print_sectors(sectors: list[dict[str, Any]]) -> None:
    """Sectors from the most bullish (net BUY − SELL) to the most bearish, named columns."""
    table = Table(
        title="Sectors, most bullish first (bullish: ≥ 2 more BUY than SELL and ≥ 60 % BUY)"
    )
    for _field, heading in SECTOR_COLUMNS:
        table.add_column(heading, overflow="fold")
    for s in sorted(sectors, key=lambda s: (-s["net"], s["sector"])):
        share = s.get("buy_share")
        cells = {
            "buy_share": "" if share is None else f"{share:.0%}",
            "mean_eff_buy": _maybe(s.get("mean_eff_buy")),
            "mean_eff_sell": _maybe(s.get("mean_eff_sell")),
        }
        table.add_row(*(cells.get(f, escape(str(s.get(f, "")))) for f, _h in SECTOR_COLUMNS))
    console.print(table)


def _maybe(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


@handles_errors
def signals_command(
    ctx: typer.Context,
    top: Annotated[int, typer.Option("--top", help="Signals shown per side.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the latest scan's document as JSON.")
    ] = False,
) -> None:
    """Print the latest scan's signals (``latest_scan.json``) without scanning again."""

    from turbomode.signals.scan import latest_document

    doc = latest_document(settings_from(ctx))
    if as_json:
        print_json(doc)
        return
    console.print(
        f"[bold]Scan {doc['scan_date']}[/]: {doc['n_scored']}/{doc['n_symbols']} symbols "
        f"scored, {doc['n_failed']} skipped, {len(doc['signals'])} active signals "
        f"(entry thresholds BUY ≥ {doc['thresholds']['buy']:.3f}, "
        f"SELL ≥ {doc['thresholds']['sell']:.3f})"
    )
    _print_signals(doc, top)
