"""``turbomode backtest`` and ``turbomode regime``: thin adapters over :mod:`turbomode.backtest`
and :mod:`turbomode.risk.regime`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from turbomode.cli.common import console, err, handles_errors, parse_day, settings_from
from turbomode.io import read_table
from turbomode.workspace import Workspace


def _headline(summaries: dict[str, dict]) -> Table:
    table = Table(title="Backtest beside SPY buy-and-hold")
    rows = [
        ("total return", "total_return", "{:+.1%}"),
        ("CAGR", "cagr", "{:+.1%}"),
        ("Sharpe", "sharpe", "{:.2f}"),
        ("Sortino", "sortino", "{:.2f}"),
        ("max drawdown", "max_drawdown", "{:.1%}"),
    ]
    table.add_column("metric")
    for name in summaries:
        rules, gated, _ = name.partition("_gated")
        table.add_column(f"{rules} rules" + (", gated" if gated else ""), justify="right")
    table.add_column("SPY", justify="right")
    first = next(iter(summaries.values()))
    for label, key, fmt in rows:
        cells = [_fmt(s["strategy"].get(key), fmt) for s in summaries.values()]
        spy = (first.get("benchmark") or {}).get(key)
        table.add_row(label, *cells, _fmt(spy, fmt))
    for label, key, fmt in (
        ("trades", "trades", "{:,.0f}"),
        ("win rate", "win_rate", "{:.1%}"),
        ("avg trade (net)", "avg_return", "{:+.2%}"),
        ("profit factor", "profit_factor", "{:.2f}"),
    ):
        cells = [_fmt(s["strategy"].get(key), fmt) for s in summaries.values()]
        table.add_row(label, *cells, "")
    return table


def _fmt(value: object, fmt: str) -> str:
    if value is None:
        return "—"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


@handles_errors
def backtest_command(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--start", help="First day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last day (YYYY-MM-DD).")],
    rules: Annotated[
        list[str] | None, typer.Option("--rules", help="atr and/or smart (default: both).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: data/backtests/…).")
    ] = None,
    signals: Annotated[
        Path | None,
        typer.Option("--signals", help="Trade this signals table (parquet/CSV) instead."),
    ] = None,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon",
            help="Model horizon in days (default: the settings' backtest.default_horizon).",
        ),
    ] = None,
    period: Annotated[str, typer.Option("--period", help="Retrain every year or quarter.")] = (
        "year"
    ),
    train_days: Annotated[
        int, typer.Option("--train-days", help="Rolling training window, trading days.")
    ] = 756,
    modifiers: Annotated[
        Path | None,
        typer.Option("--modifiers", help="Modifier rules YAML: measure their evidence."),
    ] = None,
    gate_days: Annotated[
        int,
        typer.Option(
            "--gate-days",
            help="Also trade the gated book: only models the promotion gate accepts, judged "
            "on this many days at the end of each training window (0: off).",
        ),
    ] = 126,
) -> None:
    """Walk-forward models → nightly signals → the ATR and Smart rule sets, beside SPY; each
    beside its gated book (the models the promotion gate accepted)."""
    from turbomode.backtest.run import RULE_SETS, run_backtests
    from turbomode.data.ingest import load_clean

    settings = settings_from(ctx)
    s, e = parse_day(start, "--start"), parse_day(end, "--end")
    if e < s:
        raise ValueError(f"--end {e} is before --start {s}")
    chosen = tuple(rules or RULE_SETS)
    unknown = sorted(set(chosen) - set(RULE_SETS))
    if unknown:
        raise ValueError(f"unknown rule set(s) {unknown}: expected {list(RULE_SETS)}")
    if period not in ("year", "quarter"):
        raise ValueError(f"--period must be year or quarter, got {period!r}")
    if gate_days < 0:
        raise ValueError(f"--gate-days must be ≥ 0, got {gate_days}")
    table = None
    if signals is not None:
        table = read_table(signals, "signals file")
        table["date"] = pd.to_datetime(table["date"])
    target = out or Workspace.of(settings).backtests_dir / f"{s}_{e}"
    run = run_backtests(
        settings,
        load_clean(settings),
        s,
        e,
        target,
        chosen,
        signals=table,
        horizon=horizon,
        period=period,
        train_days=train_days,
        on_progress=lambda m: err.print(f"backtest: {m}"),
        modifiers=modifiers,
        gate_days=gate_days or None,
    )
    console.print(_headline(run.summaries))
    for info in run.periods:
        if "gate" in info:
            gate = info["gate"]
            accepted = sorted(k for k, v in gate.items() if v["decision"] == "promote")
            trading = sorted(k for k, v in gate.items() if v["trades"] is not None)
            console.print(
                f"gate, {info['period']}: {len(accepted)} of {len(gate)} sector models accepted"
                f"{' (' + ', '.join(accepted) + ')' if accepted else ''}; the gated book "
                f"trades {len(trading)} sector(s)"
            )
    for name, path in run.reports.items():
        console.print(f"{name}: {path}")
    for name, measured in run.modifiers.items():
        for rule in measured["rules"]:
            ev = rule["evidence"]
            state = "active" if ev["active"] else f"inactive ({ev['reason']})"
            console.print(
                f"{name} rules, modifier {rule['name']}: {ev['n']} trades, win rate "
                f"{ev['win_rate']:.3f} against {ev['base_win_rate']:.3f} — {state}"
            )
        for error in measured["errors"]:
            console.print(f"{name} rules, modifier file: {error}")


@handles_errors
def regime_command(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option("--date", help="Regime as of this day (default: latest).")
    ] = None,
) -> None:
    """Today's market regime (BULL/BEAR/CHOPPY/VOLATILE), why, and its entry threshold."""
    from turbomode.data.ingest import load_clean
    from turbomode.risk.regime import regime_on

    settings = settings_from(ctx)
    day = parse_day(as_of, "--date") if as_of else None
    when = pd.Timestamp(day) if day else None
    r = regime_on(load_clean(settings).market, settings.regime, as_of=when)
    console.print(
        f"[bold]{r.date.date()}[/]: {r.regime or 'no regime'} — {r.reason}; "
        f"entry threshold {r.entry_threshold:g} on the 0–100 strength"
    )
