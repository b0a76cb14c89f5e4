"""The Smart Scanner's entries from BUY signals: the regime's entry threshold, each signal's
outcome as the tracker judges it, and tiers and Kelly sizes measured point in time."""

from __future__ import annotations

import pandas as pd
import pytest

from turbomode.config import Settings
from turbomode.smart.candidates import signal_outcomes, smart_candidates


def test_smart_candidates_take_buys_above_the_days_regime_threshold() -> None:
    days = pd.to_datetime(["2023-01-03", "2023-01-04", "2023-01-05"])
    regimes = pd.DataFrame({"regime": ["BULL", "VOLATILE", None]}, index=days)
    signals = pd.DataFrame(
        {
            "date": days[[0, 0, 0, 1, 1, 2, 2]],
            "symbol": ["A", "B", "C", "D", "E", "F", "G"],
            "side": ["BUY", "BUY", "SELL", "BUY", "BUY", "BUY", "BUY"],
            "strength": [64.9, 65.0, 90.0, 44.9, 45.0, 59.9, 60.0],
        }
    )
    got = smart_candidates(signals, regimes, Settings())
    # BULL needs 65, VOLATILE 45, no regime the base 60; SELLs never (long only).
    assert got["symbol"].tolist() == ["B", "E", "G"]
    assert got["regime"].tolist()[:2] == ["BULL", "VOLATILE"] and pd.isna(got["regime"].iloc[2])
    assert set(got["tier"]) == {"Average"}


def test_signal_outcomes_enter_next_open_and_exit_h_closes_later() -> None:
    days = pd.bdate_range("2023-01-02", periods=6)
    prices = pd.DataFrame(
        {
            "symbol": "A",
            "date": days,
            "open": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
            "close": [10.5, 11.5, 12.5, 13.5, 14.5, 15.5],
        }
    )
    signals = pd.DataFrame(
        {"date": days[[0, 1, 3, 4]], "symbol": "A", "side": ["BUY", "SELL", "buy", "BUY"]}
    )
    got = signal_outcomes(signals, prices, horizon=2)
    # day 0: in at day 1's open 11, out at day 2's close 12.5; day 3: 14 → 15.5; the SELL is
    # not a BUY outcome, and day 4's hold runs past the data
    assert got.to_dict("records") == [
        {
            "symbol": "A",
            "signal_date": days[0],
            "exit_date": days[2],
            "return": pytest.approx(12.5 / 11.0 - 1),
        },
        {
            "symbol": "A",
            "signal_date": days[3],
            "exit_date": days[5],
            "return": pytest.approx(15.5 / 14.0 - 1),
        },
    ]


def test_smart_candidates_measure_tiers_and_kelly_point_in_time() -> None:
    """A: 12 outcomes closed in January, 9 at +3 % and 3 at −1 % → win rate 0.75, expectancy
    +2 %, payoff 3 → Elite; full Kelly 0.75 − 0.25 / 3 = 2/3, half Kelly 1/3. B has none: its
    tier is Average and its Kelly inputs come from all outcomes (A's)."""
    jan = pd.bdate_range("2023-01-02", periods=12)
    outcomes = pd.DataFrame(
        {
            "symbol": "A",
            "signal_date": jan - pd.Timedelta(days=1),
            "exit_date": jan,
            "return": [0.03] * 9 + [-0.01] * 3,
        }
    )
    days = pd.to_datetime(["2023-01-20", "2023-02-01", "2023-02-02"])
    regimes = pd.DataFrame({"regime": ["VOLATILE", "VOLATILE", "BULL"]}, index=days)
    signals = pd.DataFrame(
        {
            "date": days[[0, 1, 1, 2]],
            "symbol": ["A", "A", "B", "B"],
            "side": "BUY",
            "strength": [50.0, 50.0, 50.0, 64.0],
        }
    )
    got = smart_candidates(signals, regimes, Settings(), outcomes).set_index(["symbol", "date"])
    # January: the ranking on Jan 1 knows no outcome → Average, no Kelly evidence → size 0.
    jan_a = got.loc[("A", days[0])]
    assert jan_a["tier"] == "Average" and jan_a["size"] == 0.0 and jan_a["strength"] == 50.0
    # February, VOLATILE (threshold 45, multiplier 1.3): A is Elite (× 1.1 → 55, cap 15 %),
    # 1/3 × 0.55 × 1.3 = 0.238 → 0.15; B is Average (50, cap 7.5 %), 1/3 × 0.5 × 1.3 → 0.075.
    feb_a, feb_b = got.loc[("A", days[1])], got.loc[("B", days[1])]
    assert (feb_a["tier"], feb_a["strength"], feb_a["size"]) == ("Elite", pytest.approx(55.0), 0.15)
    assert (feb_b["tier"], feb_b["size"], feb_b["kelly_source"]) == ("Average", 0.075, "all")
    # BULL needs 65: B's 64 stays out.
    assert ("B", days[2]) not in got.index
