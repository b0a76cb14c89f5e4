"""``turbomode backtest`` end to end: walk-forward signals, both rule sets, reports beside SPY.

* **TurboMode ATR rules** trade every signal the nightly scan would have issued (BUY and SELL),
  with the ATR stop, 1R/2R partials, target, trailing stop and expiry of
  :mod:`turbomode.risk.positions`, ``backtest.position_fraction`` of equity per entry.
* **Smart Scanner tiers** trade the BUY signals whose strength (100 × P(BUY)) reaches the
  entry threshold of the day's market regime (:mod:`turbomode.risk.regime`), at most
  ``smart.max_positions`` at a time, with the tiered targets, stops at the close and maximum
  hold of :mod:`turbomode.smart.exits`. Every symbol is ranked Average (the adaptive ranking
  needs a history of the symbol's own trades, which a backtest from a cold start lacks), so
  the size is the Average tier's cap; the Smart portfolio constraints (2 per sector,
  correlation, heat) screen each day's entries (:func:`smart_screen`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from turbomode.backtest.engine import BacktestResult, Book, Screen, run_backtest
from turbomode.backtest.metrics import summarize
from turbomode.backtest.policies import AtrExitPolicy, SmartExitPolicy
from turbomode.backtest.report import write_report
from turbomode.backtest.sizing import SignalColumnSize
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.io import atomic_write_json
from turbomode.logs import event
from turbomode.smart.types import Tier

log = logging.getLogger("turbomode.backtest.run")
RULE_SETS = ("atr", "smart")


@dataclass
class BacktestRun:
    """What one ``turbomode backtest`` produced, per rule set."""

    results: dict[str, BacktestResult] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    signals: int = 0
    periods: list[dict[str, Any]] = field(default_factory=list)


def smart_candidates(
    signals: pd.DataFrame, regimes: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """BUY signals whose strength reaches their day's regime threshold, tier Average, sized at
    the Average tier's cap."""
    from turbomode.risk.regime import entry_threshold

    buys = signals[signals["side"] == "BUY"].copy()
    regime = pd.Series(regimes["regime"]).reindex(pd.DatetimeIndex(buys["date"]))
    buys["regime"] = regime.to_numpy()
    need = [entry_threshold(r, settings.regime) for r in buys["regime"]]
    buys = buys[buys["strength"].to_numpy() >= need].copy()
    buys["tier"] = "Average"
    buys["size"] = min(settings.smart.tier_cap[Tier.AVERAGE], settings.smart.max_size)
    return buys.reset_index(drop=True)


def smart_screen(prices: pd.DataFrame, settings: Settings) -> Screen:
    """The Smart Scanner's portfolio constraints (:func:`turbomode.smart.portfolio.select`: 2
    per sector, correlation, heat, minimum size, Avoid, earnings) as the engine's daily
    screen; the backtest and the paper wallet both use it. Correlations are measured on
    returns up to the candidates' signal date."""
    from turbomode.smart.portfolio import Proposal, select, trailing_correlations
    from turbomode.smart.types import to_tier

    smart = settings.smart

    def screen(cands: pd.DataFrame, book: Book) -> dict[str, str]:
        proposals = []
        for _, row in cands.iterrows():
            tier = to_tier(row["tier"])
            proposals.append(
                Proposal(
                    ticker=str(row["symbol"]),
                    sector=str(row["sector"]),
                    strength=float(row["_rank"]),
                    tier=tier,
                    size=float(row["size"]),
                    stop_distance=float(smart.stops.get(tier, 0.0)),
                    earnings_soon=bool(row.get("earnings_soon", False) is True),
                )
            )
        holdings = [t.state.as_holding() for t in book.open.values()]
        correlations = None
        if holdings and proposals:
            wanted = {p.ticker for p in proposals} | {h.ticker for h in holdings}
            as_of = max(pd.Timestamp(d) for d in cands["date"]).date()
            correlations = trailing_correlations(
                prices[prices["symbol"].isin(wanted)],
                as_of,
                smart.correlation_lookback,
                smart.correlation_min_periods,
            )
        return {
            d.proposal.ticker: f"portfolio: {d.reason}"
            for d in select(proposals, holdings, smart, correlations)
            if d.reason is not None
        }

    return screen


def run_rule_set(
    rules: str,
    signals: pd.DataFrame,
    md: MarketData,
    settings: Settings,
    regimes: pd.DataFrame,
    start: date | None = None,
    end: date | None = None,
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
        return run_backtest(
            smart_candidates(signals, regimes, settings),
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


def run_backtests(
    settings: Settings,
    md: MarketData,
    start: date,
    end: date,
    out_dir: Path | str,
    rule_sets: tuple[str, ...] = RULE_SETS,
    signals: pd.DataFrame | None = None,
    horizon: int = 5,
    period: str = "year",
    train_days: int | None = 756,
    on_progress: Callable[[str], None] | None = None,
) -> BacktestRun:
    """Walk-forward signals (unless given), then each rule set; reports under ``out_dir``."""
    from turbomode.backtest.walkforward import walk_forward_signals
    from turbomode.risk.regime import detect_regimes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = on_progress or (lambda _m: None)
    run = BacktestRun()
    if signals is None:
        wf = walk_forward_signals(
            settings,
            md,
            start,
            end,
            out / "walkforward",
            horizon=horizon,
            period=period,  # type: ignore[arg-type]
            train_days=train_days,
            on_period=note,
        )
        signals, run.periods = wf.signals, wf.periods
        signals.to_parquet(out / "signals.parquet", index=False)
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    signals = signals[
        (pd.to_datetime(signals["date"]) >= s) & (pd.to_datetime(signals["date"]) <= e)
    ]
    run.signals = len(signals)
    note("regimes")
    regimes = detect_regimes(md.market, settings.regime)
    for rules in rule_sets:
        note(f"{rules} rules")
        result = run_rule_set(rules, signals, md, settings, regimes, start, end)
        title = f"TurboMode backtest, {rules} rules, {start} to {end}"
        paths = write_report(result, out / rules, benchmark=md.market, title=title)
        run.results[rules] = result
        run.summaries[rules] = summarize(result, md.market)
        run.reports[rules] = str(paths.html)
    atomic_write_json(
        {
            "start": str(start),
            "end": str(end),
            "horizon": horizon,
            "period": period,
            "train_days": train_days,
            "signals": run.signals,
            "periods": run.periods,
            "reports": run.reports,
        },
        out / "run.json",
    )
    event(log, "backtest.done", signals=run.signals, rule_sets=list(rule_sets))
    return run
