"""Market context: VIX, SPY/QQQ/IWM returns and trend, the stock's sector ETF, beta to SPY.

Each market series is computed on its own bars (its own calendar), then attached to a stock
row by date: the value of the last market bar on or before the row's date, and only if that
bar is at most ``MAX_STALE_DAYS`` calendar days old (a holiday in one calendar, never a value
from after the row's date). A series that is absent leaves its features NaN and is reported.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.config import SECTOR_ETFS
from turbomode.data.schema import PRICE_COLUMNS, require_columns
from turbomode.errors import SchemaError
from turbomode.features import indicators as ind
from turbomode.features.indicators import TRADING_DAYS, Array
from turbomode.features.layout import Column, Gather, Layout
from turbomode.features.macro import MacroContext
from turbomode.features.registry import SECTOR_ETF, feature

MAX_STALE_DAYS = 5
RESID_WINDOWS = (1, 5, 10, 20)
BETA_WINDOW = 60
SERIES_RETURNS = (1, 5, 20, 60, 120)

_IDX = ("SPY", "QQQ", "IWM")
MARKET: list[str] = [
    feature("vix_level", "market", "VIX close.", ("^VIX",)),
    feature("vix_chg_1", "market", "VIX relative change over 1 bar.", ("^VIX",)),
    feature("vix_chg_5", "market", "VIX relative change over 5 bars.", ("^VIX",)),
    feature("vix_z_20", "market", "(VIX − 20-bar mean) / 20-bar std.", ("^VIX",)),
    feature(
        "vix_range_pos_252", "market", "VIX within its 252-bar low–high range, 0–1.", ("^VIX",)
    ),
    *(
        feature(f"spy_ret_{n}", "market", f"SPY return over {n} bar(s).", ("SPY",))
        for n in (1, 5, 20, 60)
    ),
    feature("spy_dist_sma_50", "market", "SPY close / SMA(50) − 1: market trend.", ("SPY",)),
    feature("spy_dist_sma_200", "market", "SPY close / SMA(200) − 1: market regime.", ("SPY",)),
    feature("spy_rvol_20", "market", "SPY realized volatility, 20 bars, annualized.", ("SPY",)),
    feature("spy_rsi_14", "market", "SPY RSI(14).", ("SPY",)),
    feature("spy_dd_252", "market", "SPY drawdown from its 252-bar high.", ("SPY",)),
    *(
        feature(f"qqq_ret_{n}", "market", f"QQQ return over {n} bar(s).", ("QQQ",))
        for n in (1, 5, 20)
    ),
    feature("qqq_dist_sma_50", "market", "QQQ close / SMA(50) − 1.", ("QQQ",)),
    *(
        feature(f"iwm_ret_{n}", "market", f"IWM return over {n} bar(s).", ("IWM",))
        for n in (1, 5, 20)
    ),
    feature("iwm_dist_sma_50", "market", "IWM close / SMA(50) − 1.", ("IWM",)),
    feature(
        "qqq_minus_spy_20",
        "market",
        "QQQ − SPY 20-bar return: growth/tech leadership.",
        ("QQQ", "SPY"),
    ),
    feature(
        "iwm_minus_spy_20",
        "market",
        "IWM − SPY 20-bar return: small-cap leadership.",
        ("IWM", "SPY"),
    ),
    feature(
        "sector_etf_ret_5",
        "cross_sectional",
        "The stock's sector ETF return over 5 bars.",
        (SECTOR_ETF,),
    ),
    feature(
        "sector_etf_ret_20",
        "cross_sectional",
        "The stock's sector ETF return over 20 bars.",
        (SECTOR_ETF,),
    ),
    feature(
        "sector_etf_dist_sma_50",
        "cross_sectional",
        "Sector ETF close / SMA(50) − 1.",
        (SECTOR_ETF,),
    ),
    feature(
        "beta_spy_60",
        "cross_sectional",
        "OLS beta of daily returns on SPY's over 60 bars.",
        ("SPY",),
    ),
    feature(
        "corr_spy_60",
        "cross_sectional",
        "Correlation of daily returns with SPY's over 60 bars.",
        ("SPY",),
    ),
    *(
        feature(
            f"resid_ret_{n}",
            "cross_sectional",
            f"Residual return over {n} bar(s): the sum of daily returns less beta × the sector "
            "ETF's, beta fitted over the 60 bars before each day.",
            (SECTOR_ETF,),
        )
        for n in RESID_WINDOWS
    ),
    feature(
        "idio_vol_60",
        "cross_sectional",
        "Idiosyncratic volatility: std of the daily residual returns over 60 bars, annualized.",
        (SECTOR_ETF,),
    ),
    feature(
        "idio_share_60",
        "cross_sectional",
        "Share of the 60-bar return variance the sector ETF does not explain (1 − R²).",
        (SECTOR_ETF,),
    ),
]


def _series_features(frame: pd.DataFrame) -> dict[str, Array]:
    """Features of one market series on its own bars (1-D arrays)."""
    c = frame["close"].to_numpy(dtype=np.float64)[:, None]
    out: dict[str, Array] = {"close": c}
    for n in SERIES_RETURNS:
        out[f"ret_{n}"] = ind.pct_change(c, n)
    for n in (50, 200):
        out[f"dist_sma_{n}"] = c / ind.rolling_mean(c, n) - 1.0
    out["rvol_20"] = ind.rolling_std(np.log(c / ind.shift(c, 1)), 20) * np.sqrt(TRADING_DAYS)
    out["rsi_14"] = ind.rsi(c, 14)
    out["dd_252"] = c / ind.rolling_max(c, 252) - 1.0
    m, s = ind.rolling_mean(c, 20), ind.rolling_std(c, 20)
    out["z_20"] = (c - m) / s
    lo, hi = ind.rolling_min(c, 252), ind.rolling_max(c, 252)
    out["range_pos_252"] = (c - lo) / (hi - lo)
    return {k: v[:, 0] for k, v in out.items()}


class MarketContext:
    """Market series by symbol, each with its features computed once on its own calendar, and
    the macro series' vintages (:class:`~turbomode.features.macro.MacroContext`)."""

    def __init__(self, market: pd.DataFrame | None, macro: pd.DataFrame | None = None) -> None:
        self._frames: dict[str, pd.DataFrame] = {}
        self._features: dict[str, dict[str, Array]] = {}
        self.macro = MacroContext(macro)
        if market is None or market.empty:
            return
        require_columns(market, ["symbol", "date", "close"], "market frame")
        m = market[[c for c in PRICE_COLUMNS if c in market.columns]].copy()
        if not pd.api.types.is_datetime64_dtype(m["date"]):
            m["date"] = pd.to_datetime(m["date"])
        m = m.dropna(subset=["close"]).sort_values(["symbol", "date"], kind="stable")
        if m.duplicated(["symbol", "date"]).any():
            raise SchemaError("market frame has duplicate (symbol, date) rows")
        for sym, g in m.groupby("symbol", sort=False):
            self._frames[str(sym)] = g.reset_index(drop=True)

    @property
    def symbols(self) -> set[str]:
        return set(self._frames)

    def has(self, symbol: str) -> bool:
        return symbol in self._frames

    def features(self, symbol: str) -> dict[str, Array]:
        if symbol not in self._features:
            self._features[symbol] = _series_features(self._frames[symbol])
        return self._features[symbol]

    def on_dates(self, symbol: str, name: str, dates: npt.NDArray[np.datetime64]) -> Array:
        """Series feature ``name`` as seen on each of ``dates`` (NaN if absent or stale)."""
        out = np.full(len(dates), np.nan)
        if symbol not in self._frames:
            return out
        mdates = self._frames[symbol]["date"].to_numpy(dtype="datetime64[ns]")
        vals = self.features(symbol)[name]
        idx = np.searchsorted(mdates, dates, side="right") - 1
        ok = idx >= 0
        stale = np.timedelta64(MAX_STALE_DAYS, "D")
        ok[ok] &= (dates[ok] - mdates[idx[ok]]) <= stale
        out[ok] = vals[idx[ok]]
        return out

    def on_rows(self, symbol: str, name: str, layout: Layout) -> Array:
        """Series feature ``name`` for every row of ``layout`` (same for all symbols)."""
        return self.on_dates(symbol, name, layout.dates)[layout.date_code]


def sector_codes(
    layout: Layout, sectors: Mapping[str, str]
) -> tuple[list[str], npt.NDArray[np.intp]]:
    """Sector names in use and, per symbol code, the index of its sector (−1: unmapped)."""
    names = sorted({sectors[s] for s in layout.symbols if s in sectors})
    pos = {n: i for i, n in enumerate(names)}
    codes = np.array([pos.get(sectors.get(s, ""), -1) for s in layout.symbols], dtype=np.intp)
    return names, codes


def sector_etf_on_rows(
    ctx: MarketContext,
    name: str,
    layout: Layout,
    sector_names: list[str],
    sym_sector: npt.NDArray[np.intp],
) -> Gather:
    """For each row, feature ``name`` of the row's own sector ETF (NaN when it has none):
    a gather from one per-date series per sector, plus a NaN series for the rest."""
    n_dates, n_sectors = len(layout.dates), len(sector_names)
    table = np.full((n_sectors + 1, n_dates), np.nan)
    for i, sector in enumerate(sector_names):  # at most 11 sectors
        etf = SECTOR_ETFS.get(sector)
        if etf is not None and ctx.has(etf):
            table[i] = ctx.on_dates(etf, name, layout.dates)
    row_sector = sym_sector[layout.sym_code]
    row_sector = np.where(row_sector >= 0, row_sector, n_sectors)
    return Gather(table.reshape(-1), row_sector * n_dates + layout.date_code)


def market_features(
    layout: Layout,
    ret1_bars: Array,
    ctx: MarketContext,
    sector_names: list[str],
    sym_sector: npt.NDArray[np.intp],
) -> dict[str, Column]:
    """The market family as columns of ``layout``'s rows: the index and VIX features are one
    value per date, the sector ETF's per (sector, date), beta and correlation per bar."""
    per: dict[str, Array] = {}

    def on(symbol: str, name: str) -> Array:
        return ctx.on_dates(symbol, name, layout.dates)

    per["vix_level"], per["vix_chg_1"], per["vix_chg_5"] = (
        on("^VIX", "close"),
        on("^VIX", "ret_1"),
        on("^VIX", "ret_5"),
    )
    per["vix_z_20"], per["vix_range_pos_252"] = on("^VIX", "z_20"), on("^VIX", "range_pos_252")
    for n in (1, 5, 20, 60):
        per[f"spy_ret_{n}"] = on("SPY", f"ret_{n}")
    for k in ("dist_sma_50", "dist_sma_200", "rvol_20", "rsi_14", "dd_252"):
        per[f"spy_{k}"] = on("SPY", k)
    for sym in ("QQQ", "IWM"):
        p = sym.lower()
        for n in (1, 5, 20):
            per[f"{p}_ret_{n}"] = on(sym, f"ret_{n}")
        per[f"{p}_dist_sma_50"] = on(sym, "dist_sma_50")
    per["qqq_minus_spy_20"] = per["qqq_ret_20"] - per["spy_ret_20"]
    per["iwm_minus_spy_20"] = per["iwm_ret_20"] - per["spy_ret_20"]
    out: dict[str, Column] = {k: layout.per_date(v) for k, v in per.items()}
    for key, src in (
        ("sector_etf_ret_5", "ret_5"),
        ("sector_etf_ret_20", "ret_20"),
        ("sector_etf_dist_sma_50", "dist_sma_50"),
    ):
        out[key] = sector_etf_on_rows(ctx, src, layout, sector_names, sym_sector)
    spy1 = layout.to_bars(per["spy_ret_1"][layout.date_code])
    out["beta_spy_60"] = layout.bars_column(ind.rolling_beta(ret1_bars, spy1, 60))
    out["corr_spy_60"] = layout.bars_column(ind.rolling_corr(ret1_bars, spy1, 60))
    etf1 = layout.to_bars(
        sector_etf_on_rows(ctx, "ret_1", layout, sector_names, sym_sector).values()
    )
    out.update(residual_features(layout, ret1_bars, etf1))
    return out


def residual_features(layout: Layout, ret1: Array, etf1: Array) -> dict[str, Column]:
    """Returns net of the sector ETF (which carries the market too), bar view.

    Short-term reversal lives mostly in the part of a return its industry does not explain, so
    the residual is what a reversal feature should rank. Day t's residual uses the beta fitted
    on the 60 bars ending t − 1: known at t, and not fitted on the return it adjusts."""
    beta = ind.shift(ind.rolling_beta(ret1, etf1, BETA_WINDOW), 1)
    resid = ret1 - beta * etf1
    run = ind.flat_run(resid)
    out: dict[str, Column] = {
        f"resid_ret_{n}": layout.bars_column(resid if n == 1 else ind.rolling_sum(resid, n, run))
        for n in RESID_WINDOWS
    }
    idio = ind.rolling_std(resid, BETA_WINDOW, run)
    total = ind.rolling_std(ret1, BETA_WINDOW, ind.flat_run(ret1))
    out["idio_vol_60"] = layout.bars_column(idio * np.sqrt(TRADING_DAYS))
    out["idio_share_60"] = layout.bars_column(np.clip((idio / total) ** 2, 0.0, 1.0))
    return out
