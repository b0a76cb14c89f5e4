"""The nightly increment: features for the new dates only, from a trailing block of bars.

A night adds one bar per symbol. Row t of every feature uses data dated ≤ t, and every family
is either a fixed window (at most a year of bars), a per-date cross-section, a calendar value,
or a recursive smoother (EMA, Wilder) seeded with the first bar it sees. So the features of the
new dates come out the same from the last ``lookback`` bars as from the whole history, except
that a smoother started ``k`` bars earlier differs by about ``(1 − α)^k`` of its value: with
the default 600 bars the slowest (EMA 50, α = 2/51) is within ``10⁻¹⁰`` — below float32's
resolution, so the stored float32 values agree with a full build to within one unit in the
last place (and almost always exactly).

Nothing here names a feature: :func:`build_increment` runs the same engine over whatever the
registry holds, and :func:`compare` is what the build uses to *check* each increment on the
dates before the new ones, which it also recomputes. A feature added later with longer memory
(an expanding statistic, a cumulative level) fails that check, and the build falls back to a
full one and says why — it never stores a silently different value.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features.cross_sectional import NEEDS as CS_NEEDS
from turbomode.features.engine import (
    FeatureReport,
    FeatureResult,
    panel_features,
    prepare_prices,
    symbol_features,
)
from turbomode.features.layout import Column, Layout, values
from turbomode.features.market import MarketContext
from turbomode.features.registry import select_features

DEFAULT_LOOKBACK = 600
"""Bars before the first new date that the increment recomputes from (see the module doc)."""

CHECK_DATES = 3
"""Dates before the first new one recomputed too, and compared with the stored values."""

ULP_TOLERANCE = 2.0**-22
"""Relative difference allowed between an increment and the stored value: two float32 units in
the last place (one for the float32 rounding of a float64 value that moved by ~1e-10, one for
the stored value's own rounding)."""


ABS_TOLERANCE = 1e-9
"""Absolute difference allowed where a value is so near zero that float32's relative
resolution is finer than the smoothers' truncation (~1e-11 of the price at 600 bars)."""


@dataclass
class Increment:
    """Features of the dates ≥ ``since`` (plus the ``check`` dates before, recomputed for the
    comparison), and the block they were computed from."""

    result: FeatureResult
    since: pd.Timestamp
    block_start: pd.Timestamp
    check_dates: list[pd.Timestamp]

    @property
    def new_rows(self) -> pd.DataFrame:
        frame = self.result.frame
        return frame[frame["date"] >= self.since].reset_index(drop=True)

    @property
    def check_rows(self) -> pd.DataFrame:
        frame = self.result.frame
        return frame[frame["date"].isin(self.check_dates)].reset_index(drop=True)


def block_start(dates: pd.DatetimeIndex, since: pd.Timestamp, lookback: int) -> pd.Timestamp:
    """The first date of the block: ``lookback`` market dates before ``since`` (or the first)."""
    calendar = dates.unique().sort_values()
    i = int(calendar.searchsorted(since))
    return pd.Timestamp(calendar[max(0, i - lookback)])


def build_increment(
    prices: pd.DataFrame,
    market: pd.DataFrame | None,
    sectors: Mapping[str, str],
    since: pd.Timestamp,
    lookback: int = DEFAULT_LOOKBACK,
    check: int = CHECK_DATES,
    features: Sequence[str] | None = None,
    dtype: npt.DTypeLike = np.float32,
    macro: pd.DataFrame | None = None,
) -> Increment:
    """Features of every row dated ≥ ``since`` from the trailing ``lookback`` bars (plus
    ``check`` earlier dates to compare with a stored build).

    The per-symbol families run over the whole block (their windows and smoothers need it);
    the families that look across symbols or at the date only run on the dates kept, which is
    what they are: one value per date from that date's per-symbol columns (the check would
    catch one that is not). ``macro`` is passed whole: its features read vintages, not bars."""
    t0 = time.perf_counter()
    since = pd.Timestamp(since)
    dates = pd.DatetimeIndex(pd.to_datetime(prices["date"]))
    start = block_start(dates, since, lookback)
    calendar = dates.unique().sort_values()
    before = calendar[(calendar < since) & (calendar >= start)]
    checks = [pd.Timestamp(d) for d in before[-check:]] if check > 0 else []
    first = checks[0] if checks else since
    block = prices[dates >= start]
    mk = None if market is None else market[pd.to_datetime(market["date"]) >= start]

    selected = select_features(features)
    col_of = {n: j for j, n in enumerate(selected)}
    p = prepare_prices(block)
    ctx = MarketContext(mk, macro)
    _, stream = symbol_features(p, ctx, sectors)
    kept = np.flatnonzero(p["date"].to_numpy() >= np.datetime64(first))
    keys = p.iloc[kept][["symbol", "date"]].reset_index(drop=True)
    out = np.empty((len(kept), len(selected)), dtype=np.dtype(dtype), order="F")
    needed: dict[str, npt.NDArray[np.float64]] = {}

    def sink(cols: Mapping[str, Column], rows: npt.NDArray[np.intp] | None) -> None:
        for name, v in cols.items():
            arr = values(v) if rows is None else values(v)[rows]
            if name in CS_NEEDS and rows is not None:
                needed[name] = arr
            j = col_of.get(name)
            if j is not None:
                with np.errstate(invalid="ignore", over="ignore"):
                    np.copyto(out[:, j], arr, casting="unsafe")
                column = out[:, j]
                column[np.isinf(column)] = np.nan

    for _, cols in stream:
        sink(cols, kept)
    sub = Layout.from_frame(keys)
    for _, cols in panel_features(sub, needed, ctx, sectors):
        sink(cols, None)
    frame = pd.DataFrame(out, columns=selected, copy=False)
    frame.insert(0, "date", keys["date"].to_numpy())
    frame.insert(0, "symbol", keys["symbol"].to_numpy())
    report = FeatureReport(
        n_rows=len(frame),
        n_symbols=int(frame["symbol"].nunique()),
        n_dates=int(frame["date"].nunique()),
        features=list(selected),
        elapsed_s=time.perf_counter() - t0,
        mode="incremental",
    )
    return Increment(FeatureResult(frame, report), since, start, checks)


def compare(
    recomputed: pd.DataFrame, stored: pd.DataFrame, names: Sequence[str]
) -> dict[str, float]:
    """Features whose recomputed values differ from the stored ones by more than
    :data:`ULP_TOLERANCE` (relative) on the same (symbol, date) rows, with the largest
    difference; NaN on one side only counts as a difference (reported as ``inf``)."""
    key = ["symbol", "date"]
    left = recomputed.set_index(key).sort_index()
    right = stored.set_index(key).sort_index()
    rows = left.index.intersection(right.index)
    if len(rows) != len(left) or len(rows) != len(right):
        return {"(rows)": float("inf")}
    bad: dict[str, float] = {}
    for name in names:
        a = left.loc[rows, name].to_numpy(dtype=np.float64)
        b = right.loc[rows, name].to_numpy(dtype=np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if (nan_a != nan_b).any():
            bad[name] = float("inf")
            continue
        ok = ~nan_a
        if not ok.any():
            continue
        scale = np.maximum(np.abs(a[ok]), np.abs(b[ok]))
        diff = np.abs(a[ok] - b[ok])
        rel = np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), diff)
        worst = float(rel.max())
        # values near zero (a distance to an EMA of 1e-6) compare absolutely: a smoother's
        # start moves them by ~1e-11, far below what any feature resolves
        tight = (rel <= ULP_TOLERANCE) | (diff <= ABS_TOLERANCE)
        if not tight.all():
            bad[name] = worst
    return bad
