"""The Smart Scanner's portfolio limits as the engine's daily screen, out of the jobs that use
it (the backtest's Smart rule set, the paper wallet's Smart days) so both refuse the same
entries."""

from __future__ import annotations

import pandas as pd

from turbomode.backtest.engine import Book, Screen
from turbomode.config import Settings


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
