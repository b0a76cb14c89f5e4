"""Walk-forward splits never let a training label see the test block; errors name the cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from turbomode.models.validation import (
    WalkForward,
    describe_folds,
    out_of_time_split,
    trading_calendar,
    walk_forward_splits,
)


def _panel(n_days: int, n_symbols: int, start: str = "2021-01-04") -> np.ndarray:
    """Row dates of an n_days × n_symbols panel on business days, date-major."""
    return np.repeat(pd.bdate_range(start, periods=n_days).to_numpy(), n_symbols)


def test_hand_built_layout() -> None:
    dates = _panel(30, 2)
    cfg = WalkForward(n_folds=2, test_days=5, min_train_days=10, embargo_days=2)
    folds = walk_forward_splits(dates, horizon=3, config=cfg)
    cal, pos = trading_calendar(dates)
    # 30 days: test blocks [18, 22] and [25, 29] (2-day embargo gap), purge 3 days each.
    assert [(pos[f.test_idx].min(), pos[f.test_idx].max()) for f in folds] == [(18, 22), (25, 29)]
    assert [(pos[f.train_idx].min(), pos[f.train_idx].max()) for f in folds] == [(0, 14), (0, 21)]
    assert [f.n_purged for f in folds] == [6, 6]
    assert folds[0].test_start == pd.Timestamp(cal[18])
    assert folds[1].train_end == pd.Timestamp(cal[21])
    assert np.array_equal(folds[0].test_idx, np.arange(36, 46))
    table = describe_folds(folds)
    assert table["n_test"].tolist() == [10, 10]
    assert table["n_train"].tolist() == [30, 44]


def test_default_test_days_fill_the_calendar() -> None:
    dates = _panel(100, 3)
    cfg = WalkForward(n_folds=3, min_train_days=40, embargo_days=1)
    folds = walk_forward_splits(dates, horizon=5, config=cfg)
    _, pos = trading_calendar(dates)
    # (100 − 40 − 5 − 2) // 3 = 17 test days per fold, the last one ends on the last date.
    assert all(len(np.unique(pos[f.test_idx])) == 17 for f in folds)
    assert pos[folds[-1].test_idx].max() == 99
    assert len(np.unique(pos[folds[0].train_idx])) >= 40


def test_rolling_window_keeps_train_days() -> None:
    dates = _panel(80, 2)
    cfg = WalkForward(n_folds=3, test_days=10, min_train_days=20, embargo_days=0, expanding=False)
    folds = walk_forward_splits(dates, horizon=2, config=cfg)
    _, pos = trading_calendar(dates)
    for f in folds:
        days = np.unique(pos[f.train_idx])
        assert len(days) == 20
        assert days.max() + 2 < pos[f.test_idx].min()


def test_purge_extends_beyond_horizon() -> None:
    dates = _panel(60, 2)
    cfg = WalkForward(n_folds=1, test_days=10, min_train_days=10, purge_days=7)
    (fold,) = walk_forward_splits(dates, horizon=2, config=cfg)
    _, pos = trading_calendar(dates)
    assert pos[fold.train_idx].max() == 50 - 7 - 1


def test_any_row_order_gives_the_same_folds() -> None:
    dates = _panel(50, 4)
    perm = np.random.default_rng(3).permutation(len(dates))
    cfg = WalkForward(n_folds=2, test_days=8, min_train_days=10)
    ordered = walk_forward_splits(dates, 3, cfg)
    shuffled = walk_forward_splits(dates[perm], 3, cfg)
    for a, b in zip(ordered, shuffled, strict=True):
        assert np.array_equal(np.sort(perm[b.train_idx]), a.train_idx)
        assert np.array_equal(np.sort(perm[b.test_idx]), a.test_idx)


@settings(max_examples=80, deadline=None)
@example(  # a first test block closer to day 0 than the embargo: legal, no block precedes it
    n_days=5,
    skip=[False] * 200,
    symbols=1,
    horizon=1,
    extra_purge=0,
    n_folds=1,
    test_days=None,
    min_train=1,
    embargo=3,
    expanding=True,
    seed=0,
)
@given(
    n_days=st.integers(5, 160),
    skip=st.lists(st.booleans(), min_size=200, max_size=200),
    symbols=st.integers(1, 4),
    horizon=st.integers(1, 10),
    extra_purge=st.integers(0, 4),
    n_folds=st.integers(1, 6),
    test_days=st.one_of(st.none(), st.integers(1, 25)),
    min_train=st.integers(1, 40),
    embargo=st.integers(0, 6),
    expanding=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_purge_property(
    n_days: int,
    skip: list[bool],
    symbols: int,
    horizon: int,
    extra_purge: int,
    n_folds: int,
    test_days: int | None,
    min_train: int,
    embargo: int,
    expanding: bool,
    seed: int,
) -> None:
    """For every fold: max over training rows of (date position + horizon) < first test position;
    test blocks are ordered and at least the embargo apart; the first fold has min_train days."""
    # An irregular calendar (holes) in calendar days, rows shuffled, a ragged panel.
    days = pd.date_range("2015-01-01", periods=200, freq="D")[~np.array(skip)][:n_days]
    rng = np.random.default_rng(seed)
    dates = rng.permutation(np.repeat(days.to_numpy(), rng.integers(1, symbols + 1, len(days))))
    cfg = WalkForward(
        n_folds=n_folds,
        test_days=test_days,
        min_train_days=min_train,
        purge_days=None if extra_purge == 0 else horizon + extra_purge,  # None: the horizon
        embargo_days=embargo,
        expanding=expanding,
    )
    cal = np.unique(dates)
    pos = np.searchsorted(cal, dates)
    try:
        folds = walk_forward_splits(dates, horizon, cfg)
    except ValueError as err:
        assert "not enough dates" in str(err)
        need = min_train + horizon + extra_purge + (n_folds - 1) * embargo
        assert need + n_folds * (test_days or 1) > len(cal)
        return
    assert len(folds) == n_folds
    prev_end: int | None = None  # the embargo separates test blocks; none precedes the first
    for f in folds:
        assert len(f.train_idx) and len(f.test_idx)
        first_test = pos[f.test_idx].min()
        assert pos[f.train_idx].max() + horizon < first_test
        assert pos[f.train_idx].max() + horizon + extra_purge < first_test
        assert not np.intersect1d(f.train_idx, f.test_idx).size
        if prev_end is not None:
            assert first_test > prev_end + embargo
        prev_end = pos[f.test_idx].max()
        # the test block is a contiguous run of trading days, all rows of those days included
        block = np.unique(pos[f.test_idx])
        assert np.array_equal(block, np.arange(block[0], block[-1] + 1))
        assert np.array_equal(np.flatnonzero(np.isin(pos, block)), f.test_idx)
    assert len(np.unique(pos[folds[0].train_idx])) >= min_train
    assert prev_end == len(cal) - 1


def test_purge_shorter_than_horizon_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"purge_days=2 is shorter than the label horizon 5"):
        walk_forward_splits(_panel(100, 2), 5, WalkForward(purge_days=2, min_train_days=10))
    with pytest.raises(ValueError, match="shorter than the label horizon"):
        out_of_time_split(_panel(100, 2), 5, "2021-03-01", purge_days=4)


def test_not_enough_dates() -> None:
    with pytest.raises(ValueError, match=r"not enough dates: 50 trading days"):
        walk_forward_splits(_panel(50, 3), 5, WalkForward(n_folds=5, min_train_days=252))
    with pytest.raises(ValueError, match=r"not enough dates: 50 trading days < 60"):
        walk_forward_splits(
            _panel(50, 3),
            1,
            WalkForward(n_folds=4, test_days=10, min_train_days=19, embargo_days=0),
        )


def test_bad_inputs_are_named() -> None:
    dates = _panel(60, 2).astype("datetime64[ns]")
    dates[7] = np.datetime64("NaT")
    with pytest.raises(ValueError, match="1 NaT"):
        walk_forward_splits(dates, 1, WalkForward(min_train_days=5))
    with pytest.raises(ValueError, match="horizon must be"):
        walk_forward_splits(_panel(60, 2), 0, WalkForward(min_train_days=5))
    with pytest.raises(ValueError, match="empty"):
        walk_forward_splits(np.array([], dtype="datetime64[ns]"), 1)
    with pytest.raises(ValueError, match="n_folds"):
        WalkForward(n_folds=0)
    with pytest.raises(ValueError, match="embargo_days"):
        WalkForward(embargo_days=-1)


def test_out_of_time_split_boundary_in_trading_days() -> None:
    dates = _panel(400, 3, start="2022-06-01")
    rng = np.random.default_rng(0)
    dates = rng.permutation(dates)
    cal = np.unique(dates)
    pos = np.searchsorted(cal, dates)
    train, test = out_of_time_split(dates, 5, "2023-01-01", "2023-06-30")
    d = pd.DatetimeIndex(dates)
    assert (d[test] >= "2023-01-01").all() and (d[test] <= "2023-06-30").all()
    in_period = (d >= "2023-01-01") & (d <= "2023-06-30")
    assert np.array_equal(np.sort(test), np.flatnonzero(in_period))
    first = pos[test].min()
    assert pos[train].max() + 5 < first
    assert pos[train].max() == first - 6  # the purge drops exactly 5 trading days, no more
    assert not (d[train] >= "2023-01-01").any()
    # Monday test start, horizon 1: last training date is the Thursday before (Friday's label
    # ends on Monday's close), although only 3 calendar days separate Friday from Monday.
    tr, te = out_of_time_split(dates, 1, "2023-01-09")
    assert d[tr].max() == pd.Timestamp("2023-01-05")
    assert d[te].min() == pd.Timestamp("2023-01-09") and d[te].max() == d.max()


def test_out_of_time_split_errors() -> None:
    dates = _panel(30, 2, start="2023-01-02")
    with pytest.raises(ValueError, match="no rows in the test period"):
        out_of_time_split(dates, 1, "2024-01-01")
    with pytest.raises(ValueError, match="no training rows"):
        out_of_time_split(dates, 5, "2023-01-03")
    with pytest.raises(ValueError, match="before test_start"):
        out_of_time_split(dates, 1, "2023-02-01", "2023-01-15")
