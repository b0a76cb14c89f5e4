"""Tiers from each symbol's measured signal performance: a monthly ranking, a quarterly cut.

**Ranking** (:func:`rank_tiers`) is point in time: on ``as_of`` it sees only trades that
*closed before* ``as_of`` (exit date < as_of) and no more than ``tier_lookback_days`` calendar
days earlier. Per symbol it measures n, the win rate and the expectancy (mean return per
trade), then:

* fewer than ``tier_min_trades`` closed trades → **Average**: no evidence either way;
* otherwise the first of ``tier_cutoffs`` whose win-rate and expectancy floors are both met,
  tried best first — by default Elite (≥ 60 %, ≥ +1.0 %), Strong (≥ 55 %, ≥ +0.5 %),
  Average (≥ 45 %, ≥ 0), Weak (≥ 40 %, ≥ −0.5 %);
* none met → **Avoid**.

**Monthly** (:func:`monthly_tiers`): the ranking taken on the first calendar day of the month,
so a symbol's tier stays fixed for the month and uses nothing from the month itself.

**Quarterly curation** (:func:`curate_universe`): on the first day of the quarter and on the
``curation_quarters − 1`` quarter starts before it, a symbol ranked Avoid every time is dropped
from the universe (persistently bad, not one bad stretch); every other symbol is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import pandas as pd

from turbomode.config import SmartSettings, Tier
from turbomode.smart.trades import normalize_trades


@dataclass(frozen=True)
class SymbolRank:
    """One symbol's measured performance and the tier it earned. ``payoff`` is the mean win
    over the mean loss (the Kelly 'b'); NaN when the trades have no win or no loss."""

    symbol: str
    tier: Tier
    n: int
    win_rate: float
    expectancy: float
    payoff: float
    reason: str


def month_start(day: date) -> date:
    """The first calendar day of ``day``'s month."""
    return day.replace(day=1)


def quarter_start(day: date) -> date:
    """The first calendar day of ``day``'s quarter."""
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _months_before(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) - months
    return date(index // 12, index % 12 + 1, 1)


def _tier_for(n: int, win_rate: float, expectancy: float, s: SmartSettings) -> tuple[Tier, str]:
    if n < s.tier_min_trades:
        return Tier.AVERAGE, f"only {n} closed trade(s) (< {s.tier_min_trades}): no evidence"
    stats = f"win rate {win_rate:.3f}, expectancy {expectancy:+.4f} over {n} trades"
    for cut in s.tier_cutoffs:
        if win_rate >= cut.min_win_rate and expectancy >= cut.min_expectancy:
            return cut.tier, stats
    return Tier.AVOID, f"{stats}: below every cut-off"


def _payoff(returns: pd.Series) -> float:
    wins = returns[returns > 0.0]
    losses = returns[returns <= 0.0]
    if wins.empty or losses.empty or losses.mean() == 0.0:
        return math.nan
    return float(wins.mean() / -losses.mean())


def rank_tiers(
    trades: pd.DataFrame,
    as_of: date,
    settings: SmartSettings | None = None,
    symbols: Iterable[str] | None = None,
) -> dict[str, SymbolRank]:
    """Each symbol's tier on ``as_of`` from the trades closed before it (module docstring).

    ``symbols`` adds symbols without closed trades in the window (ranked Average); by default
    only the symbols with such trades are ranked.
    """
    s = settings or SmartSettings()
    t = normalize_trades(trades)
    end = pd.Timestamp(as_of)
    start = end - pd.Timedelta(days=s.tier_lookback_days)
    window = t.loc[(t["exit_date"] < end) & (t["exit_date"] >= start)]
    # Only symbols with a trade in the window (or asked for): a symbol first traded later
    # must not appear in an earlier ranking.
    names = set(window["symbol"].astype(str)) | set(symbols or ())
    groups = {str(k): g for k, g in window.groupby("symbol")}
    out: dict[str, SymbolRank] = {}
    for sym in sorted(names):
        g = groups.get(sym)
        if g is None or g.empty:
            tier, reason = _tier_for(0, math.nan, math.nan, s)
            out[sym] = SymbolRank(sym, tier, 0, math.nan, math.nan, math.nan, reason)
            continue
        n = len(g)
        win_rate = float(g["win"].mean())
        expectancy = float(g["return"].mean())
        tier, reason = _tier_for(n, win_rate, expectancy, s)
        out[sym] = SymbolRank(sym, tier, n, win_rate, expectancy, _payoff(g["return"]), reason)
    return out


def monthly_tiers(
    trades: pd.DataFrame,
    day: date,
    settings: SmartSettings | None = None,
    symbols: Iterable[str] | None = None,
) -> dict[str, SymbolRank]:
    """The ranking in force on ``day``: :func:`rank_tiers` on the first of its month."""
    return rank_tiers(trades, month_start(day), settings, symbols)


def tier_map(ranks: Mapping[str, SymbolRank]) -> dict[str, Tier]:
    """symbol → tier, for the scanner."""
    return {sym: r.tier for sym, r in ranks.items()}


@dataclass(frozen=True)
class Curation:
    """The universe after a quarterly curation: kept symbols and, per dropped one, why."""

    as_of: date
    kept: tuple[str, ...]
    dropped: dict[str, str]


def curate_universe(
    trades: pd.DataFrame,
    day: date,
    symbols: Iterable[str],
    settings: SmartSettings | None = None,
) -> Curation:
    """Drop the symbols of ``symbols`` ranked Avoid at each of the last ``curation_quarters``
    quarter starts up to ``day`` (module docstring); keep the rest, in the given order."""
    s = settings or SmartSettings()
    universe = list(dict.fromkeys(symbols))
    q0 = quarter_start(day)
    dates = [_months_before(q0, 3 * k) for k in range(s.curation_quarters)]
    rankings = [rank_tiers(trades, d, s, universe) for d in dates]
    dropped: dict[str, str] = {}
    for sym in universe:
        if all(r[sym].tier is Tier.AVOID for r in rankings):
            when = ", ".join(d.isoformat() for d in reversed(dates))
            dropped[sym] = (
                f"Avoid at each quarterly ranking ({when}); last: {rankings[0][sym].reason}"
            )
    kept = tuple(sym for sym in universe if sym not in dropped)
    return Curation(q0, kept, dropped)
