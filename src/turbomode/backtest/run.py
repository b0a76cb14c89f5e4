"""``turbomode backtest`` end to end: walk-forward signals, both rule sets, reports beside SPY.

* **TurboMode ATR rules** trade every signal the nightly scan would have issued (BUY and SELL),
  with the ATR stop, 1R/2R partials, target, trailing stop and expiry of
  :mod:`turbomode.risk.positions`, ``backtest.position_fraction`` of equity per entry.
* **Smart Scanner tiers** trade the BUY signals with the Smart Scanner's own decisions, each
  made from what was known at the time (:func:`smart_candidates`): monthly tiers and the
  quarterly curation from the outcomes of earlier signals closed before the month, strength
  100 × P(BUY) × the tier multiplier against the entry threshold of the day's regime
  (:mod:`turbomode.risk.regime`), half-Kelly sizes from those outcomes × strength × the regime
  multiplier capped by the tier; each day's entries screened by the portfolio limits
  (:func:`smart_screen`: 6 positions, 2 per sector, correlation, heat), and the tiered targets,
  stops at the close and maximum hold of :mod:`turbomode.smart.exits`.

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

import numpy as np
import pandas as pd

from turbomode.backtest.engine import BacktestResult, Book, Screen, run_backtest
from turbomode.backtest.performance import summarize
from turbomode.backtest.policies import AtrExitPolicy, SmartExitPolicy
from turbomode.backtest.report import books_markdown, write_report
from turbomode.backtest.sizing import SignalColumnSize
from turbomode.config import Settings, Tier
from turbomode.data.sources.base import MarketData
from turbomode.errors import SchemaError, TurboModeError
from turbomode.io import atomic_write_json, atomic_write_text
from turbomode.logs import event

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


def signal_outcomes(signals: pd.DataFrame, prices: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Each BUY signal's outcome as the outcome tracker judges it — entry at the next bar's
    open, exit at the close ``horizon`` bars after the signal — as the trades table tiers and
    Kelly inputs are measured on (``symbol, signal_date, exit_date, return``). A signal whose
    hold runs past the prices has no outcome."""
    px = prices[["symbol", "date", "open", "close"]].copy()
    px["date"] = pd.to_datetime(px["date"])
    px = px.sort_values(["symbol", "date"])
    by = px.groupby("symbol", sort=False)
    px["entry"] = by["open"].shift(-1)
    px["exit"] = by["close"].shift(-horizon)
    px["exit_date"] = by["date"].shift(-horizon)
    buys = signals[signals["side"].astype(str).str.upper() == "BUY"][["symbol", "date"]]
    buys = buys.assign(date=pd.to_datetime(buys["date"]))
    out = buys.merge(px, on=["symbol", "date"], how="inner").dropna(subset=["entry", "exit"])
    return pd.DataFrame(
        {
            "symbol": out["symbol"].astype(str),
            "signal_date": out["date"],
            "exit_date": out["exit_date"],
            "return": out["exit"] / out["entry"] - 1.0,
        }
    ).reset_index(drop=True)


def smart_candidates(
    signals: pd.DataFrame,
    regimes: pd.DataFrame,
    settings: Settings,
    outcomes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The Smart Scanner's entries from the walk-forward BUY signals, point in time.

    With ``outcomes`` (:func:`signal_outcomes`), each month's tiers are the adaptive ranking of
    the outcomes closed before the month's first day, a symbol the quarterly curation dropped
    is left out, strength is 100 × P(BUY) × the tier multiplier, and the size is half Kelly
    from the symbol's (else its tier's, else all) closed outcomes × strength × the regime
    multiplier, capped by the tier — 0 without evidence, which the engine skips. Without
    ``outcomes`` every symbol is Average at the Average cap. Either way a signal enters only
    when its strength reaches the entry threshold of its day's regime.
    """
    from turbomode.risk.regime import entry_threshold

    missing = sorted({"date", "symbol", "side"} - set(signals.columns))
    if missing:
        raise SchemaError(f"signals: missing column(s) {missing}")
    if "strength" not in signals and "confidence" not in signals:
        raise SchemaError("signals: the Smart rules need a 'strength' (0–100) or 'confidence'")
    side = signals["side"].astype(str).str.upper()
    buys = signals[side == "BUY"].copy()
    buys["side"] = "BUY"
    buys["date"] = pd.to_datetime(buys["date"])
    if "strength" not in buys:
        buys["strength"] = 100.0 * buys["confidence"].astype(float)
    regime = pd.Series(regimes["regime"]).reindex(pd.DatetimeIndex(buys["date"]))
    buys["regime"] = regime.to_numpy()
    smart = settings.smart
    if outcomes is None:
        buys["tier"] = Tier.AVERAGE.value
        buys["size"] = min(smart.tier_cap[Tier.AVERAGE], smart.max_size)
    else:
        buys = _measured_tiers_and_sizes(buys, outcomes, settings)
    need = [entry_threshold(r, settings.regime) for r in buys["regime"]]
    buys = buys[buys["strength"].to_numpy() >= need].copy()
    return buys.reset_index(drop=True)


def _measured_tiers_and_sizes(
    buys: pd.DataFrame, outcomes: pd.DataFrame, settings: Settings
) -> pd.DataFrame:
    """Tier, curation, tier-adjusted strength and Kelly size per signal, month by month."""
    from turbomode.smart.run import kelly_inputs
    from turbomode.smart.sizing import position_size
    from turbomode.smart.state import TierState
    from turbomode.smart.tiers import curate_universe, month_start, quarter_start, rank_tiers

    smart = settings.smart
    months = buys["date"].map(lambda d: month_start(d.date()))
    parts = []
    for month, rows in buys.groupby(months, sort=True):
        symbols = sorted(rows["symbol"].astype(str).unique())
        ranks = rank_tiers(outcomes, month, smart)
        state = TierState(as_of=month, horizon=None, ranks=ranks)
        dropped = curate_universe(outcomes, quarter_start(month), symbols, smart).dropped
        kelly = kelly_inputs(outcomes, month, symbols, state, smart)
        rows = rows[~rows["symbol"].isin(list(dropped))].copy()
        tiers = [state.tier(str(sym)) for sym in rows["symbol"]]
        mult = np.array([smart.tier_multiplier[t] for t in tiers])
        rows["strength"] = np.clip(rows["strength"].to_numpy(dtype=float) * mult, 0.0, 100.0)
        rows["tier"] = [t.value for t in tiers]
        rows["size"] = [
            position_size(
                kelly[str(sym)].win_rate,
                kelly[str(sym)].payoff,
                strength,
                regime if isinstance(regime, str) else "CHOPPY",  # warm-up: multiplier 1.0
                tier,
                smart,
            ).size
            for sym, strength, regime, tier in zip(
                rows["symbol"], rows["strength"], rows["regime"], tiers, strict=True
            )
        ]
        rows["kelly_source"] = [kelly[str(sym)].source for sym in rows["symbol"]]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else buys.assign(tier=[], size=[])


def smart_screen(prices: pd.DataFrame, settings: Settings) -> Screen:
    """The Smart Scanner's portfolio constraints (:func:`turbomode.smart.portfolio.select`: 2
    per sector, correlation, heat, minimum size, Avoid, earnings) as the engine's daily
    screen; the backtest and the paper wallet both use it. Correlations are measured on
    returns up to the candidates' signal date."""
    from turbomode.smart.portfolio import Proposal, select, trailing_correlations
    from turbomode.smart.types import to_tier

    smart = settings.smart

    def screen(cands: pd.DataFrame, book: Book) -> dict[str, str]:
        # One proposal per symbol (the strongest row): a second row of the same symbol is
        # skipped by the engine as already held, and must not veto the first here.
        proposals = []
        for _, row in cands.drop_duplicates("symbol").iterrows():
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
        # Tonight's candidates are checked against each other too, so even on an empty book
        # the correlation limit needs the matrix as soon as two names are in play.
        correlations = None
        if len({p.ticker for p in proposals} | {h.ticker for h in holdings}) >= 2:
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
            out / "walkforward",
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
