"""Tiers: cut-offs by hand, point in time (only trades closed before the ranking date), the
monthly schedule and the quarterly curation."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd
import pytest

from turbomode.config import SmartSettings, Tier
from turbomode.smart.tiers import (
    curate_universe,
    month_start,
    monthly_tiers,
    quarter_start,
    rank_tiers,
    tier_map,
)

S = SmartSettings()
AS_OF = date(2024, 3, 1)


def rows(symbol: str, returns: list[float], last_exit: date) -> list[dict]:
    """One trade a day, the last one closing on ``last_exit``; each signalled 3 days earlier."""
    out = []
    for i, r in enumerate(returns):
        exit_day = last_exit - timedelta(days=len(returns) - 1 - i)
        out.append(
            {
                "symbol": symbol,
                "signal_date": exit_day - timedelta(days=3),
                "exit_date": exit_day,
                "return": r,
            }
        )
    return out


def book(last_exit: date = date(2024, 2, 28)) -> pd.DataFrame:
    table = {
        # 7 × +2 %, 3 × −1 %: win rate 0.70, expectancy +1.1 %, payoff 2.0
        "ELT": [0.02] * 7 + [-0.01] * 3,
        # 6 × +2 %, 4 × −1.5 %: 0.60, +0.6 % — Elite needs +1.0 %
        "STR": [0.02] * 6 + [-0.015] * 4,
        # 5 × +1.5 %, 5 × −1 %: 0.50, +0.25 %
        "AVG": [0.015] * 5 + [-0.01] * 5,
        # 4 × +1 %, 6 × −1 %: 0.40, −0.2 %
        "WEK": [0.01] * 4 + [-0.01] * 6,
        # 3 × +1 %, 7 × −1 %: 0.30, −0.4 %
        "AVD": [0.01] * 3 + [-0.01] * 7,
        # 5 winners only: too few trades to judge
        "FEW": [0.05] * 5,
    }
    return pd.DataFrame([r for sym, rets in table.items() for r in rows(sym, rets, last_exit)])


def test_cut_offs_by_hand() -> None:
    ranks = rank_tiers(book(), AS_OF, S)
    assert tier_map(ranks) == {
        "AVD": Tier.AVOID,
        "AVG": Tier.AVERAGE,
        "ELT": Tier.ELITE,
        "FEW": Tier.AVERAGE,
        "STR": Tier.STRONG,
        "WEK": Tier.WEAK,
    }
    elite = ranks["ELT"]
    assert (elite.n, elite.win_rate) == (10, pytest.approx(0.7, abs=1e-15))
    assert elite.expectancy == pytest.approx(0.011, abs=1e-15)
    assert elite.payoff == pytest.approx(2.0, abs=1e-12)
    assert ranks["STR"].payoff == pytest.approx(0.02 / 0.015, abs=1e-12)
    assert ranks["FEW"].reason == "only 5 closed trade(s) (< 10): no evidence"
    assert math.isnan(ranks["FEW"].payoff)  # no losses: no payoff ratio
    assert ranks["AVD"].reason.endswith("below every cut-off")


def test_symbols_without_trades_are_average() -> None:
    ranks = rank_tiers(book(), AS_OF, S, symbols=["NEW"])
    assert ranks["NEW"].tier is Tier.AVERAGE
    assert ranks["NEW"].n == 0


def test_only_trades_closed_before_as_of_count() -> None:
    # The same book closing on the ranking date itself: nothing has closed *before* it.
    ranks = rank_tiers(book(last_exit=AS_OF), AS_OF, S)
    assert ranks["ELT"].n == 9  # its last trade exits on AS_OF and is excluded
    assert ranks["AVD"].n == 9
    late = book(last_exit=AS_OF + timedelta(days=30))
    assert rank_tiers(late, AS_OF, S) == {}  # a symbol first traded later is not even named
    asked = rank_tiers(late, AS_OF, S, symbols=["ELT", "AVD"])
    assert [(r.symbol, r.n, r.tier) for r in asked.values()] == [
        ("AVD", 0, Tier.AVERAGE),
        ("ELT", 0, Tier.AVERAGE),
    ]


def test_future_trades_do_not_change_the_ranking() -> None:
    past = book()
    future = pd.DataFrame(rows("ELT", [-0.05] * 30, date(2024, 4, 30)))
    assert rank_tiers(pd.concat([past, future]), AS_OF, S) == rank_tiers(past, AS_OF, S)


def test_lookback_drops_old_trades() -> None:
    s = SmartSettings(tier_lookback_days=5)
    ranks = rank_tiers(book(), AS_OF, s)
    # exits on Feb 24..28 fall inside [Feb 25, Mar 1): 4 trades, under the minimum of 10
    assert ranks["ELT"].n == 4
    assert ranks["ELT"].tier is Tier.AVERAGE


def test_custom_cut_offs_and_minimum() -> None:
    s = SmartSettings(tier_min_trades=3)
    assert rank_tiers(book(), AS_OF, s)["FEW"].tier is Tier.ELITE  # 5 of 5, +5 %


def test_month_and_quarter_starts() -> None:
    assert month_start(date(2024, 3, 20)) == date(2024, 3, 1)
    assert quarter_start(date(2024, 3, 20)) == date(2024, 1, 1)
    assert quarter_start(date(2024, 12, 31)) == date(2024, 10, 1)


def test_monthly_ranking_is_fixed_within_the_month() -> None:
    t = pd.concat([book(), pd.DataFrame(rows("ELT", [-0.05] * 20, date(2024, 3, 25)))])
    on_20th = monthly_tiers(t, date(2024, 3, 20), S)
    assert on_20th == rank_tiers(t, date(2024, 3, 1), S)
    assert on_20th["ELT"].tier is Tier.ELITE  # March's losses wait for April's ranking
    assert monthly_tiers(t, date(2024, 4, 2), S)["ELT"].tier is Tier.AVOID


def test_quarterly_curation_drops_only_persistent_avoids() -> None:
    # AVD is bad in both quarters; WEK's bad run came only in Q1 2024 (it was Elite before).
    q4 = pd.DataFrame(
        rows("AVD", [0.01] * 3 + [-0.01] * 7, date(2023, 12, 20))
        + rows("WEK", [0.02] * 8 + [-0.01] * 2, date(2023, 12, 20))
    )
    q1 = pd.DataFrame(
        rows("AVD", [0.01] * 3 + [-0.01] * 7, date(2024, 3, 20))
        + rows("WEK", [0.01] * 2 + [-0.01] * 18, date(2024, 3, 20))
    )
    s = SmartSettings(tier_lookback_days=80)
    t = pd.concat([q4, q1])
    out = curate_universe(t, date(2024, 5, 15), ["AVD", "WEK", "ELT"], s)
    assert out.as_of == date(2024, 4, 1)
    assert out.kept == ("WEK", "ELT")
    assert list(out.dropped) == ["AVD"]
    assert out.dropped["AVD"].startswith(
        "Avoid at each quarterly ranking (2024-01-01, 2024-04-01); last: win rate 0.300"
    )
    once = curate_universe(
        t,
        date(2024, 5, 15),
        ["AVD", "WEK"],
        SmartSettings(tier_lookback_days=80, curation_quarters=1),
    )
    assert sorted(once.dropped) == ["AVD", "WEK"]
