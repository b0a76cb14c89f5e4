"""Cross-sectional features: a stock against the universe, its sector, SPY and its sector ETF.

Ranks, z-scores, sector means and breadth on date t are computed in the date view from the
rows of date t only, so they use nothing a stock did not know on t. Relative strength compares
the stock's return with SPY's or its sector ETF's over the same window ending on t.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features import indicators as ind
from turbomode.features.indicators import Array
from turbomode.features.layout import Column, Layout
from turbomode.features.market import MarketContext, sector_etf_on_rows
from turbomode.features.registry import SECTOR_ETF, feature

CS_RANK_RETURNS = (1, 5, 20, 60, 250)
SECTOR_RANK_RETURNS = (1, 5, 20, 60)
EXTRA_RANKS = (
    "resid_ret_5",
    "gap_1",
    "oc_ret_1",
    "dd_252",
    "max_ret_20",
    "idio_vol_60",
    "volume_shock_5_250",
)
"""Universe ranks of the known daily effects: residual reversal, the overnight/intraday split,
distance to the 52-week high, lottery-like maxima, idiosyncratic volatility, volume shocks.
Trees split poorly on raw values whose scale drifts over 20 years; a rank on the date does not
drift."""
EXTRA_SECTOR_RANKS = (
    "resid_ret_1",
    "resid_ret_5",
    "resid_ret_20",
    "gap_1",
    "oc_ret_1",
    "overnight_ret_5",
    "intraday_ret_5",
    "volume_ratio_20",
    "dd_252",
    "max_ret_20",
    "idio_vol_60",
)
"""The same within the sector: reversal is much stronger among industry peers than raw."""
NEEDS_ETF = {
    k: (SECTOR_ETF,) for k in ("resid_ret_1", "resid_ret_5", "resid_ret_20", "idio_vol_60")
}
CROSS_SECTIONAL: list[str] = [
    *(
        feature(
            f"cs_rank_ret_{n}",
            "cross_sectional",
            f"Percentile rank of ret_{n} across the universe on the date.",
        )
        for n in CS_RANK_RETURNS
    ),
    feature(
        "cs_rank_rvol_20", "cross_sectional", "Percentile rank of rvol_20 across the universe."
    ),
    feature(
        "cs_rank_rvol_60", "cross_sectional", "Percentile rank of rvol_60 across the universe."
    ),
    feature("cs_rank_volume_ratio_20", "cross_sectional", "Percentile rank of volume_ratio_20."),
    feature("cs_rank_rsi_14", "cross_sectional", "Percentile rank of rsi_14 across the universe."),
    feature("cs_rank_dist_sma_50", "cross_sectional", "Percentile rank of dist_sma_50."),
    *(
        feature(
            f"sector_rank_ret_{n}",
            "cross_sectional",
            f"Percentile rank of ret_{n} within the stock's sector.",
        )
        for n in SECTOR_RANK_RETURNS
    ),
    feature(
        "sector_rank_rvol_20", "cross_sectional", "Percentile rank of rvol_20 within the sector."
    ),
    *(
        feature(
            f"cs_rank_{k}",
            "cross_sectional",
            f"Percentile rank of {k} across the universe on the date.",
            NEEDS_ETF.get(k, ()),
        )
        for k in EXTRA_RANKS
    ),
    *(
        feature(
            f"sector_rank_{k}",
            "cross_sectional",
            f"Percentile rank of {k} within the stock's sector on the date.",
            NEEDS_ETF.get(k, ()),
        )
        for k in EXTRA_SECTOR_RANKS
    ),
    *(
        feature(
            f"sector_rel_ret_{n}",
            "cross_sectional",
            f"ret_{n} − its sector's mean ret_{n} on the date (equal-weighted).",
        )
        for n in (1, 5)
    ),
    feature("cs_z_ret_5", "cross_sectional", "z-score of ret_5 across the universe on the date."),
    feature("cs_z_ret_20", "cross_sectional", "z-score of ret_20 across the universe on the date."),
    *(
        feature(
            f"rs_spy_{n}",
            "cross_sectional",
            f"Relative strength: ret_{n} − SPY's {n}-bar return.",
            ("SPY",),
        )
        for n in (5, 20, 60, 120)
    ),
    *(
        feature(
            f"rs_sector_{n}",
            "cross_sectional",
            f"ret_{n} − the sector ETF's {n}-bar return.",
            (SECTOR_ETF,),
        )
        for n in (5, 20, 60)
    ),
    *(
        feature(
            f"sector_mom_{n}", "cross_sectional", f"Mean ret_{n} of the stock's sector on the date."
        )
        for n in (5, 20, 60)
    ),
    feature("sector_rel_ret_20", "cross_sectional", "ret_20 − its sector's mean ret_20."),
    *(
        feature(
            f"breadth_sma_{n}",
            "cross_sectional",
            f"Share of the universe closing above its SMA({n}).",
        )
        for n in (20, 50, 200)
    ),
    feature(
        "sector_breadth_sma_50", "cross_sectional", "Share of the stock's sector above its SMA(50)."
    ),
    feature("breadth_adv", "cross_sectional", "Share of the universe that closed up on the date."),
    feature("dispersion_ret_1", "cross_sectional", "Cross-sectional std of ret_1 on the date."),
    feature("dispersion_ret_20", "cross_sectional", "Cross-sectional std of ret_20 on the date."),
]

NEEDS: tuple[str, ...] = (
    *(f"ret_{n}" for n in (1, 5, 20, 60, 120, 250)),
    "rvol_20",
    "rvol_60",
    "volume_ratio_20",
    *dict.fromkeys(k for k in (*EXTRA_RANKS, *EXTRA_SECTOR_RANKS) if k != "volume_ratio_20"),
    "rsi_14",
    "dist_sma_20",
    "dist_sma_50",
    "dist_sma_200",
)
"""Per-symbol features this family reads (computed first by the engine)."""


def _rank(m: Array) -> Array:
    """Percentile rank of each row's values among that row's non-NaN values (ties share the
    average rank), as pandas' ``rank(axis=1, pct=True)`` gives (pandas itself under the reference
    backend)."""
    if ind.backend_name() == "pandas":
        return pd.DataFrame(m, copy=False).rank(axis=1, pct=True).to_numpy()
    count = np.sum(~np.isnan(m), axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return ind.rank_rows(m) / count


def _sector_rank(pct: Array, onehot: Array, sym_sector: npt.NDArray[np.intp]) -> Array:
    """Percentile rank within each row's sector, from the universe ranks ``pct`` in one pass.

    Shifting each value by twice its sector's index (2·k + pct, pct in (0, 1]) keeps sectors
    apart and keeps ties exactly where the values tie; a stock's rank in that order, less the
    valid members of the sectors before its own, is its rank within the sector."""
    if onehot.shape[1] == 0:  # no symbol has a sector
        return np.full_like(pct, np.nan)
    mapped = sym_sector >= 0
    code = np.where(mapped, sym_sector, 0)
    key = np.where(mapped, 2.0 * code + pct, np.nan)
    valid = (~np.isnan(key)).astype(np.float64)
    members = valid @ onehot  # dates × sectors: valid values per sector
    before = np.cumsum(members, axis=1) - members
    rank = _rank(key) * valid.sum(axis=1, keepdims=True)  # back to average ranks, 1-based
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank - before[:, code]) / members[:, code]


def _sector_mean(m: Array, onehot: Array, sym_sector: npt.NDArray[np.intp]) -> Array:
    """Mean of each row's non-NaN values within the sector, broadcast back to its members
    (as ``np.nanmean`` per sector: ±inf gives ±inf, both give NaN)."""
    if onehot.shape[1] == 0:
        return np.full_like(m, np.nan)
    valid = ~np.isnan(m)
    finite = np.isfinite(m)
    sums = np.where(finite, m, 0.0) @ onehot  # inf · 0 would spread NaN to other sectors
    counts = valid.astype(np.float64) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan)
    if not finite[valid].all():
        pos = (m == np.inf).astype(np.float64) @ onehot
        neg = (m == -np.inf).astype(np.float64) @ onehot
        mean = np.where(pos > 0, np.inf, mean)
        mean = np.where(neg > 0, np.where(pos > 0, np.nan, -np.inf), mean)
    out = mean[:, np.where(sym_sector >= 0, sym_sector, 0)]
    out[:, sym_sector < 0] = np.nan
    return out


def _row_stat(m: Array, fn: str) -> Array:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if fn == "mean":
            return np.nanmean(m, axis=1)
        return np.nanstd(m, axis=1, ddof=1)


def _share_positive(m: Array) -> Array:
    valid = ~np.isnan(m)
    n = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (m > 0).sum(axis=1) / n, np.nan)


def cross_sectional_features(
    layout: Layout,
    cols: dict[str, Array],
    ctx: MarketContext,
    sector_names: list[str],
    sym_sector: npt.NDArray[np.intp],
) -> dict[str, Column]:
    """The cross-sectional family as columns of ``layout``'s rows."""
    out: dict[str, Column] = {}
    wide = {k: layout.to_dates(cols[k]) for k in NEEDS}

    universe = {
        k: _rank(wide[k])
        for k in dict.fromkeys(
            (
                *(f"ret_{n}" for n in CS_RANK_RETURNS),
                "rvol_20",
                "rvol_60",
                "volume_ratio_20",
                "rsi_14",
                "dist_sma_50",
                *EXTRA_RANKS,
                *EXTRA_SECTOR_RANKS,
            )
        )
    }
    for n in CS_RANK_RETURNS:
        out[f"cs_rank_ret_{n}"] = layout.dates_column(universe[f"ret_{n}"])
    out["cs_rank_rvol_20"] = layout.dates_column(universe["rvol_20"])
    out["cs_rank_rvol_60"] = layout.dates_column(universe["rvol_60"])
    out["cs_rank_volume_ratio_20"] = layout.dates_column(universe["volume_ratio_20"])
    for k in EXTRA_RANKS:
        out[f"cs_rank_{k}"] = layout.dates_column(universe[k])
    out["cs_rank_rsi_14"] = layout.dates_column(universe["rsi_14"])
    out["cs_rank_dist_sma_50"] = layout.dates_column(universe["dist_sma_50"])

    n_sectors = len(sector_names)
    onehot = (sym_sector[:, None] == np.arange(n_sectors)[None, :]).astype(np.float64)
    for n in SECTOR_RANK_RETURNS:
        pct = universe[f"ret_{n}"]  # SECTOR_RANK_RETURNS ⊂ CS_RANK_RETURNS
        out[f"sector_rank_ret_{n}"] = layout.dates_column(_sector_rank(pct, onehot, sym_sector))
    out["sector_rank_rvol_20"] = layout.dates_column(
        _sector_rank(universe["rvol_20"], onehot, sym_sector)
    )
    for k in EXTRA_SECTOR_RANKS:
        out[f"sector_rank_{k}"] = layout.dates_column(_sector_rank(universe[k], onehot, sym_sector))
    sector_mean = {n: _sector_mean(wide[f"ret_{n}"], onehot, sym_sector) for n in (1, 5, 20, 60)}
    above = wide["dist_sma_50"]
    sector_breadth = _sector_mean(np.where(np.isnan(above), np.nan, above > 0), onehot, sym_sector)

    for n in (5, 20):
        m = wide[f"ret_{n}"]
        z = (m - _row_stat(m, "mean")[:, None]) / _row_stat(m, "std")[:, None]
        out[f"cs_z_ret_{n}"] = layout.dates_column(z)

    for n in (5, 20, 60, 120):
        out[f"rs_spy_{n}"] = cols[f"ret_{n}"] - ctx.on_rows("SPY", f"ret_{n}", layout)
    for n in (5, 20, 60):
        etf = sector_etf_on_rows(ctx, f"ret_{n}", layout, sector_names, sym_sector)
        out[f"rs_sector_{n}"] = cols[f"ret_{n}"] - etf.values()
    for n in (5, 20, 60):
        out[f"sector_mom_{n}"] = layout.dates_column(sector_mean[n])
    for n in (1, 5, 20):
        out[f"sector_rel_ret_{n}"] = cols[f"ret_{n}"] - layout.from_dates(sector_mean[n])

    for n in (20, 50, 200):
        out[f"breadth_sma_{n}"] = layout.per_date(_share_positive(wide[f"dist_sma_{n}"]))
    out["sector_breadth_sma_50"] = layout.dates_column(sector_breadth)
    out["breadth_adv"] = layout.per_date(_share_positive(wide["ret_1"]))
    out["dispersion_ret_1"] = layout.per_date(_row_stat(wide["ret_1"], "std"))
    out["dispersion_ret_20"] = layout.per_date(_row_stat(wide["ret_20"], "std"))
    return out
