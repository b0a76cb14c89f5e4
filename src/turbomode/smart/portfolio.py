"""Which sized signals the portfolio takes, and why each other one is skipped.

:func:`select` walks the proposals strongest first (adjusted strength descending, ticker
ascending on ties) and greedily adds each to the book — the open holdings plus the proposals
already taken tonight — unless one of these checks, in this order, gives a reason:

1. **tier** — Avoid is never traded;
2. **earnings** — ``earnings_soon`` and ``skip_earnings``: a report inside the hold can gap
   through any stop;
3. **already held** — one position per ticker;
4. **minimum size** — size below ``min_size`` (2 %): too small to matter, still takes a slot;
   or (when ``shares`` is given) a size that buys no whole share;
5. **max positions** — the book already holds ``max_positions`` (6);
6. **per sector** — the book already holds ``max_per_sector`` (2) of the candidate's sector;
7. **correlation** — the candidate and the book positions it correlates with above
   ``correlation_threshold`` (0.7) would exceed ``max_correlated`` (3) positions, i.e. it is
   skipped when it correlates above 0.7 with 3 − 1 = 2 or more positions already in the book.
   A missing or NaN correlation (too little common history) counts as not correlated;
8. **heat** — the book's Σ size × stop distance plus the candidate's would exceed
   ``max_heat`` (15 %).

Candidate-intrinsic checks (1–4) come before the book's capacity (5–8), so a signal that could
never be taken says so rather than "portfolio full". The checks never resize a proposal: the
size the scanner published is the size taken, or the signal is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd

from turbomode.config import SmartSettings, Tier
from turbomode.errors import SchemaError
from turbomode.smart.types import Holding

# Float slack for "at most": 0.12 × 0.03 + … summing to 0.15000000000000002 is still 15 %.
_EPS = 1e-12


@dataclass(frozen=True)
class Proposal:
    """A sized signal asking for a place in the book."""

    ticker: str
    sector: str
    strength: float
    tier: Tier
    size: float
    stop_distance: float
    earnings_soon: bool = False
    shares: int | None = None


@dataclass(frozen=True)
class Decision:
    """A proposal and, when it was skipped, the reason."""

    proposal: Proposal
    reason: str | None

    @property
    def taken(self) -> bool:
        return self.reason is None


def _corr(correlations: pd.DataFrame | None, a: str, b: str) -> float:
    if correlations is None or a not in correlations.index or b not in correlations.columns:
        return math.nan
    value = correlations.at[a, b]
    return float(value) if isinstance(value, int | float) else math.nan


def skip_reason(
    p: Proposal,
    book: Sequence[Holding],
    settings: SmartSettings,
    correlations: pd.DataFrame | None = None,
) -> str | None:
    """The first check (module docstring order) that keeps ``p`` out of ``book``, or None."""
    s = settings
    if p.tier is Tier.AVOID:
        return "tier Avoid is never traded"
    if s.skip_earnings and p.earnings_soon:
        return f"earnings within {s.earnings_window_days} business day(s)"
    if any(h.ticker == p.ticker for h in book):
        return "already held"
    if p.size < s.min_size - _EPS:
        return f"size {p.size:.2%} below the {s.min_size:.2%} minimum"
    if p.shares == 0:
        return f"size {p.size:.2%} buys no whole share"
    if len(book) >= s.max_positions:
        return f"portfolio full: {len(book)} positions (max {s.max_positions})"
    in_sector = sum(1 for h in book if h.sector == p.sector)
    if in_sector >= s.max_per_sector:
        return f"{in_sector} positions in {p.sector} already (max {s.max_per_sector})"
    thr = s.correlation_threshold
    correlated = [h.ticker for h in book if _corr(correlations, p.ticker, h.ticker) > thr]
    if len(correlated) + 1 > s.max_correlated:
        return (
            f"correlated above {thr:g} with {len(correlated)} held ({', '.join(correlated)}): "
            f"max {s.max_correlated} in a correlated group"
        )
    held_heat = sum(h.heat for h in book)
    new_heat = p.size * p.stop_distance
    if held_heat + new_heat > s.max_heat + _EPS:
        return f"heat {held_heat:.2%} + {new_heat:.2%} would exceed the {s.max_heat:.2%} maximum"
    return None


def select(
    proposals: Sequence[Proposal],
    holdings: Sequence[Holding],
    settings: SmartSettings | None = None,
    correlations: pd.DataFrame | None = None,
) -> list[Decision]:
    """One decision per proposal, strongest first (module docstring). ``correlations`` is a
    ticker × ticker matrix (:func:`trailing_correlations`); None skips no one for correlation,
    so pass it whenever the book is not empty."""
    s = settings or SmartSettings()
    book: list[Holding] = list(holdings)
    decisions: list[Decision] = []
    for p in sorted(proposals, key=lambda x: (-x.strength, x.ticker)):
        reason = skip_reason(p, book, s, correlations)
        if reason is None:
            book.append(Holding(p.ticker, p.sector, p.size, p.stop_distance))
        decisions.append(Decision(p, reason))
    return decisions


def trailing_correlations(
    prices: pd.DataFrame,
    as_of: date,
    lookback: int = 60,
    min_periods: int = 20,
) -> pd.DataFrame:
    """Pearson correlations of daily close-to-close returns over the last ``lookback`` return
    days up to and including ``as_of`` — nothing after the signal date. ``prices`` is the long
    frame (symbol, date, close); a pair with fewer than ``min_periods`` common returns is NaN.
    """
    missing = [c for c in ("symbol", "date", "close") if c not in prices.columns]
    if missing:
        raise SchemaError(f"trailing_correlations needs symbol, date, close; missing {missing}")
    p = prices.loc[pd.to_datetime(prices["date"]) <= pd.Timestamp(as_of)]
    wide = p.assign(date=pd.to_datetime(p["date"])).pivot(
        index="date", columns="symbol", values="close"
    )
    returns = wide.sort_index().pct_change(fill_method=None).iloc[1:].tail(lookback)
    return returns.corr(min_periods=min_periods)
