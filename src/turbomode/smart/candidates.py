"""The Smart Scanner's entries from a table of BUY signals, each decision made from what was
known at its date: the backtest's Smart rule set trades them and the paper wallet's Smart days
enter them.

A signal's outcome is judged as the outcome tracker judges it (:func:`signal_outcomes`); month
by month those closed before the month rank the tiers, curate the universe and give the Kelly
inputs (:mod:`turbomode.smart.kelly`) a size is made from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from turbomode.config import Settings, Tier
from turbomode.errors import SchemaError
from turbomode.smart.kelly import kelly_inputs
from turbomode.smart.sizing import position_size
from turbomode.smart.state import TierState
from turbomode.smart.tiers import curate_universe, month_start, quarter_start, rank_tiers


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
    """The Smart Scanner's entries from the BUY signals, point in time.

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
