"""``turbomode backtest`` end to end: walk-forward signals, both rule sets, reports beside SPY.

* **TurboMode ATR rules** trade every signal the nightly scan would have issued (BUY and SELL),
  with the ATR stop, 1R/2R partials, target, trailing stop and expiry of
  :mod:`turbomode.risk.positions`, ``backtest.position_fraction`` of equity per entry.
* **Smart Scanner tiers** trade the BUY signals with the Smart Scanner's own decisions, each
  made from what was known at the time (:func:`turbomode.smart.candidates.smart_candidates`):
  monthly tiers and the quarterly curation from the outcomes of earlier signals closed before
  the month, strength 100 × P(BUY) × the tier multiplier against the entry threshold of the
  day's regime (:mod:`turbomode.risk.regime`), half-Kelly sizes from those outcomes × strength
  × the regime multiplier capped by the tier; each day's entries screened by the portfolio
  limits (:func:`turbomode.backtest.screen.smart_screen`: 6 positions, 2 per sector,
  correlation, heat), and the tiered targets, stops at the close and maximum hold of
  :mod:`turbomode.smart.exits`.

Each rule set trades two books when the signals come from the walk-forward: the ungated one
(every period's models) and the **gated** one (only models the promotion gate accepted; see
:mod:`turbomode.backtest.walkforward`), reported side by side as ``<rules>`` and
``<rules>_gated``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from turbomode.backtest.engine import BacktestResult, run_backtest
from turbomode.backtest.performance import summarize
from turbomode.backtest.policies import AtrExitPolicy, SmartExitPolicy
from turbomode.backtest.report import books_markdown, write_report
from turbomode.backtest.screen import smart_screen
from turbomode.backtest.sizing import SignalColumnSize
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.io import atomic_write_json, atomic_write_text
from turbomode.logs import event
from turbomode.smart.candidates import signal_outcomes, smart_candidates

log = logging.getLogger("turbomode.backtest.run")
RULE_SETS = ("atr", "smart")
GATED = "_gated"  # suffix of the gated book's results, summaries and report folder


@dataclass
class BacktestRun:
    """What one ``turbomode backtest`` produced, per book: ``<rules>`` and ``<rules>_gated``."""

    results: dict[str, BacktestResult] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    signals: int = 0
    periods: list[dict[str, Any]] = field(default_factory=list)
    modifiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    signal_counts: dict[str, Any] = field(default_factory=dict)
    gated_signals: int | None = None


def run_rule_set(
    rules: str,
    signals: pd.DataFrame,
    md: MarketData,
    settings: Settings,
    regimes: pd.DataFrame,
    start: date | None = None,
    end: date | None = None,
    horizon: int | None = None,
) -> BacktestResult:
    """One rule set over the signals (already walk-forward) and the point-in-time universe,
    on the trading days of [start, end] (default: every day of the prices)."""
    labels = pd.Series(regimes["regime"])
    if rules == "atr":
        return run_backtest(
            signals,
            md.prices,
            AtrExitPolicy(settings.risk),
            settings.backtest.model_copy(update={"rules": "atr"}),
            universe=md.universe,
            regimes=labels,
            start=start,
            end=end,
        )
    if rules == "smart":
        smart = settings.smart
        cfg = settings.backtest.model_copy(
            update={"rules": "smart", "max_positions": smart.max_positions, "allow_short": False}
        )
        outcomes = signal_outcomes(signals, md.prices, settings.horizon_or_default(horizon))
        return run_backtest(
            smart_candidates(signals, regimes, settings, outcomes),
            md.prices,
            SmartExitPolicy(smart),
            cfg,
            universe=md.universe,
            sizer=SignalColumnSize("size"),
            regimes=labels,
            start=start,
            end=end,
            screen=smart_screen(md.prices, settings),
        )
    raise TurboModeError(f"unknown rule set {rules!r}: expected one of {RULE_SETS}")


def measure_modifiers(
    rules_path: Path | str,
    trades: pd.DataFrame,
    features: pd.DataFrame,
    start: date,
    end: date,
    settings: Settings,
) -> dict[str, Any]:
    """The modifier rules' evidence, measured by the backtester: each closed trade of [start,
    end] with its features at the signal date (the close that made the call), a win being a
    net return above zero. A rule that fails to load is reported and the others measured."""
    from dataclasses import asdict

    from turbomode.smart.modifiers import calibrate_rules, load_rules, pattern_features

    loaded = load_rules(rules_path, features.columns)
    needed = sorted(set().union(*(pattern_features(r.pattern) for r in loaded.rules)))
    table = pd.DataFrame(
        {
            "symbol": trades["symbol"].astype(str),
            "signal_date": pd.to_datetime(trades["signal_date"]),
            "exit_date": pd.to_datetime(trades["exit_date"]),
            "return": trades["net_return"].astype(float),
        }
    )
    at_signal = features[["symbol", "date", *needed]].rename(columns={"date": "signal_date"})
    at_signal = at_signal.assign(signal_date=pd.to_datetime(at_signal["signal_date"]))
    table = table.merge(at_signal, on=["symbol", "signal_date"], how="left")
    measured = calibrate_rules(loaded.rules, table, start, end, settings.smart)
    return {
        "span": [str(start), str(end)],
        "trades": len(table),
        "rules": [
            {
                "name": r.name,
                "kind": r.kind,
                "value": r.value,
                "evidence": asdict(r.evidence) if r.evidence is not None else None,
            }
            for r in measured
        ],
        "errors": list(loaded.errors),
    }


def run_backtests(
    settings: Settings,
    md: MarketData,
    start: date,
    end: date,
    out_dir: Path | str,
    rule_sets: tuple[str, ...] = RULE_SETS,
    signals: pd.DataFrame | None = None,
    horizon: int | None = None,
    period: str = "year",
    train_days: int | None = 756,
    on_progress: Callable[[str], None] | None = None,
    modifiers: Path | str | None = None,
    gate_days: int | None = 126,
) -> BacktestRun:
    """Walk-forward signals (unless given), then each rule set; reports under ``out_dir``.

    With walk-forward signals and ``gate_days`` (None: off), each rule set also trades the
    gated book (``<rules>_gated``). ``modifiers`` (a rules YAML): each book's trades measure
    the rules' evidence, written as ``<book>/modifiers.json``."""
    from turbomode.backtest.walkforward import walk_forward_signals
    from turbomode.risk.regime import detect_regimes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = on_progress or (lambda _m: None)
    run = BacktestRun()
    books: dict[str, pd.DataFrame] = {}
    if signals is None:
        wf = walk_forward_signals(
            settings,
            md,
            start,
            end,
            horizon=horizon,
            period=period,  # type: ignore[arg-type]
            train_days=train_days,
            on_period=note,
            gate_days=gate_days,
        )
        signals, run.periods = wf.signals, wf.periods
        signals.to_parquet(out / "signals.parquet", index=False)
        if wf.gated is not None:
            wf.gated.to_parquet(out / "gated_signals.parquet", index=False)
            books[GATED] = _within(wf.gated, start, end)
            run.gated_signals = len(books[GATED])
    signals = _within(signals, start, end)
    books = {"": signals, **books}
    run.signals = len(signals)
    run.signal_counts = {
        **_counts(signals, settings),
        **({"gated": _counts(books[GATED], settings)} if GATED in books else {}),
    }
    note("regimes")
    regimes = detect_regimes(md.market, settings.regime)
    for rules in rule_sets:
        for suffix, book in books.items():
            name = rules + suffix
            note(f"{name} book")
            result = run_rule_set(rules, book, md, settings, regimes, start, end, horizon)
            gated = ", gated book" if suffix else ""
            title = f"TurboMode backtest, {rules} rules{gated}, {start} to {end}"
            paths = write_report(result, out / name, benchmark=md.market, title=title)
            run.results[name] = result
            run.summaries[name] = summarize(result, md.market)
            run.reports[name] = str(paths.html)
    atomic_write_text(books_markdown(run.summaries), out / "books.md")
    if modifiers is not None:
        from turbomode.features.engine import build_features

        note("modifier evidence")
        frame = build_features(md.prices, md.market, md.universe.sector_map(), macro=md.macro).frame
        for rules, result in run.results.items():
            measured = measure_modifiers(modifiers, result.trades, frame, start, end, settings)
            atomic_write_json(measured, out / rules / "modifiers.json")
            run.modifiers[rules] = measured
    atomic_write_json(
        {
            "start": str(start),
            "end": str(end),
            "horizon": horizon,
            "period": period,
            "train_days": train_days,
            "gate_days": gate_days if run.gated_signals is not None else None,
            "signals": run.signals,
            "gated_signals": run.gated_signals,
            "signal_counts": run.signal_counts,
            "periods": run.periods,
            "reports": run.reports,
        },
        out / "run.json",
    )
    event(log, "backtest.done", signals=run.signals, books=list(run.results))
    return run


def _within(signals: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    days = pd.to_datetime(signals["date"])
    return signals[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]


def _counts(signals: pd.DataFrame, settings: Settings) -> dict[str, Any]:
    """Signals by side, and BUYs whose strength reaches each regime's entry threshold."""
    buys = signals[signals["side"].astype(str).str.upper() == "BUY"]
    strength = buys["strength"] if "strength" in buys else 100.0 * buys["confidence"]
    levels = sorted({settings.regime.base_threshold, *settings.regime.thresholds.values()})
    return {
        "by_side": {str(k): int(v) for k, v in signals["side"].value_counts().items()},
        "buy_strength_at_least": {f"{t:g}": int((strength >= t).sum()) for t in levels},
    }
