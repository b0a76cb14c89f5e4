"""The Smart Scanner's portfolio step: from scored candidates to :class:`SignalV2` records.

For each candidate, in this order:

1. **tier** — from the monthly ranking (:mod:`turbomode.smart.tiers`); a symbol the ranking
   does not know is Average (no evidence either way);
2. **adjusted strength** — raw strength × every active matching modifier
   (:func:`~turbomode.smart.modifiers.apply_modifiers`, penalties only when
   ``penalties_only``) × the tier multiplier, clipped to 0–100;
3. **size** — :func:`~turbomode.smart.sizing.position_size` from the candidate's measured
   win rate and payoff, the adjusted strength, the regime and the tier;
4. **exit plan** — the tier's targets, stop and max hold around the signal's close (the
   entry re-centres it on the fill);
5. **portfolio** — :func:`~turbomode.smart.portfolio.select` takes or skips each, strongest
   first, with a reason.

A taken signal gets whole shares (rounded down), its currency risk shares × (price − stop)
and its heat size × stop distance; a skipped one keeps its strengths and plan with size,
shares, risk and heat 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from turbomode.config import SmartSettings, Tier
from turbomode.smart.exits import ExitPlan, exit_plan
from turbomode.smart.modifiers import STRENGTH_RANGE, ModifierRule, apply_modifiers
from turbomode.smart.portfolio import Proposal, select
from turbomode.smart.sizing import position_size, risk_amount, shares_for
from turbomode.smart.types import Holding, SignalV2, SmartInputError, check_regime


@dataclass(frozen=True)
class SmartCandidate:
    """A scored BUY candidate from tonight's close. ``strength`` is the model's 0–100 score;
    ``win_rate`` and ``payoff`` are the symbol's measured ones (e.g. from
    :class:`~turbomode.smart.tiers.SymbolRank`) that Kelly sizes from; ``features`` is the
    row the modifier rules read."""

    ticker: str
    sector: str
    signal_date: date
    price: float
    strength: float
    win_rate: float
    payoff: float
    features: Mapping[str, float] = field(default_factory=dict)
    sector_momentum: float | None = None
    earnings_soon: bool = False


def earnings_soon(signal_date: date, next_earnings: date | None, window_days: int) -> bool:
    """Whether the next earnings date falls from ``signal_date`` to ``window_days`` business
    days after it; an unknown date is not flagged."""
    if next_earnings is None or next_earnings < signal_date:
        return False
    return int(np.busday_count(signal_date, next_earnings)) <= window_days


def adjusted_strength(
    strength: float,
    tier: Tier,
    features: Mapping[str, float],
    rules: Sequence[ModifierRule],
    settings: SmartSettings,
) -> tuple[float, tuple[str, ...]]:
    """Raw strength × active modifiers × tier multiplier, clipped to 0–100, and the names of
    the modifiers applied."""
    x, applied = apply_modifiers(strength, features, rules, settings.penalties_only)
    lo, hi = STRENGTH_RANGE
    return min(max(x * settings.tier_multiplier[tier], lo), hi), applied


def smart_scan(
    candidates: Sequence[SmartCandidate],
    *,
    regime: str,
    tiers: Mapping[str, Tier],
    rules: Sequence[ModifierRule],
    holdings: Sequence[Holding],
    equity: float,
    correlations: pd.DataFrame | None = None,
    settings: SmartSettings | None = None,
) -> list[SignalV2]:
    """One :class:`SignalV2` per candidate, strongest first (module docstring)."""
    s = settings or SmartSettings()
    check_regime(regime)
    prepared: dict[str, tuple[SmartCandidate, Tier, float, tuple[str, ...], ExitPlan | None]] = {}
    proposals: list[Proposal] = []
    for c in candidates:
        if c.ticker in prepared:
            raise SmartInputError(f"candidate {c.ticker!r} appears twice")
        tier = tiers.get(c.ticker, Tier.AVERAGE)
        adj, applied = adjusted_strength(c.strength, tier, c.features, rules, s)
        size = position_size(c.win_rate, c.payoff, adj, regime, tier, s).size
        plan = None if tier is Tier.AVOID else exit_plan(tier, c.price, s)
        stop_distance = plan.stop_distance if plan is not None else 0.0
        shares = shares_for(equity, size, c.price)
        prepared[c.ticker] = (c, tier, adj, applied, plan)
        proposals.append(
            Proposal(c.ticker, c.sector, adj, tier, size, stop_distance, c.earnings_soon, shares)
        )
    out: list[SignalV2] = []
    for d in select(proposals, holdings, s, correlations):
        c, tier, adj, applied, plan = prepared[d.proposal.ticker]
        size = d.proposal.size if d.taken else 0.0
        shares = shares_for(equity, size, c.price) if d.taken else 0
        risk = risk_amount(shares, c.price, plan.stop) if d.taken and plan is not None else 0.0
        out.append(
            SignalV2(
                symbol=c.ticker,
                sector=c.sector,
                signal_date=c.signal_date,
                price=float(c.price),
                strength_raw=float(c.strength),
                strength_adjusted=adj,
                tier=tier,
                regime=regime,
                size=size,
                shares=shares,
                risk=risk,
                heat=size * d.proposal.stop_distance,
                target_1=None if plan is None else plan.target_1,
                target_2=None if plan is None else plan.target_2,
                stop=None if plan is None else plan.stop,
                max_hold_days=None if plan is None else plan.max_hold_days,
                sector_momentum=c.sector_momentum,
                modifiers=applied,
                earnings_soon=c.earnings_soon,
                skip_reason=d.reason,
            )
        )
    return out
