"""Per-symbol time-series families: trend, oscillators, volatility and volume.

Each family takes :class:`Bars` (bar view: bars × symbols) and yields (name, array) for exactly
the names it registers, one at a time, so the engine writes each into its output and lets it go
before the next is computed. The same function runs on all symbols at once or on one symbol's
single column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from turbomode.features import indicators as ind
from turbomode.features.indicators import TRADING_DAYS, Array
from turbomode.features.registry import feature

_A = TypeVar("_A", bound=npt.NDArray[Any])


@dataclass
class Bars:
    """OHLCV in the bar view plus a cache of intermediates shared between families."""

    open: Array
    high: Array
    low: Array
    close: Array
    volume: Array
    _cache: dict[str, npt.NDArray[Any]] = field(default_factory=dict, repr=False)

    def release(self) -> None:
        """Drop the shared intermediates once every family has run."""
        self._cache.clear()

    def cached(self, key: str, fn: Callable[[], _A]) -> _A:
        if key not in self._cache:
            self._cache[key] = fn()
        return cast(_A, self._cache[key])

    @property
    def prev_close(self) -> Array:
        return self.cached("prev_close", lambda: ind.shift(self.close, 1))

    @property
    def ret1(self) -> Array:
        return self.cached("ret1", lambda: self.close / self.prev_close - 1.0)

    @property
    def logret1(self) -> Array:
        return self.cached("logret1", lambda: np.log(self.close / self.prev_close))

    def atr(self, n: int) -> Array:
        return self.cached(f"atr{n}", lambda: ind.atr(self.high, self.low, self.close, n))

    @property
    def close_run(self) -> npt.NDArray[np.intp]:
        return self.cached("close_run", lambda: ind.flat_run(self.close))

    def sma(self, n: int) -> Array:
        return self.cached(f"sma{n}", lambda: ind.rolling_mean(self.close, n, self.close_run))

    def rsi(self, n: int) -> Array:
        return self.cached(f"rsi{n}", lambda: ind.rsi(self.close, n))


Family = Callable[[Bars], Iterator[tuple[str, Array]]]

# ---- trend -----------------------------------------------------------------------------------
RET_WINDOWS = (1, 2, 3, 5, 10, 20, 60, 120, 250)
SMA_WINDOWS = (10, 20, 50, 200)
EMA_SPANS = (12, 26, 50)
SPLIT_WINDOWS = (5, 20)
"""Windows of the overnight / intraday split of returns: they behave differently (overnight
returns persist, intraday returns reverse), so the plain return mixes two effects."""
TREND: list[str] = [
    *(
        feature(
            f"ret_{n}", "trend", f"Simple return over the last {n} bar(s): close/close[t-{n}] − 1."
        )
        for n in RET_WINDOWS
    ),
    feature("log_ret_1", "trend", "Log return of the last bar."),
    *(feature(f"dist_sma_{n}", "trend", f"close / SMA({n}) − 1.") for n in SMA_WINDOWS),
    feature("sma_ratio_10_20", "trend", "SMA(10)/SMA(20) − 1: short over medium trend."),
    feature("sma_ratio_20_50", "trend", "SMA(20)/SMA(50) − 1."),
    feature("sma_ratio_50_200", "trend", "SMA(50)/SMA(200) − 1: golden/death cross distance."),
    *(feature(f"dist_ema_{n}", "trend", f"close / EMA({n}) − 1.") for n in EMA_SPANS),
    feature("macd_pct", "trend", "MACD line / close: scale-free across symbols."),
    feature("macd_signal_pct", "trend", "MACD signal / close."),
    feature("macd_hist_pct", "trend", "MACD histogram / close."),
    feature("adx_14", "trend", "Average directional index (Wilder, 14): trend strength 0–100."),
    feature("plus_di_14", "trend", "+DI (Wilder, 14): upward directional movement."),
    feature("minus_di_14", "trend", "−DI (Wilder, 14): downward directional movement."),
    feature(
        "sma_20_slope_5", "trend", "SMA(20) / SMA(20)[t-5] − 1: direction of the medium trend."
    ),
    feature("sma_50_slope_10", "trend", "SMA(50) / SMA(50)[t-10] − 1."),
    feature(
        "trend_slope_20", "trend", "OLS slope of log close on bar number over 20 bars (per bar)."
    ),
    feature(
        "trend_slope_60", "trend", "OLS slope of log close on bar number over 60 bars (per bar)."
    ),
    *(
        feature(
            f"overnight_ret_{n}",
            "trend",
            f"Sum of the last {n} overnight log returns, log(open / previous close).",
        )
        for n in SPLIT_WINDOWS
    ),
    *(
        feature(
            f"intraday_ret_{n}",
            "trend",
            f"Sum of the last {n} intraday log returns, log(close / open).",
        )
        for n in SPLIT_WINDOWS
    ),
]


def trend(b: Bars) -> Iterator[tuple[str, Array]]:
    """Returns, moving averages and their distances, MACD, ADX and regression slopes."""
    c = b.close
    for n in RET_WINDOWS:
        yield f"ret_{n}", b.ret1 if n == 1 else ind.pct_change(c, n)
    yield "log_ret_1", b.logret1
    for n in SMA_WINDOWS:
        yield f"dist_sma_{n}", c / b.sma(n) - 1.0
    yield "sma_ratio_10_20", b.sma(10) / b.sma(20) - 1.0
    yield "sma_ratio_20_50", b.sma(20) / b.sma(50) - 1.0
    yield "sma_ratio_50_200", b.sma(50) / b.sma(200) - 1.0
    emas = {n: ind.ema(c, n) for n in EMA_SPANS}
    for n in EMA_SPANS:
        yield f"dist_ema_{n}", c / emas[n] - 1.0
    macd = emas[12] - emas[26]
    signal = ind.ema(macd, 9)
    yield "macd_pct", macd / c
    yield "macd_signal_pct", signal / c
    yield "macd_hist_pct", (macd - signal) / c
    adx, plus_di, minus_di = ind.adx(b.high, b.low, c, 14)
    yield "adx_14", adx
    yield "plus_di_14", plus_di
    yield "minus_di_14", minus_di
    del adx, plus_di, minus_di
    yield "sma_20_slope_5", ind.pct_change(b.sma(20), 5)
    yield "sma_50_slope_10", ind.pct_change(b.sma(50), 10)
    logc = np.log(c)
    yield "trend_slope_20", ind.ols_slope(logc, 20)
    yield "trend_slope_60", ind.ols_slope(logc, 60)
    overnight, intraday = np.log(b.open / b.prev_close), np.log(c / b.open)
    for name, part in (("overnight", overnight), ("intraday", intraday)):
        run = ind.flat_run(part)
        for n in SPLIT_WINDOWS:
            yield f"{name}_ret_{n}", ind.rolling_sum(part, n, run)


# ---- oscillators -----------------------------------------------------------------------------
RSI_WINDOWS = (2, 7, 14, 21)
OSCILLATOR: list[str] = [
    *(feature(f"rsi_{n}", "oscillator", f"RSI (Wilder, {n}), 0–100.") for n in RSI_WINDOWS),
    feature("rsi_14_chg_5", "oscillator", "RSI(14) − RSI(14)[t-5]: momentum of momentum."),
    feature("stoch_k_14", "oscillator", "Stochastic %K(14): close within the 14-bar range, 0–100."),
    feature("stoch_d_14", "oscillator", "Stochastic %D: 3-bar SMA of %K(14)."),
    feature("stoch_k_5", "oscillator", "Fast stochastic %K(5)."),
    feature("williams_r_14", "oscillator", "Williams %R(14), −100..0."),
    feature("williams_r_28", "oscillator", "Williams %R(28), −100..0."),
    feature("cci_14", "oscillator", "Commodity channel index (14)."),
    feature("cci_20", "oscillator", "Commodity channel index (20)."),
    feature("roc_12", "oscillator", "Rate of change over 12 bars, percent."),
    feature("roc_25", "oscillator", "Rate of change over 25 bars, percent."),
    feature("ultimate_osc", "oscillator", "Ultimate oscillator (7/14/28), 0–100."),
    feature("stoch_rsi_14", "oscillator", "Stochastic of RSI(14) over 14 bars, 0–1."),
    feature("dpo_20", "oscillator", "Detrended price oscillator: (close − SMA(20)[t-11]) / close."),
]


def oscillator(b: Bars) -> Iterator[tuple[str, Array]]:
    """Bounded momentum oscillators: RSI variants, stochastics, %R, CCI, ROC, UO, DPO."""
    c, h, lo = b.close, b.high, b.low
    for n in RSI_WINDOWS:
        yield f"rsi_{n}", b.rsi(n)
    yield "rsi_14_chg_5", b.rsi(14) - ind.shift(b.rsi(14), 5)
    k14 = ind.stochastic_k(h, lo, c, 14)
    yield "stoch_k_14", k14
    yield "stoch_d_14", ind.rolling_mean(k14, 3)
    yield "stoch_k_5", ind.stochastic_k(h, lo, c, 5)
    yield "williams_r_14", ind.williams_r(h, lo, c, 14)
    yield "williams_r_28", ind.williams_r(h, lo, c, 28)
    yield "cci_14", ind.cci(h, lo, c, 14)
    yield "cci_20", ind.cci(h, lo, c, 20)
    yield "roc_12", 100.0 * ind.pct_change(c, 12)
    yield "roc_25", 100.0 * ind.pct_change(c, 25)
    pc = b.prev_close
    low_ = np.minimum(lo, pc)  # NaN on the first bar: no prior close yet
    bp = c - low_
    tr = np.maximum(h, pc) - low_
    tr_run = ind.flat_run(tr)
    avg = {n: ind.rolling_sum(bp, n) / ind.rolling_sum(tr, n, tr_run) for n in (7, 14, 28)}
    yield "ultimate_osc", 100.0 * (4 * avg[7] + 2 * avg[14] + avg[28]) / 7.0
    r = b.rsi(14)
    rmin, rmax = ind.rolling_min(r, 14), ind.rolling_max(r, 14)
    yield "stoch_rsi_14", (r - rmin) / (rmax - rmin)
    yield "dpo_20", (c - ind.shift(b.sma(20), 11)) / c


# ---- volatility ------------------------------------------------------------------------------
RVOL_WINDOWS = (5, 10, 20, 60, 120, 250)
VOLATILITY: list[str] = [
    feature("atr_pct_14", "volatility", "ATR(14) / close: the label threshold's basis."),
    feature("atr_pct_5", "volatility", "ATR(5) / close."),
    feature("atr_pct_20", "volatility", "ATR(20) / close."),
    feature("bb_pos_20", "volatility", "Bollinger(20,2) %B: 0 at the lower band, 1 at the upper."),
    feature("bb_width_20", "volatility", "Bollinger(20,2) width: (upper − lower) / SMA(20)."),
    feature("bb_z_20", "volatility", "(close − SMA(20)) / std(20): z-score in the band."),
    *(
        feature(
            f"rvol_{n}",
            "volatility",
            f"Realized volatility: std of log returns over {n} bars, annualized.",
        )
        for n in RVOL_WINDOWS
    ),
    feature("rvol_ratio_5_20", "volatility", "rvol_5 / rvol_20: volatility expansion."),
    feature("rvol_ratio_20_120", "volatility", "rvol_20 / rvol_120."),
    feature(
        "parkinson_vol_20", "volatility", "Parkinson high–low volatility over 20 bars, annualized."
    ),
    feature("gk_vol_20", "volatility", "Garman–Klass OHLC volatility over 20 bars, annualized."),
    feature(
        "downside_vol_20",
        "volatility",
        "Std of negative log returns (others 0) over 20 bars, annualized.",
    ),
    feature("dd_20", "volatility", "Drawdown: close / max close of 20 bars − 1."),
    feature("dd_60", "volatility", "Drawdown from the 60-bar high close."),
    feature("dd_252", "volatility", "Drawdown from the 252-bar (52-week) high close."),
    feature("up_from_low_20", "volatility", "close / min close of 20 bars − 1."),
    feature("up_from_low_252", "volatility", "close / min close of 252 bars − 1."),
    feature("range_pos_20", "volatility", "(close − 20-bar low) / (20-bar high − low)."),
    feature("range_pos_252", "volatility", "(close − 52-week low) / (52-week high − low)."),
    feature("gap_1", "volatility", "Overnight gap: open / previous close − 1."),
    feature("gap_abs_mean_20", "volatility", "Mean absolute overnight gap over 20 bars."),
    feature("gap_mean_20", "volatility", "Mean overnight gap over 20 bars."),
    feature("hl_range_1", "volatility", "(high − low) / close of the last bar."),
    feature("hl_range_mean_20", "volatility", "Mean (high − low)/close over 20 bars."),
    feature("oc_ret_1", "volatility", "Intraday return: close / open − 1."),
    feature("close_location", "volatility", "(close − low) / (high − low) of the last bar."),
    feature("ret_skew_60", "volatility", "Skewness of daily returns over 60 bars."),
    feature("ret_kurt_60", "volatility", "Excess kurtosis of daily returns over 60 bars."),
    feature("max_ret_20", "volatility", "Largest daily return of the last 20 bars."),
    feature("min_ret_20", "volatility", "Smallest daily return of the last 20 bars."),
]


def volatility(b: Bars) -> Iterator[tuple[str, Array]]:
    """ATR, Bollinger, realized and range-based vol, drawdowns, gaps and tail shape."""
    o, h, lo, c = b.open, b.high, b.low, b.close
    ann = np.sqrt(TRADING_DAYS)
    yield "atr_pct_14", b.atr(14) / c
    yield "atr_pct_5", b.atr(5) / c
    yield "atr_pct_20", b.atr(20) / c
    sma20, sd20 = b.sma(20), ind.rolling_std(c, 20)
    upper, lower = sma20 + 2 * sd20, sma20 - 2 * sd20
    yield "bb_pos_20", (c - lower) / (upper - lower)
    yield "bb_width_20", (upper - lower) / sma20
    yield "bb_z_20", (c - sma20) / sd20
    lr = b.logret1
    lr_run = ind.flat_run(lr)
    rv = {n: ind.rolling_std(lr, n, lr_run) * ann for n in RVOL_WINDOWS}
    for n in RVOL_WINDOWS:
        yield f"rvol_{n}", rv[n]
    yield "rvol_ratio_5_20", rv[5] / rv[20]
    yield "rvol_ratio_20_120", rv[20] / rv[120]
    hl2 = np.log(h / lo) ** 2
    yield (
        "parkinson_vol_20",
        (np.sqrt(ind.rolling_mean(hl2, 20, ind.flat_run(hl2)) / (4 * np.log(2))) * ann),
    )
    gk = 0.5 * hl2 - (2 * np.log(2) - 1) * np.log(c / o) ** 2
    gk_mean = ind.rolling_mean(gk, 20, ind.flat_run(gk))
    yield "gk_vol_20", np.sqrt(np.clip(gk_mean, 0, None)) * ann
    down = np.minimum(lr, 0.0)
    yield "downside_vol_20", ind.rolling_std(down, 20, ind.flat_run(down)) * ann
    for n in (20, 60, 252):
        yield f"dd_{n}", c / ind.rolling_max(c, n) - 1.0
    for n in (20, 252):
        yield f"up_from_low_{n}", c / ind.rolling_min(c, n) - 1.0
    for n in (20, 252):
        ll = ind.rolling_min(lo, n)
        yield f"range_pos_{n}", (c - ll) / (ind.rolling_max(h, n) - ll)
    gap = o / b.prev_close - 1.0
    yield "gap_1", gap
    yield "gap_abs_mean_20", ind.rolling_mean(np.abs(gap), 20)
    yield "gap_mean_20", ind.rolling_mean(gap, 20)
    hlr = (h - lo) / c
    yield "hl_range_1", hlr
    yield "hl_range_mean_20", ind.rolling_mean(hlr, 20)
    yield "oc_ret_1", c / o - 1.0
    yield "close_location", (c - lo) / (h - lo)
    yield "ret_skew_60", ind.rolling_skew(b.ret1, 60)
    yield "ret_kurt_60", ind.rolling_kurt(b.ret1, 60)
    yield "max_ret_20", ind.rolling_max(b.ret1, 20)
    yield "min_ret_20", ind.rolling_min(b.ret1, 20)


# ---- volume ----------------------------------------------------------------------------------
VOLUME: list[str] = [
    *(
        feature(f"volume_ratio_{n}", "volume", f"volume / {n}-bar mean volume.")
        for n in (5, 10, 20, 60)
    ),
    feature("volume_z_20", "volume", "(volume − 20-bar mean) / 20-bar std."),
    feature("volume_trend_5_20", "volume", "5-bar mean volume / 20-bar mean volume."),
    feature("obv_slope_10", "volume", "OBV change over 10 bars / volume traded in them (−1..1)."),
    feature("obv_slope_20", "volume", "OBV change over 20 bars / volume traded in them (−1..1)."),
    feature(
        "dollar_volume_ratio_20_250",
        "volume",
        "20-bar over 250-bar mean dollar volume: a turnover shock, free of the price scale.",
    ),
    feature("volume_shock_5_250", "volume", "5-bar over 250-bar mean volume: a volume shock."),
    feature(
        "amihud_ratio_20_250",
        "volume",
        "Amihud illiquidity (mean |return| / dollar volume) over 20 bars / over 250 bars.",
    ),
    feature("mfi_14", "volume", "Money flow index (14), 0–100."),
    feature("cmf_20", "volume", "Chaikin money flow (20), −1..1."),
    feature("vwap_dist_20", "volume", "close / 20-bar volume-weighted typical price − 1."),
    feature("pv_corr_20", "volume", "Correlation of daily return and log volume over 20 bars."),
    feature("up_volume_ratio_20", "volume", "Share of 20-bar volume traded on up-close bars."),
]


def volume(b: Bars) -> Iterator[tuple[str, Array]]:
    """Volume relative to its own history, OBV, liquidity and money-flow measures."""
    h, lo, c, v = b.high, b.low, b.close, b.volume
    v_run = ind.flat_run(v)  # a halted stock: no volume for weeks
    vm = {n: ind.rolling_mean(v, n, v_run) for n in (5, 10, 20, 60)}
    vsum = {n: ind.rolling_sum(v, n, v_run) for n in (10, 20)}
    for n in (5, 10, 20, 60):
        yield f"volume_ratio_{n}", v / vm[n]
    yield "volume_z_20", (v - vm[20]) / ind.rolling_std(v, 20)
    yield "volume_trend_5_20", vm[5] / vm[20]
    r = b.ret1
    signed = np.sign(c - b.prev_close) * v  # OBV's daily step; NaN on the first bar
    for n in (10, 20):
        yield f"obv_slope_{n}", ind.rolling_sum(signed, n) / vsum[n]
    # Levels (dollar volume, Amihud) encode the price scale, and adjusted prices carry later
    # splits and dividends into the past: only ratios of a series to its own history are kept.
    dv = c * v
    dv_run = ind.flat_run(dv)
    yield (
        "dollar_volume_ratio_20_250",
        ind.rolling_mean(dv, 20, dv_run) / ind.rolling_mean(dv, 250, dv_run),
    )
    yield "volume_shock_5_250", vm[5] / ind.rolling_mean(v, 250, v_run)
    illiq = np.abs(r) / dv
    illiq_run = ind.flat_run(illiq)
    yield (
        "amihud_ratio_20_250",
        ind.rolling_mean(illiq, 20, illiq_run) / ind.rolling_mean(illiq, 250, illiq_run),
    )
    tp = (h + lo + c) / 3.0
    flow = tp * v
    dtp = tp - ind.shift(tp, 1)
    up_flow = np.where(np.isnan(dtp), np.nan, np.where(dtp > 0, flow, 0.0))
    down_flow = np.where(np.isnan(dtp), np.nan, np.where(dtp < 0, flow, 0.0))
    pos = ind.rolling_sum(up_flow, 14, ind.flat_run(up_flow))
    neg = ind.rolling_sum(down_flow, 14, ind.flat_run(down_flow))
    yield "mfi_14", 100.0 * pos / (pos + neg)
    mfm = ((c - lo) - (h - c)) / (h - lo)
    mfm[h == lo] = 0.0
    yield "cmf_20", ind.rolling_sum(mfm * v, 20) / vsum[20]
    vwap = ind.rolling_sum(flow, 20, ind.flat_run(flow)) / vsum[20]
    yield "vwap_dist_20", c / vwap - 1.0
    # log(v), not log1p(v): a correlation ignores log v's shift under a volume rescale, but
    # log1p's +1 is a level (a zero-volume day is a missing log volume).
    logv = np.log(np.where(v > 0, v, np.nan))
    yield "pv_corr_20", ind.rolling_corr(r, logv, 20)
    up_v = np.where(np.isnan(r), np.nan, np.where(r > 0, v, 0.0))
    yield "up_volume_ratio_20", ind.rolling_sum(up_v, 20) / vsum[20]


BAR_FAMILIES: dict[str, tuple[Family, list[str]]] = {
    "trend": (trend, TREND),
    "oscillator": (oscillator, OSCILLATOR),
    "volatility": (volatility, VOLATILITY),
    "volume": (volume, VOLUME),
}
