"""Indicator primitives on 2-D arrays: axis 0 is bar order, one column per symbol.

Every function looks backwards only: the value in row t uses rows ≤ t of its column. Warm-up
rows (fewer bars than the window) are NaN rather than computed from a partial window, and a NaN
inside a window makes the result NaN, never a value filled from elsewhere. Rolling windows use
pandas' column-wise kernels, so one call covers every symbol at once; the same functions run
on a single-column array for one symbol.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
import pandas as pd

Array = npt.NDArray[np.float64]

TRADING_DAYS = 252


_BACKEND: list[str] = ["numpy"]


@contextmanager
def backend(name: str) -> Iterator[None]:
    """Run rolling max/min and EWM on ``"numpy"`` (the default: block scans and a recursion
    over bars that covers every column per step) or on ``"pandas"``' per-column kernels (an
    independent reference for tests). Rolling sums, means and moments always use pandas,
    whose column kernels are as fast here as a cumulative-sum formulation."""
    if name not in ("numpy", "pandas"):
        raise ValueError(f"unknown backend {name!r}; use 'numpy' or 'pandas'")
    _BACKEND.append(name)
    try:
        yield
    finally:
        _BACKEND.pop()


def _pandas() -> bool:
    return _BACKEND[-1] == "pandas"


def _frame(a: Array) -> pd.DataFrame:
    return pd.DataFrame(a, copy=False)


def shift(a: Array, n: int) -> Array:
    """Value n bars earlier (n > 0) or later (n < 0), NaN where there is none."""
    out = np.full_like(a, np.nan)
    if n > 0:
        out[n:] = a[:-n]
    elif n < 0:
        out[:n] = a[-n:]
    else:
        out[:] = a
    return out


def pct_change(a: Array, n: int = 1) -> Array:
    """Simple return over n bars."""
    return a / shift(a, n) - 1.0


def rolling_sum(a: Array, w: int) -> Array:
    """Sum over the last w bars (NaN if any is NaN or fewer than w bars)."""
    return _frame(a).rolling(w, min_periods=w).sum().to_numpy()


def rolling_mean(a: Array, w: int) -> Array:
    return _frame(a).rolling(w, min_periods=w).mean().to_numpy()


def rolling_std(a: Array, w: int) -> Array:
    """Sample standard deviation (ddof=1) over w bars."""
    return _frame(a).rolling(w, min_periods=w).std().to_numpy()


def rolling_skew(a: Array, w: int) -> Array:
    """Bias-corrected sample skewness over w bars."""
    return _frame(a).rolling(w, min_periods=w).skew().to_numpy()


def rolling_kurt(a: Array, w: int) -> Array:
    """Bias-corrected sample excess kurtosis over w bars."""
    return _frame(a).rolling(w, min_periods=w).kurt().to_numpy()


def _block_scan(a: Array, w: int, op: np.ufunc) -> Array:
    """Rolling max/min in O(n) for every column at once (van Herk / Gil–Werman): prefix and
    suffix scans inside blocks of w rows; window [t−w+1, t] = suffix of one block ∪ prefix
    of the next, so only rows inside the window are read. NaN inside a window gives NaN."""
    T, N = a.shape
    out = np.full_like(a, np.nan)
    if w > T:
        return out
    if w == 1:
        return a.copy()
    nb = -(-T // w)
    x = np.concatenate([a, np.full((nb * w - T, N), np.nan)]) if nb * w > T else a
    x = x.reshape(nb, w, N)
    pre = op.accumulate(x, axis=1).reshape(nb * w, N)
    suf = op.accumulate(x[:, ::-1], axis=1)[:, ::-1].reshape(nb * w, N)
    out[w - 1 :] = op(suf[: T - w + 1], pre[w - 1 : T])
    return out


def rolling_max(a: Array, w: int) -> Array:
    if _pandas():
        return _frame(a).rolling(w, min_periods=w).max().to_numpy()
    return _block_scan(a, w, np.maximum)


def rolling_min(a: Array, w: int) -> Array:
    if _pandas():
        return _frame(a).rolling(w, min_periods=w).min().to_numpy()
    return _block_scan(a, w, np.minimum)


def rolling_corr(x: Array, y: Array, w: int) -> Array:
    """Pearson correlation of x and y over w bars, column by column."""
    mx, my = rolling_mean(x, w), rolling_mean(y, w)
    cov = rolling_mean(x * y, w) - mx * my
    vx = rolling_mean(x * x, w) - mx * mx
    vy = rolling_mean(y * y, w) - my * my
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))


def rolling_beta(x: Array, m: Array, w: int) -> Array:
    """OLS slope of x on m over w bars."""
    mx, mm = rolling_mean(x, w), rolling_mean(m, w)
    cov = rolling_mean(x * m, w) - mx * mm
    var = rolling_mean(m * m, w) - mm * mm
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / var


def _ewm(a: Array, alpha: float, min_periods: int) -> Array:
    """Recursive EWM y = (1−α)·y + α·x seeded with each column's first value, all columns
    per step (a loop over bars, not symbols). A NaN after the start carries the last value,
    like pandas; a column whose valid values resume after a gap is handed to pandas, whose
    re-weighting this loop does not reproduce."""
    if _pandas() or a.shape[1] < 8:
        return _frame(a).ewm(alpha=alpha, adjust=False, min_periods=min_periods).mean().to_numpy()
    T = a.shape[0]
    valid = ~np.isnan(a)
    nvalid = valid.sum(axis=0)
    start = np.argmax(valid, axis=0)
    last = T - 1 - np.argmax(valid[::-1], axis=0)
    gappy = (nvalid > 0) & (nvalid != last - start + 1)
    beta = 1.0 - alpha
    ax = alpha * a
    out = np.full_like(a, np.nan)
    seeds: dict[int, npt.NDArray[np.intp]] = {}
    for s in np.unique(start[nvalid > 0]):
        seeds[int(s)] = np.flatnonzero((start == s) & (nvalid > 0))
    nan_rows = ~valid
    has_nan: npt.NDArray[np.bool_] = np.asarray(nan_rows.any(axis=1), dtype=bool)
    for t in range(T):
        row = out[t]
        if t > 0:
            prev = out[t - 1]
            np.multiply(prev, beta, out=row)
            row += ax[t]
            if has_nan[t]:
                np.copyto(row, prev, where=nan_rows[t])
        cols = seeds.get(t)
        if cols is not None:
            row[cols] = a[t, cols]
    out[np.cumsum(valid, axis=0) < min_periods] = np.nan
    if gappy.any():
        g = np.flatnonzero(gappy)
        out[:, g] = (
            _frame(a[:, g])
            .ewm(alpha=alpha, adjust=False, min_periods=min_periods)
            .mean()
            .to_numpy()
        )
    return out


def ema(a: Array, span: int, min_periods: int | None = None) -> Array:
    """Exponential moving average, alpha = 2/(span+1), seeded with the first value
    (recursive form, pandas ``adjust=False``); NaN until ``min_periods`` (default span) bars."""
    return _ewm(a, 2.0 / (span + 1.0), span if min_periods is None else min_periods)


def wilder(a: Array, n: int) -> Array:
    """Wilder's smoothing (EMA with alpha = 1/n, seeded with the first value), NaN for the
    first n valid bars. Used by RSI, ATR and ADX."""
    return _ewm(a, 1.0 / n, n)


def true_range(high: Array, low: Array, close: Array) -> Array:
    """max(high−low, |high−prev close|, |low−prev close|); high−low on a symbol's first bar."""
    prev = shift(close, 1)
    tr = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    return tr


def atr(high: Array, low: Array, close: Array, n: int = 14) -> Array:
    """Average true range (Wilder)."""
    return wilder(true_range(high, low, close), n)


def rsi(close: Array, n: int = 14) -> Array:
    """Relative strength index (Wilder): 100·avg gain / (avg gain + avg loss); 50 when flat."""
    d = close - shift(close, 1)
    up = wilder(np.where(d > 0, d, np.where(np.isnan(d), np.nan, 0.0)), n)
    dn = wilder(np.where(d < 0, -d, np.where(np.isnan(d), np.nan, 0.0)), n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 100.0 * up / (up + dn)
    flat = (up + dn == 0) & ~np.isnan(up)
    out[flat] = 50.0
    return out


def adx(high: Array, low: Array, close: Array, n: int = 14) -> tuple[Array, Array, Array]:
    """ADX, +DI and −DI (Wilder). +DM = up move when it exceeds the down move and is positive."""
    up = high - shift(high, 1)
    down = shift(low, 1) - low
    nan = np.isnan(up) | np.isnan(down)
    pdm = np.where(nan, np.nan, np.where((up > down) & (up > 0), up, 0.0))
    mdm = np.where(nan, np.nan, np.where((down > up) & (down > 0), down, 0.0))
    tr = true_range(high, low, close)
    tr[np.isnan(shift(close, 1))] = np.nan  # align with the DMs, which start at bar 1
    atr_ = wilder(tr, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        pdi = 100.0 * wilder(pdm, n) / atr_
        mdi = 100.0 * wilder(mdm, n) / atr_
        dx = 100.0 * np.abs(pdi - mdi) / (pdi + mdi)
    dx[(pdi + mdi == 0)] = 0.0
    return wilder(dx, n), pdi, mdi


def stochastic_k(high: Array, low: Array, close: Array, n: int) -> Array:
    """Stochastic %K: where the close sits in the n-bar high–low range, 0–100."""
    hh, ll = rolling_max(high, n), rolling_min(low, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * (close - ll) / (hh - ll)


def williams_r(high: Array, low: Array, close: Array, n: int) -> Array:
    """Williams %R, −100 (at the low) to 0 (at the high)."""
    hh, ll = rolling_max(high, n), rolling_min(low, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -100.0 * (hh - close) / (hh - ll)


def cci(high: Array, low: Array, close: Array, n: int) -> Array:
    """Commodity channel index: (TP − SMA(TP)) / (0.015 · mean absolute deviation)."""
    tp = (high + low + close) / 3.0
    sma = rolling_mean(tp, n)
    mad = np.zeros_like(tp)
    for k in range(n):  # n vectorized passes over all symbols, not a loop over symbols
        mad += np.abs(shift(tp, k) - sma)
    mad /= n
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tp - sma) / (0.015 * mad)


def ols_slope(y: Array, w: int) -> Array:
    """Least-squares slope of y on bar number over the last w bars (units of y per bar)."""
    idx = np.arange(y.shape[0], dtype=np.float64)[:, None]
    s_y = rolling_sum(y, w)
    s_iy = rolling_sum(idx * y, w)
    s_i = w * idx - w * (w - 1) / 2.0
    denom = w * w * (w * w - 1) / 12.0
    return (w * s_iy - s_i * s_y) / denom
