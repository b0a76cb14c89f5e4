"""Purged, embargoed walk-forward splits over (symbol, date) rows.

Many symbols share a date, so splits are made on the trading-day calendar (the unique sorted
dates of the rows) and returned as row indices. A label at date t uses prices up to t+h
trading days (entry at the next open, exit at the close h bars later), so a training row
whose label window (t, t+h] reaches into the test block has seen test-period prices: it is
*purged*. Purge and embargo are counted in trading days of that calendar, never calendar
days, so a long weekend cannot shrink the gap.

Embargo. In López de Prado's k-fold setting the embargo drops training rows just *after* a
test block (their features are computed from windows over the test period). Here the walk
only goes forward: no fold ever trains on rows after its own test block, so that rule would
remove nothing. ``embargo_days`` is therefore applied as a gap of that many trading days
between one test block and the next. The out-of-fold predictions of consecutive folds (which
the stacking meta-learner is fitted on, and the gate compares) then do not sit back to back
across a fold boundary where labels and rolling features of one block overlap the next. The
gap rows still serve as training data for later folds (after the purge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Fold",
    "WalkForward",
    "describe_folds",
    "out_of_time_split",
    "trading_calendar",
    "walk_forward_splits",
]


@dataclass(frozen=True)
class WalkForward:
    """Walk-forward layout, in trading days of the rows' own calendar.

    ``test_days=None`` splits what is left after ``min_train_days``, the purge and the embargo
    gaps evenly over the folds (the remainder goes to the first training window). With
    ``expanding=False`` each fold trains on the last ``train_days`` (default
    ``min_train_days``) trading days before its purge. ``purge_days=None`` means the horizon.
    """

    n_folds: int = 5
    test_days: int | None = None
    min_train_days: int = 252
    purge_days: int | None = None
    embargo_days: int = 5
    expanding: bool = True
    train_days: int | None = None

    def __post_init__(self) -> None:
        if self.n_folds < 1:
            raise ValueError(f"n_folds must be ≥ 1, got {self.n_folds}")
        if self.test_days is not None and self.test_days < 1:
            raise ValueError(f"test_days must be ≥ 1 (or None), got {self.test_days}")
        if self.min_train_days < 1:
            raise ValueError(f"min_train_days must be ≥ 1, got {self.min_train_days}")
        if self.purge_days is not None and self.purge_days < 0:
            raise ValueError(f"purge_days must be ≥ 0 (or None), got {self.purge_days}")
        if self.embargo_days < 0:
            raise ValueError(f"embargo_days must be ≥ 0, got {self.embargo_days}")
        if self.train_days is not None and self.train_days < 1:
            raise ValueError(f"train_days must be ≥ 1 (or None), got {self.train_days}")


@dataclass(frozen=True, eq=False)
class Fold:
    """One split: row indices (ascending) and the date bounds, inclusive."""

    index: int
    train_idx: NDArray[np.intp]
    test_idx: NDArray[np.intp]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    n_purged: int

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (for run records and logs)."""
        return {
            "fold": self.index,
            "train_start": self.train_start.date().isoformat(),
            "train_end": self.train_end.date().isoformat(),
            "test_start": self.test_start.date().isoformat(),
            "test_end": self.test_end.date().isoformat(),
            "n_train": len(self.train_idx),
            "n_test": len(self.test_idx),
            "n_purged": self.n_purged,
        }


def _as_dates(dates: ArrayLike) -> NDArray[np.datetime64]:
    """Dates as naive datetime64[ns]; NaT is rejected because it has no calendar position."""
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates).ravel()))
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    if len(idx) == 0:
        raise ValueError("dates is empty")
    n_nat = int(np.count_nonzero(idx.isna()))
    if n_nat:
        raise ValueError(f"dates contains {n_nat} NaT value(s); drop or fix those rows first")
    return idx.to_numpy(dtype="datetime64[ns]")


def trading_calendar(dates: ArrayLike) -> tuple[NDArray[np.datetime64], NDArray[np.intp]]:
    """Unique sorted dates and each row's position in them (rows may come in any order)."""
    values = _as_dates(dates)
    cal, pos = np.unique(values, return_inverse=True)
    return cal, pos.astype(np.intp).ravel()


def _resolve_purge(horizon: int, purge_days: int | None) -> int:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a whole number of trading days ≥ 1, got {horizon}")
    purge = int(horizon) if purge_days is None else int(purge_days)
    if purge < horizon:
        raise ValueError(
            f"purge_days={purge} is shorter than the label horizon {horizon}: training labels "
            f"would overlap the test block; use purge_days ≥ {horizon} (or None for the horizon)"
        )
    return purge


def walk_forward_splits(
    dates: ArrayLike, horizon: int, config: WalkForward | None = None
) -> list[Fold]:
    """Time-ordered folds whose test blocks tile the end of the calendar.

    Fold k tests on trading days [s_k, s_k + test_days) and trains on days ≤ s_k − purge − 1
    (all of them, or the last ``train_days`` if not expanding), so for every training row
    position(t) + horizon < s_k: no label window reaches the test block. Consecutive test
    blocks are ``embargo_days`` apart (see the module docstring for why).
    """
    cfg = config or WalkForward()
    purge = _resolve_purge(horizon, cfg.purge_days)
    cal, pos = trading_calendar(dates)
    n_days, n_folds, gap = len(cal), cfg.n_folds, cfg.embargo_days
    fixed = purge + (n_folds - 1) * gap + cfg.min_train_days
    if cfg.test_days is None:
        test_days = (n_days - fixed) // n_folds
        if test_days < 1:
            raise ValueError(
                f"not enough dates: {n_days} trading days cannot hold {n_folds} fold(s) after "
                f"{cfg.min_train_days} training days, a {purge}-day purge and "
                f"{n_folds - 1} embargo gap(s) of {gap} days (need ≥ {fixed + n_folds})"
            )
    else:
        test_days = cfg.test_days
        if fixed + n_folds * test_days > n_days:
            raise ValueError(
                f"not enough dates: {n_days} trading days < {fixed + n_folds * test_days} "
                f"needed for {n_folds} fold(s) × {test_days} test days + {cfg.min_train_days} "
                f"training days + {purge}-day purge + {n_folds - 1} embargo gap(s) of {gap} days"
            )
    window = cfg.train_days or cfg.min_train_days
    first_test = n_days - n_folds * test_days - (n_folds - 1) * gap

    folds: list[Fold] = []
    for k in range(n_folds):
        start = first_test + k * (test_days + gap)
        end = start + test_days - 1
        hi = start - purge - 1
        lo = 0 if cfg.expanding else max(0, hi - window + 1)
        folds.append(
            Fold(
                index=k,
                train_idx=np.flatnonzero((pos >= lo) & (pos <= hi)),
                test_idx=np.flatnonzero((pos >= start) & (pos <= end)),
                train_start=pd.Timestamp(cal[lo]),
                train_end=pd.Timestamp(cal[hi]),
                test_start=pd.Timestamp(cal[start]),
                test_end=pd.Timestamp(cal[end]),
                n_purged=int(np.count_nonzero((pos > hi) & (pos < start))),
            )
        )
    return folds


def out_of_time_split(
    dates: ArrayLike,
    horizon: int,
    test_start: Any,
    test_end: Any = None,
    purge_days: int | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Train on rows strictly before the test period minus the purge; test on the period.

    The test period is [test_start, test_end] (inclusive; open-ended when test_end is None).
    Training rows satisfy position(t) + purge < position(first test day), so no training
    label uses a price from inside the test period — "trained only on earlier data".
    """
    purge = _resolve_purge(horizon, purge_days)
    cal, pos = trading_calendar(dates)
    lo = _as_dates([test_start])[0]
    hi = None if test_end is None else _as_dates([test_end])[0]
    if hi is not None and hi < lo:
        raise ValueError(f"test_end {test_end} is before test_start {test_start}")
    start = int(np.searchsorted(cal, lo, side="left"))
    stop = len(cal) if hi is None else int(np.searchsorted(cal, hi, side="right"))
    if start >= stop:
        raise ValueError(
            f"no rows in the test period {test_start} .. {test_end or 'end'} "
            f"(data covers {pd.Timestamp(cal[0]).date()} .. {pd.Timestamp(cal[-1]).date()})"
        )
    train_hi = start - purge - 1
    if train_hi < 0:
        raise ValueError(
            f"no training rows: fewer than {purge + 1} trading days precede the test start "
            f"{pd.Timestamp(cal[start]).date()} (purge of {purge} days)"
        )
    train_idx = np.flatnonzero(pos <= train_hi)
    test_idx = np.flatnonzero((pos >= start) & (pos < stop))
    return train_idx, test_idx


def describe_folds(folds: list[Fold]) -> pd.DataFrame:
    """One row per fold: bounds and sizes, for reports."""
    return pd.DataFrame([f.summary() for f in folds]).set_index("fold")
