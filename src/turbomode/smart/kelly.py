"""Kelly inputs: each candidate's win rate and payoff from closed trades, with where they came
from — the smart scan's job and the backtest's Smart candidates size on the same evidence.

The trades are a table of ``symbol, signal_date, exit_date, return`` (a win is a return above
zero): the outcome tracker's resolved BUY outcomes for the smart scan
(:func:`turbomode.smart.run.outcome_trades`), the signals' own outcomes for the backtest
(:func:`turbomode.smart.candidates.signal_outcomes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd

from turbomode.config import SmartSettings
from turbomode.smart.state import TierState
from turbomode.smart.tiers import SymbolRank, rank_tiers


@dataclass(frozen=True)
class KellyInput:
    """Win rate and payoff for one candidate, and where they came from (symbol, tier, all,
    none)."""

    win_rate: float
    payoff: float
    source: str
    n: int


NO_EVIDENCE = KellyInput(0.5, 1.0, "none", 0)  # Kelly p − (1 − p)/b = 0: no bet


def _usable(r: SymbolRank | None, min_trades: int) -> bool:
    return (
        r is not None
        and r.n >= min_trades
        and math.isfinite(r.win_rate)
        and math.isfinite(r.payoff)
        and r.payoff > 0.0
    )


def kelly_inputs(
    trades: pd.DataFrame,
    day: date,
    tickers: Sequence[str],
    tiers: TierState,
    settings: SmartSettings,
) -> dict[str, KellyInput]:
    """Each ticker's Kelly inputs on ``day``: its own trades, else its tier's pooled trades,
    else all trades (each over the ranking window, closed before ``day``, at least
    ``tier_min_trades`` with a win and a loss), else :data:`NO_EVIDENCE`."""
    need = settings.tier_min_trades
    own = rank_tiers(trades, day, settings) if len(trades) else {}
    by_tier: dict[str, SymbolRank] = {}
    pooled: dict[str, SymbolRank] = {}
    if len(trades):
        tier_of = trades["symbol"].astype(str).map(lambda s: tiers.tier(s).value)
        by_tier = rank_tiers(trades.assign(symbol=tier_of), day, settings)
        pooled = rank_tiers(trades.assign(symbol="*"), day, settings)
    out: dict[str, KellyInput] = {}
    for t in tickers:
        tier = tiers.tier(t).value
        for source, r in (
            ("symbol", own.get(t)),
            (f"tier {tier}", by_tier.get(tier)),
            ("all", pooled.get("*")),
        ):
            if r is not None and _usable(r, need):
                out[t] = KellyInput(r.win_rate, r.payoff, source, r.n)
                break
        else:
            out[t] = NO_EVIDENCE
    return out
