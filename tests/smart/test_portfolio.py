"""Portfolio constraints: one test per constraint, the skip reasons and their order."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from turbomode.config import SmartSettings, Tier
from turbomode.errors import SchemaError
from turbomode.smart.portfolio import Proposal, select, skip_reason, trailing_correlations
from turbomode.smart.types import Holding

S = SmartSettings()
SECTORS = [
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Materials",
    "Utilities",
    "Real Estate",
    "Consumer Staples",
]


def prop(
    ticker: str,
    sector: str = "Energy",
    strength: float = 70.0,
    size: float = 0.05,
    stop: float = 0.03,
    tier: Tier = Tier.STRONG,
    earnings: bool = False,
    shares: int | None = None,
) -> Proposal:
    return Proposal(ticker, sector, strength, tier, size, stop, earnings, shares)


def held(ticker: str, sector: str, size: float = 0.05, stop: float = 0.03) -> Holding:
    return Holding(ticker, sector, size, stop)


def reasons(decisions: list) -> dict[str, str | None]:
    return {d.proposal.ticker: d.reason for d in decisions}


# --- max positions -------------------------------------------------------------------------


def test_max_positions_with_a_full_book() -> None:
    book = [held(f"H{i}", SECTORS[i]) for i in range(6)]
    out = select([prop("NEW", "Consumer Staples")], book, S)
    assert reasons(out) == {"NEW": "portfolio full: 6 positions (max 6)"}


def test_max_positions_fills_up_within_one_night() -> None:
    book = [held("H0", "Energy"), held("H1", "Financials")]
    proposals = [prop(f"P{i}", SECTORS[i], strength=90 - i) for i in range(2, 8)]
    out = reasons(select(proposals, book, S))
    assert [t for t, r in out.items() if r is None] == ["P2", "P3", "P4", "P5"]
    assert out["P6"] == out["P7"] == "portfolio full: 6 positions (max 6)"


# --- per sector ----------------------------------------------------------------------------


def test_at_most_two_per_sector() -> None:
    book = [held("XOM", "Energy"), held("CVX", "Energy")]
    out = reasons(select([prop("COP", "Energy"), prop("NEE", "Utilities")], book, S))
    assert out == {"COP": "2 positions in Energy already (max 2)", "NEE": None}


def test_per_sector_counts_tonights_picks() -> None:
    proposals = [prop(t, "Energy", strength=s) for t, s in (("A", 90), ("B", 80), ("C", 70))]
    out = reasons(select(proposals, [], S))
    assert out == {"A": None, "B": None, "C": "2 positions in Energy already (max 2)"}


# --- correlation ---------------------------------------------------------------------------


def corr_matrix(pairs: dict[tuple[str, str], float], names: list[str]) -> pd.DataFrame:
    m = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for (a, b), v in pairs.items():
        m.loc[a, b] = m.loc[b, a] = v
    return m


def test_correlated_group_of_three_is_allowed_four_is_not() -> None:
    names = ["A", "B", "C", "X", "Y"]
    book = [held("A", "Energy"), held("B", "Financials"), held("C", "Materials")]
    corr = corr_matrix(
        {
            ("X", "A"): 0.8,
            ("X", "B"): 0.75,  # X with A and B: a group of 3 — allowed
            ("Y", "A"): 0.9,
            ("Y", "B"): 0.71,
            ("Y", "C"): 0.95,  # Y with A, B and C: a group of 4 — skipped
        },
        names,
    )
    assert skip_reason(prop("X", "Utilities"), book, S, corr) is None
    assert skip_reason(prop("Y", "Utilities"), book, S, corr) == (
        "correlated above 0.7 with 3 held (A, B, C): max 3 in a correlated group"
    )


def test_correlation_threshold_is_strict_and_nan_is_uncorrelated() -> None:
    names = ["A", "B", "C", "Y"]
    book = [held("A", "Energy"), held("B", "Financials"), held("C", "Materials")]
    for third in (0.7, float("nan")):  # exactly 0.7 is not "above 0.7"; NaN is unknown
        corr = corr_matrix({("Y", "A"): 0.9, ("Y", "B"): 0.8, ("Y", "C"): third}, names)
        assert skip_reason(prop("Y", "Utilities"), book, S, corr) is None
    corr = corr_matrix({("Y", "A"): 0.9, ("Y", "B"): 0.8, ("Y", "C"): 0.7000001}, names)
    assert skip_reason(prop("Y", "Utilities"), book, S, corr) is not None


def test_correlation_counts_tonights_picks() -> None:
    names = ["A", "B", "P", "Q"]
    corr = corr_matrix(
        {("P", "A"): 0.8, ("P", "B"): 0.8, ("Q", "A"): 0.8, ("Q", "B"): 0.8, ("Q", "P"): 0.8},
        names,
    )
    book = [held("A", "Energy"), held("B", "Financials")]
    out = reasons(select([prop("P", "Materials", 90), prop("Q", "Utilities", 80)], book, S, corr))
    assert out["P"] is None
    assert out["Q"] == "correlated above 0.7 with 3 held (A, B, P): max 3 in a correlated group"


# --- heat ----------------------------------------------------------------------------------


def test_heat_limit() -> None:
    # Holdings from a wider-stop rule set: 0.10 × 0.60 + 0.10 × 0.80 = 0.14 heat already.
    book = [held("A", "Energy", 0.10, 0.60), held("B", "Financials", 0.10, 0.80)]
    fits = prop("C", "Materials", size=0.10, stop=0.10)  # +0.01 → exactly 0.15: allowed
    too_hot = prop("D", "Utilities", size=0.10, stop=0.11)  # +0.011 → 0.151
    assert skip_reason(fits, book, S) is None
    assert skip_reason(too_hot, book, S) == "heat 14.00% + 1.10% would exceed the 15.00% maximum"


def test_heat_with_a_lower_limit_counts_tonights_picks() -> None:
    s = SmartSettings(max_heat=0.005)
    proposals = [prop("A", "Energy", 90, 0.10, 0.03), prop("B", "Utilities", 80, 0.10, 0.03)]
    out = reasons(select(proposals, [], s))
    assert out == {"A": None, "B": "heat 0.30% + 0.30% would exceed the 0.50% maximum"}


def test_trailed_holding_carries_no_heat() -> None:
    assert held("A", "Energy", 0.15, 0.0).heat == 0.0


# --- minimum size, tier, earnings, already held --------------------------------------------


def test_minimum_size() -> None:
    assert skip_reason(prop("A", size=0.0199), [], S) == "size 1.99% below the 2.00% minimum"
    assert skip_reason(prop("A", size=0.02), [], S) is None


def test_a_size_that_buys_no_share_is_skipped() -> None:
    assert skip_reason(prop("A", size=0.05, shares=0), [], S) == "size 5.00% buys no whole share"
    assert skip_reason(prop("A", size=0.05, shares=1), [], S) is None


def test_avoid_tier_is_never_traded() -> None:
    assert skip_reason(prop("A", tier=Tier.AVOID), [], S) == "tier Avoid is never traded"


def test_earnings_window() -> None:
    assert skip_reason(prop("A", earnings=True), [], S) == "earnings within 3 business day(s)"
    assert skip_reason(prop("A", earnings=True), [], SmartSettings(skip_earnings=False)) is None


def test_already_held() -> None:
    assert skip_reason(prop("A"), [held("A", "Energy")], S) == "already held"


def test_intrinsic_reasons_come_before_capacity() -> None:
    full = [held(f"H{i}", SECTORS[i]) for i in range(6)]
    assert skip_reason(prop("A", tier=Tier.AVOID, size=0.0), full, S) == (
        "tier Avoid is never traded"
    )
    assert skip_reason(prop("A", size=0.01), full, S) == "size 1.00% below the 2.00% minimum"


def test_strongest_first_wins_the_last_slot() -> None:
    book = [held("XOM", "Energy")]
    out = select([prop("WEAKER", "Energy", 60), prop("STRONGER", "Energy", 75)], book, S)
    assert [d.proposal.ticker for d in out] == ["STRONGER", "WEAKER"]
    assert out[0].taken
    assert out[1].reason == "2 positions in Energy already (max 2)"


# --- trailing correlations -----------------------------------------------------------------


def prices_from_returns(returns: dict[str, list[float]], start: date) -> pd.DataFrame:
    rows = []
    for sym, rets in returns.items():
        p = 100.0
        rows.append((sym, start, p))
        for i, r in enumerate(rets, start=1):
            p *= 1.0 + r
            rows.append((sym, start + timedelta(days=i), p))
    return pd.DataFrame(rows, columns=["symbol", "date", "close"])


def test_trailing_correlation_by_hand() -> None:
    # x = 1, 2, 3 %; y = 1, 3, 2 %: cov 1, var 2 and 2 → r = 0.5; z = −x → −1
    prices = prices_from_returns(
        {"X": [0.01, 0.02, 0.03], "Y": [0.01, 0.03, 0.02], "Z": [-0.01, -0.02, -0.03]},
        date(2024, 1, 1),
    )
    c = trailing_correlations(prices, date(2024, 1, 4), lookback=60, min_periods=3)
    assert c.loc["X", "Y"] == pytest.approx(0.5, abs=1e-9)
    assert c.loc["X", "Z"] == pytest.approx(-1.0, abs=1e-9)


def test_trailing_correlation_ignores_the_future_and_respects_lookback() -> None:
    past = {"X": [0.01, 0.02, 0.03], "Y": [0.01, 0.03, 0.02]}
    future = {"X": [*past["X"], 0.05, -0.05], "Y": [*past["Y"], -0.05, 0.05]}
    start = date(2024, 1, 1)
    as_of = date(2024, 1, 4)
    a = trailing_correlations(prices_from_returns(past, start), as_of, min_periods=3)
    b = trailing_correlations(prices_from_returns(future, start), as_of, min_periods=3)
    pd.testing.assert_frame_equal(a, b)
    # The last 2 returns only (2 → 3 %, 3 → 2 %): perfectly anti-correlated.
    c = trailing_correlations(prices_from_returns(past, start), as_of, lookback=2, min_periods=2)
    assert c.loc["X", "Y"] == pytest.approx(-1.0, abs=1e-9)
    d = trailing_correlations(prices_from_returns(past, start), as_of, lookback=2, min_periods=3)
    assert math.isnan(float(d.to_numpy()[0, 1]))


def test_trailing_correlation_needs_columns() -> None:
    with pytest.raises(SchemaError, match="close"):
        trailing_correlations(pd.DataFrame({"symbol": [], "date": []}), date(2024, 1, 1))
