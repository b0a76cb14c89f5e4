"""Walk-forward with an LSTM in the ensemble: it trains and signals (the windows of the
period's rows reach back into the sector's history), and deleting every row after a day in
the period changes no signal up to that day (no window reads a later row)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from tests.conftest import TINY, need
from turbomode.backtest.walkforward import walk_forward_signals
from turbomode.config import ModelSettings, Settings
from turbomode.data.sources.base import MarketData

try:
    import jax  # noqa: F401

    HAVE_JAX = True
except ImportError:
    HAVE_JAX = False

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
START, END, CUT = date(2023, 1, 1), date(2023, 3, 31), date(2023, 2, 15)


def test_sequence_learners_signal_point_in_time(world: tuple[Settings, MarketData]) -> None:
    need(HAVE_JAX, "JAX is not installed (pip install 'turbomode[neural]')")
    base, md = world
    models = TINY.model_copy(
        update={
            "neural_learners": ["lstm"],
            "neural": {**ModelSettings().neural, "window": 5, "hidden": 8, "max_epochs": 2},
        }
    )
    settings = base.model_copy(update={"models": models})

    def run(data: MarketData, end: date) -> pd.DataFrame:
        return walk_forward_signals(
            settings, data, START, end, horizon=1, period="quarter", train_days=120,
            sectors=["Energy"],
        ).signals  # fmt: skip

    signals = run(md, END)
    assert len(signals) > 0 and set(signals["sector"]) == {"Energy"}
    cut = pd.Timestamp(CUT)
    truncated = replace(
        md,
        prices=md.prices[md.prices["date"] <= cut].reset_index(drop=True),
        market=md.market[md.market["date"] <= cut].reset_index(drop=True),
    )
    early = run(truncated, CUT).drop(columns="period")  # the period's name ends at the cut
    kept = signals[signals["date"] <= cut].drop(columns="period").reset_index(drop=True)
    pd.testing.assert_frame_equal(early, kept)
