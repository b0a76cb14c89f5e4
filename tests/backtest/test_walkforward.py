"""Walk-forward signals on the synthetic market: each period's models are trained only on
labels known before it, the nightly entry rules are the scan's, and deleting every row after
the test window changes no signal (no look-ahead)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.backtest.walkforward import period_bounds, walk_forward_signals
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
SECTORS = ["Energy", "Utilities"]
START, END = date(2023, 1, 1), date(2023, 6, 30)


def test_period_bounds_by_quarter_and_year() -> None:
    cal = pd.bdate_range("2022-12-01", "2023-07-31")
    q = period_bounds(cal, START, END, "quarter")
    assert [(a.date(), b.date()) for a, b in q] == [
        (date(2023, 1, 2), date(2023, 3, 31)),
        (date(2023, 4, 3), date(2023, 6, 30)),
    ]
    assert len(period_bounds(cal, START, END, "year")) == 1
    with pytest.raises(TurboModeError, match="no trading days"):
        period_bounds(cal, date(2030, 1, 1), date(2030, 2, 1))


def test_walk_forward_is_point_in_time(world: tuple[Settings, MarketData], tmp_path: Path) -> None:
    settings, md = world
    res = walk_forward_signals(
        settings,
        md,
        START,
        END,
        tmp_path / "a",
        horizon=1,
        period="quarter",
        train_days=250,
        sectors=SECTORS,
    )
    sig = res.signals
    assert len(res.periods) == 2 and set(sig["sector"]) <= set(SECTORS)
    for info in res.periods:
        first = pd.Timestamp(info["period"].split("..")[0])
        trained_end = pd.Timestamp(info["trained_on"].split("..")[1])
        assert trained_end < first  # the last day whose labels were known
        in_period = sig[sig["period"] == info["period"]]
        assert in_period["date"].between(first, pd.Timestamp(info["period"].split("..")[1])).all()
    # The scan's quantile rule: the top 5 % of each night's BUY and SELL lifts pass (at least
    # the best name of each side: 14 symbols give one a side).
    per_night = sig.groupby("date").size()
    symbols = md.universe.members.query("sector in @SECTORS")["symbol"].nunique()
    assert 0 < per_night.mean() <= 2 * np.ceil(0.05 * symbols)
    assert (sig["strength"] == 100 * sig["confidence"]).all()
    assert set(sig["side"]) <= {"BUY", "SELL"}
    # Deleting everything after the window changes nothing: no look-ahead.
    cut = pd.Timestamp(END)
    truncated = replace(
        md,
        prices=md.prices[md.prices["date"] <= cut].reset_index(drop=True),
        market=md.market[md.market["date"] <= cut].reset_index(drop=True),
    )
    again = walk_forward_signals(
        settings,
        truncated,
        START,
        END,
        tmp_path / "b",
        horizon=1,
        period="quarter",
        train_days=250,
        sectors=SECTORS,
    )
    pd.testing.assert_frame_equal(sig, again.signals)
    # The period boundary too: with everything after the first quarter deleted, the first
    # quarter's signals are the same.
    q1 = pd.Timestamp("2023-03-31")
    first_quarter = replace(
        md,
        prices=md.prices[md.prices["date"] <= q1].reset_index(drop=True),
        market=md.market[md.market["date"] <= q1].reset_index(drop=True),
    )
    early = walk_forward_signals(
        settings, first_quarter, START, q1.date(), tmp_path / "c", horizon=1, period="quarter",
        train_days=250, sectors=SECTORS,
    )  # fmt: skip
    pd.testing.assert_frame_equal(early.signals, sig[sig["date"] <= q1].reset_index(drop=True))


def test_unknown_horizon_is_refused(world: tuple[Settings, MarketData], tmp_path: Path) -> None:
    settings, md = world
    with pytest.raises(TurboModeError, match="horizon 5 is not among"):
        walk_forward_signals(settings, md, START, END, tmp_path, horizon=5)
