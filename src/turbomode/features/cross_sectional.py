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

from turbomode.features.indicators import Array
from turbomode.features.layout import Layout
from turbomode.features.market import MarketContext, sector_etf_on_rows
from turbomode.features.registry import SECTOR_ETF, feature

CS_RANK_RETURNS = (1, 5, 20, 60, 250)
SECTOR_RANK_RETURNS = (1, 5, 20, 60)
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
    feature(
        "cs_rank_dollar_volume_20", "cross_sectional", "Percentile rank of log_dollar_volume_20."
    ),
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
    "log_dollar_volume_20",
    "rsi_14",
    "dist_sma_20",
    "dist_sma_50",
    "dist_sma_200",
)
"""Per-symbol features this family reads (computed first by the engine)."""


def _rank(m: Array) -> Array:
    return pd.DataFrame(m, copy=False).rank(axis=1, pct=True).to_numpy()


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
) -> dict[str, Array]:
    """The cross-sectional family as long arrays aligned to ``layout``'s rows."""
    out: dict[str, Array] = {}
    wide = {k: layout.to_dates(cols[k]) for k in NEEDS}
    dc, sc = layout.date_code, layout.sym_code

    for n in CS_RANK_RETURNS:
        out[f"cs_rank_ret_{n}"] = layout.from_dates(_rank(wide[f"ret_{n}"]))
    out["cs_rank_rvol_20"] = layout.from_dates(_rank(wide["rvol_20"]))
    out["cs_rank_rvol_60"] = layout.from_dates(_rank(wide["rvol_60"]))
    out["cs_rank_volume_ratio_20"] = layout.from_dates(_rank(wide["volume_ratio_20"]))
    out["cs_rank_dollar_volume_20"] = layout.from_dates(_rank(wide["log_dollar_volume_20"]))
    out["cs_rank_rsi_14"] = layout.from_dates(_rank(wide["rsi_14"]))
    out["cs_rank_dist_sma_50"] = layout.from_dates(_rank(wide["dist_sma_50"]))

    sector_keys = [*(f"ret_{n}" for n in SECTOR_RANK_RETURNS), "rvol_20"]
    sector_rank = {k: np.full_like(wide[k], np.nan) for k in sector_keys}
    sector_mean = {n: np.full_like(wide["ret_5"], np.nan) for n in (5, 20, 60)}
    sector_breadth = np.full_like(wide["ret_5"], np.nan)
    for i in range(len(sector_names)):  # at most 11 sectors, each a block of columns
        members = np.flatnonzero(sym_sector == i)
        for k in sector_keys:
            sector_rank[k][:, members] = _rank(wide[k][:, members])
        for n in (5, 20, 60):
            sector_mean[n][:, members] = _row_stat(wide[f"ret_{n}"][:, members], "mean")[:, None]
        sector_breadth[:, members] = _share_positive(wide["dist_sma_50"][:, members])[:, None]
    for n in SECTOR_RANK_RETURNS:
        out[f"sector_rank_ret_{n}"] = layout.from_dates(sector_rank[f"ret_{n}"])
    out["sector_rank_rvol_20"] = layout.from_dates(sector_rank["rvol_20"])

    for n in (5, 20):
        m = wide[f"ret_{n}"]
        z = (m - _row_stat(m, "mean")[:, None]) / _row_stat(m, "std")[:, None]
        out[f"cs_z_ret_{n}"] = layout.from_dates(z)

    for n in (5, 20, 60, 120):
        out[f"rs_spy_{n}"] = cols[f"ret_{n}"] - ctx.on_rows("SPY", f"ret_{n}", layout)
    for n in (5, 20, 60):
        etf = sector_etf_on_rows(ctx, f"ret_{n}", layout, sector_names, sym_sector)
        out[f"rs_sector_{n}"] = cols[f"ret_{n}"] - etf
    for n in (5, 20, 60):
        out[f"sector_mom_{n}"] = layout.from_dates(sector_mean[n])
    out["sector_rel_ret_20"] = cols["ret_20"] - out["sector_mom_20"]

    for n in (20, 50, 200):
        out[f"breadth_sma_{n}"] = _share_positive(wide[f"dist_sma_{n}"])[dc]
    out["sector_breadth_sma_50"] = sector_breadth[dc, sc]
    out["breadth_adv"] = _share_positive(wide["ret_1"])[dc]
    out["dispersion_ret_1"] = _row_stat(wide["ret_1"], "std")[dc]
    out["dispersion_ret_20"] = _row_stat(wide["ret_20"], "std")[dc]
    return out
