"""A seeded synthetic market with a planted signal of known strength.

Why: the platform needs a ground truth. On real data nobody knows how much signal there is;
here we do. The pipeline must recover the planted signal, and must find nothing when
``signal_strength=0``.

The model, per trading day t (log returns):

* a market factor ``m_t`` with a two-state volatility regime (calm ≈ 0.8 %/day, stressed
  ≈ 2.0 %/day; a Markov chain with a stationary ~1/6 of stressed days) and fat tails;
* one factor per GICS sector ``s_t`` (its volatility also rises in stress);
* an idiosyncratic part ``σ_i,t · u_t`` where ``u`` is a unit-variance AR(1):
  ``u_t = −a·u_{t−1} + √(1−a²)·ε_t`` with Student-t(4) innovations. ``a`` is
  ``signal_strength``: a short-term reversal.
* Each day's return is split into an overnight gap (a quarter of the factor moves plus a fifth
  of the fresh idiosyncratic variance) and the intraday move, and the *predictable* part
  ``−a·σ·u_{t−1}`` lands in the intraday move. So a signal computed at the close of t can be
  acted on at the open of t+1, which is how labels and trades are defined.

The planted correlation between ``u_t`` and the idiosyncratic part of the next open→close
return is ``a / √(a² + 0.8·(1−a²))`` (:func:`planted_correlation`: 0.218 for the default
a=0.20). What a model can see is noisier — market and sector moves, betas and volatility
differences sit on top — so :func:`measure_reversal_ic` measures the observable version:
the mean daily within-sector Spearman correlation between −(close-to-close return of day t)
and the open→close return of day t+1. With the defaults it measures ≈ 0.20 ± 0.003 (see
``tests/data/test_synthetic.py``, which checks this) and ≈ 0 with ``signal_strength=0``.

Volume co-moves with absolute returns and rises in stressed spells. SPY, QQQ, IWM, the 11
SPDR sector ETFs and ^VIX are derived from the same factors, so market-context features
relate to the stocks as they do in reality.

Macro series (:func:`macro_series`) come from the same market factor and regime, published the
way their real counterparts are — late, and revised — so the point-in-time macro path runs on
the default data: a 10y−2y curve (daily, posted the next day), weekly jobless claims (released
the Thursday after the week, revised a week later), monthly M2 (released on the fourth Tuesday
of the next month, revised with the next release) and a monthly manufacturing diffusion index
(released on the third Thursday of its own month, revised a month later). They draw from a
random stream of their own, so the prices of a seed are the same with or without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar
from pandas.tseries.offsets import CustomBusinessDay

from turbomode.config import (
    GICS_SECTORS,
    SECTOR_ETFS,
    Settings,
    SyntheticSettings,
    UniverseSettings,
)
from turbomode.data.schema import canonical_order
from turbomode.data.sources.base import DateLike, MarketData, MarketDataSource, filter_frame
from turbomode.data.universe import Universe

SECTOR_CODES: dict[str, str] = {
    "Communication Services": "CS",
    "Consumer Discretionary": "CD",
    "Consumer Staples": "ST",
    "Energy": "EN",
    "Financials": "FN",
    "Health Care": "HC",
    "Industrials": "IN",
    "Information Technology": "IT",
    "Materials": "MT",
    "Real Estate": "RE",
    "Utilities": "UT",
}
# Market beta of each sector's factor structure: defensives below 1, cyclicals above.
SECTOR_BETA: dict[str, float] = {
    "Communication Services": 1.0,
    "Consumer Discretionary": 1.15,
    "Consumer Staples": 0.65,
    "Energy": 1.1,
    "Financials": 1.1,
    "Health Care": 0.8,
    "Industrials": 1.05,
    "Information Technology": 1.25,
    "Materials": 1.0,
    "Real Estate": 0.9,
    "Utilities": 0.55,
}
CAP_RANGES: dict[str, tuple[float, float]] = {
    "large": (100e9, 1.5e12),
    "mid": (20e9, 100e9),
    "small": (4e9, 20e9),
}
IDIO_VOL: dict[str, float] = {"large": 0.010, "mid": 0.014, "small": 0.019}
MACRO_STREAM = 27  # the macro series' own random stream (see macro_series)
CALM_VOL, STRESS_VOL = 0.008, 0.020
P_CALM_TO_STRESS, P_STRESS_TO_CALM = 0.01, 0.05
OVERNIGHT_FACTOR_SHARE = 0.25  # share of factor moves that happen overnight
OVERNIGHT_IDIO_VAR_SHARE = 0.20  # share of fresh idiosyncratic variance that is overnight


def planted_correlation(strength: float) -> float:
    """Correlation of u_t with the idiosyncratic part of the next day's open→close return."""
    a = float(strength)
    denom = np.sqrt(a * a + (1 - OVERNIGHT_IDIO_VAR_SHARE) * (1 - a * a))
    return float(a / denom) if denom > 0 else 0.0


def trading_days(start: str, n_days: int) -> pd.DatetimeIndex:
    """Weekdays without US federal holidays: close enough to the NYSE calendar."""
    bday = CustomBusinessDay(calendar=USFederalHolidayCalendar())
    return pd.date_range(start=pd.Timestamp(start), periods=n_days, freq=bday)


def _t_shocks(rng: np.random.Generator, df: float, size: tuple[int, ...] | int) -> np.ndarray:
    """Student-t draws scaled to unit variance: fat tails without changing volatility."""
    return rng.standard_t(df, size=size) / np.sqrt(df / (df - 2))


def _ohlc(
    rng: np.random.Generator,
    start_price: np.ndarray,
    overnight: np.ndarray,
    intraday: np.ndarray,
    day_vol: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Build open/high/low/close (days × series) from overnight and intraday log returns."""
    log_close = np.log(start_price)[None, :] + np.cumsum(overnight + intraday, axis=0)
    log_open = log_close - intraday
    close, open_ = np.exp(log_close), np.exp(log_open)
    wick_hi = np.abs(rng.standard_normal(close.shape)) * 0.5 * day_vol
    wick_lo = np.abs(rng.standard_normal(close.shape)) * 0.5 * day_vol
    high = np.maximum(open_, close) * np.exp(wick_hi)
    low = np.minimum(open_, close) * np.exp(-wick_lo)
    return open_, high, low, close


def _long(
    symbols: Sequence[str],
    dates: pd.DatetimeIndex,
    arrays: dict[str, np.ndarray],
    valid: np.ndarray | None = None,
) -> pd.DataFrame:
    """Stack days × series arrays into the canonical long frame, dropping invalid cells."""
    n_days, n_sym = arrays["close"].shape
    frame = pd.DataFrame(
        {
            "symbol": np.tile(np.asarray(symbols, dtype=object), n_days),
            "date": np.repeat(dates.values, n_sym),
            **{k: v.reshape(-1).astype("float64") for k, v in arrays.items()},
        }
    )
    if valid is not None:
        frame = frame[valid.reshape(-1)]
    return canonical_order(frame)


def _universe_frame(cfg: SyntheticSettings, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    counters = dict.fromkeys(GICS_SECTORS, 0)
    caps = ("large", "mid", "small")
    for i in range(cfg.n_symbols):
        sector = GICS_SECTORS[i % len(GICS_SECTORS)]
        k = counters[sector]
        counters[sector] += 1
        cap = caps[k % 3]
        lo, hi = CAP_RANGES[cap]
        market_cap = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        symbol = f"{SECTOR_CODES[sector]}{k + 1:02d}"
        rows.append(
            {
                "symbol": symbol,
                "name": f"Synthetic {sector} {k + 1}",
                "sector": sector,
                "sub_industry": f"Synthetic {sector}",
                "market_cap": market_cap,
                "cap_hint": cap,
            }
        )
    return pd.DataFrame(rows)


def generate_market(
    settings: SyntheticSettings | None = None,
    universe_settings: UniverseSettings | None = None,
) -> MarketData:
    """Generate prices, market context and the universe. Same settings, same data."""
    cfg = settings or SyntheticSettings()
    rng = np.random.default_rng(cfg.seed)
    dates = trading_days(cfg.start, cfg.n_days)
    T = len(dates)
    a = cfg.signal_strength

    cons = _universe_frame(cfg, rng)
    n = len(cons)
    sectors = cons["sector"].to_numpy()
    sector_idx = np.array([GICS_SECTORS.index(s) for s in sectors])

    # Volatility regime: a two-state Markov chain.
    stressed = np.zeros(T, dtype=bool)
    state = False
    for t in range(T):
        flip = rng.random() < (P_STRESS_TO_CALM if state else P_CALM_TO_STRESS)
        state = state != flip
        stressed[t] = state
    stress_mult = np.where(stressed, STRESS_VOL / CALM_VOL, 1.0)
    market_vol = CALM_VOL * stress_mult
    market = 0.0003 + market_vol * _t_shocks(rng, 5, T)

    sector_vol = 0.006 * np.sqrt(stress_mult)[:, None]
    sector_f = sector_vol * _t_shocks(rng, 5, (T, len(GICS_SECTORS)))

    beta = np.array([SECTOR_BETA[s] for s in sectors]) * rng.normal(1.0, 0.15, n)
    load = rng.normal(1.0, 0.2, n)
    idio_base = np.array([IDIO_VOL[c] for c in cons["cap_hint"]]) * rng.lognormal(0, 0.2, n)
    idio_vol = idio_base[None, :] * np.where(stressed, 1.5, 1.0)[:, None]

    # The planted reversal: a unit-variance AR(1) in the idiosyncratic part.
    eta = _t_shocks(rng, 4, (T, n))  # overnight innovation
    zeta = _t_shocks(rng, 4, (T, n))  # intraday innovation
    fresh = np.sqrt(1 - a * a) * (
        np.sqrt(OVERNIGHT_IDIO_VAR_SHARE) * eta + np.sqrt(1 - OVERNIGHT_IDIO_VAR_SHARE) * zeta
    )
    u = np.empty((T, n))
    u[0] = _t_shocks(rng, 4, n)
    for t in range(1, T):
        u[t] = -a * u[t - 1] + fresh[t]
    predictable = np.vstack([np.zeros((1, n)), -a * u[:-1]])

    factor = beta[None, :] * market[:, None] + load[None, :] * sector_f[:, sector_idx]
    overnight = (
        OVERNIGHT_FACTOR_SHARE * factor
        + idio_vol * np.sqrt(1 - a * a) * np.sqrt(OVERNIGHT_IDIO_VAR_SHARE) * eta
    )
    intraday = (1 - OVERNIGHT_FACTOR_SHARE) * factor + idio_vol * (
        predictable + np.sqrt(1 - a * a) * np.sqrt(1 - OVERNIGHT_IDIO_VAR_SHARE) * zeta
    )
    overnight[0] = 0.0
    day_vol = np.sqrt((beta[None, :] * market_vol[:, None]) ** 2 + sector_vol**2 + idio_vol**2)
    start_px = np.exp(rng.uniform(np.log(20), np.log(400), n))
    open_, high, low, close = _ohlc(rng, start_px, overnight, intraday, day_vol)

    # Volume: turnover of market cap, higher on big moves and in stressed spells.
    shares_out = cons["market_cap"].to_numpy() / start_px
    surprise = np.abs(overnight + intraday) / day_vol
    volume = (
        shares_out[None, :]
        * 0.004
        * np.exp(0.6 * (surprise - 0.8) + 0.25 * rng.standard_normal((T, n)))
        * np.where(stressed, 1.3, 1.0)[:, None]
    )
    volume = np.round(volume)

    # Listings and a delisting, so warm-up and membership have something to do.
    first = np.zeros(n, dtype=int)
    last = np.full(n, T - 1)
    late = rng.choice(n, size=min(3, n), replace=False)
    for j, frac in zip(late, (0.35, 0.55, 0.75), strict=False):
        first[j] = int(T * frac)
    gone = int(rng.choice(np.setdiff1d(np.arange(n), late)))
    last[gone] = int(T * 0.85)
    days = np.arange(T)[:, None]
    valid = (days >= first[None, :]) & (days <= last[None, :])

    symbols = cons["symbol"].tolist()
    prices = _long(
        symbols,
        dates,
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        valid,
    )

    members = cons.drop(columns=["cap_hint"])
    intervals = pd.DataFrame(
        {
            "symbol": symbols,
            "start_date": dates[first],
            "end_date": [dates[last[j]] if last[j] < T - 1 else pd.NaT for j in range(n)],
        }
    )
    universe = Universe.from_frames(members, universe_settings, intervals)
    market_frame = _market_series(rng, dates, market, market_vol, sector_f, stressed)
    macro = macro_series(cfg.seed, dates, market, stressed)
    return MarketData(
        prices=prices, market=market_frame, universe=universe, source="synthetic", macro=macro
    )


def _nth_weekday(month_starts: pd.DatetimeIndex, weekday: int, n: int) -> pd.DatetimeIndex:
    """The n-th ``weekday`` (0 = Monday) of each month."""
    first = month_starts + pd.to_timedelta((weekday - month_starts.dayofweek) % 7, unit="D")
    return first + pd.Timedelta(weeks=n - 1)


def macro_series(
    seed: int, dates: pd.DatetimeIndex, market: np.ndarray, stressed: np.ndarray
) -> pd.DataFrame:
    """The four macro roles as vintages (turbomode.data.macro's table), from the market
    factor and the volatility regime, each value computed from market days before its
    release. Only what was released by the last trading day is included."""
    rng = np.random.default_rng([seed, MACRO_STREAM])
    last = dates[-1]
    day_ret = pd.Series(market, index=dates)
    day_stress = pd.Series(stressed.astype(float), index=dates)
    rows: list[pd.DataFrame] = []

    def add(role: str, obs: pd.DatetimeIndex, released: pd.DatetimeIndex, value: Any) -> None:
        rows.append(
            pd.DataFrame(
                {
                    "series": role,
                    "source_id": f"synthetic:{role}",
                    "date": obs,
                    "realtime_start": released,
                    "value": np.asarray(value, dtype=np.float64),
                }
            )
        )

    # curve: mean-reverting spread, steeper in stress and on down days; posted the next day
    target = np.where(stressed, 1.6, 0.6)
    shocks = 0.025 * rng.standard_normal(len(dates))
    curve = np.empty(len(dates))
    level = 0.8
    for t in range(len(dates)):
        level += 0.02 * (target[t] - level) - 1.5 * market[t] + shocks[t]
        curve[t] = level
    add("curve", dates, dates + pd.Timedelta(days=1), np.round(curve, 2))

    # claims: weeks ending Saturday, up in stressed weeks and after market falls; the first
    # print on the Thursday after, revised the next Thursday
    weeks = pd.date_range(dates[0], last, freq="W-SAT")
    week_of = weeks[weeks.searchsorted(dates, side="left").clip(max=len(weeks) - 1)]
    in_week = dates <= weeks[-1]
    w_ret = day_ret[in_week].groupby(week_of[in_week]).sum().reindex(weeks, fill_value=0.0)
    w_stress = day_stress[in_week].groupby(week_of[in_week]).mean().reindex(weeks, fill_value=0)
    y = np.zeros(len(weeks))
    noise = 0.03 * rng.standard_normal(len(weeks))
    for k in range(len(weeks)):
        y[k] = (0.9 * y[k - 1] if k else 0.0) + 0.25 * w_stress.iloc[k] - 2.0 * w_ret.iloc[k]
        y[k] += noise[k]
    claims = 220_000 * np.exp(y)
    first = np.round(claims * np.exp(0.01 * rng.standard_normal(len(weeks))), -3)
    add("claims", weeks, weeks + pd.Timedelta(days=5), first)
    add("claims", weeks, weeks + pd.Timedelta(days=12), np.round(claims, -3))

    # money (M2) and manufacturing: months dated by their first day
    months = pd.date_range(dates[0].to_period("M").start_time, last, freq="MS")
    month_of = dates.to_period("M").start_time
    m_stress = day_stress.groupby(month_of).mean().reindex(months, fill_value=0.0)
    growth = 0.005 + 0.01 * m_stress.to_numpy() + 0.002 * rng.standard_normal(len(months))
    m2 = 14_000 * np.exp(np.cumsum(growth))
    release = _nth_weekday(months + pd.offsets.MonthBegin(1), 1, 4)  # 4th Tuesday, next month
    first_m2 = np.round(m2 * np.exp(0.001 * rng.standard_normal(len(months))), 1)
    add("money", months, release, first_m2)
    add("money", months[:-1], release[1:], np.round(m2[:-1], 1))

    survey = _nth_weekday(months, 3, 3)  # 3rd Thursday of the month itself
    cum = np.r_[0.0, np.cumsum(market)]
    lo = dates.searchsorted(months - pd.Timedelta(days=14))
    hi = dates.searchsorted(survey - pd.Timedelta(days=3))
    window_ret = cum[hi] - cum[lo]
    prev_stress = m_stress.shift(1, fill_value=0.0).to_numpy()
    mfg = 5 + 250 * window_ret - 12 * prev_stress + 6 * rng.standard_normal(len(months))
    add("manufacturing", months, survey, np.round(mfg, 1))
    revised = mfg[:-1] + 1.5 * rng.standard_normal(len(months) - 1)
    add("manufacturing", months[:-1], survey[1:], np.round(revised, 1))

    out = pd.concat(rows, ignore_index=True)
    out = out[out["realtime_start"] <= last]
    return out.sort_values(["series", "date", "realtime_start"], kind="stable").reset_index(
        drop=True
    )


def _market_series(
    rng: np.random.Generator,
    dates: pd.DatetimeIndex,
    market: np.ndarray,
    market_vol: np.ndarray,
    sector_f: np.ndarray,
    stressed: np.ndarray,
) -> pd.DataFrame:
    """SPY, QQQ, IWM, sector ETFs and ^VIX from the same factors as the stocks."""
    T = len(dates)
    it = GICS_SECTORS.index("Information Technology")
    cs = GICS_SECTORS.index("Communication Services")
    names = ["SPY", "QQQ", "IWM", *SECTOR_ETFS.values()]
    cols = [
        market,
        1.15 * market + 0.5 * sector_f[:, it] + 0.3 * sector_f[:, cs],
        1.1 * market + 0.004 * rng.standard_normal(T),
    ]
    for sector in SECTOR_ETFS:
        cols.append(SECTOR_BETA[sector] * market + sector_f[:, GICS_SECTORS.index(sector)])
    rets = np.column_stack(cols)
    overnight = OVERNIGHT_FACTOR_SHARE * rets
    overnight[0] = 0.0
    intraday = rets - overnight
    vol = np.abs(rets).mean(axis=0)[None, :] * np.ones((T, 1))
    start_px = np.array([250.0, 150.0, 120.0] + [60.0] * len(SECTOR_ETFS))
    open_, high, low, close = _ohlc(rng, start_px, overnight, intraday, vol)
    volume = np.round(
        np.array([80e6, 40e6, 30e6] + [10e6] * len(SECTOR_ETFS))[None, :]
        * np.exp(0.5 * np.abs(rets) / vol + 0.2 * rng.standard_normal(rets.shape))
    )
    etfs = _long(
        names, dates, {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )

    # ^VIX: mean-reverting log level around the regime's annualized volatility, rising when
    # the market falls (elasticity about −5), as the real index does.
    target = np.log(100 * np.sqrt(252) * market_vol * 1.1)
    log_v = np.empty(T)
    log_v[0] = target[0]
    noise = 0.04 * rng.standard_normal(T)
    for t in range(1, T):
        log_v[t] = log_v[t - 1] + 0.08 * (target[t] - log_v[t - 1]) - 5.0 * market[t] + noise[t]
    vix_close = np.exp(log_v)
    vix_open = np.concatenate([[vix_close[0]], vix_close[:-1]]) * np.exp(
        0.01 * rng.standard_normal(T)
    )
    spread = np.abs(rng.standard_normal(T)) * 0.03
    vix = pd.DataFrame(
        {
            "symbol": "^VIX",
            "date": dates,
            "open": vix_open,
            "high": np.maximum(vix_open, vix_close) * np.exp(spread),
            "low": np.minimum(vix_open, vix_close) * np.exp(-spread),
            "close": vix_close,
            "volume": 0.0,
        }
    )
    return canonical_order(pd.concat([etfs, vix], ignore_index=True))


def measure_reversal_ic(prices: pd.DataFrame, sectors: dict[str, str]) -> tuple[float, float]:
    """Mean and standard error of the daily within-sector Spearman correlation between
    −(close-to-close return of day t) and the open→close return of day t+1."""
    p = prices.sort_values(["symbol", "date"])
    g = p.groupby("symbol", sort=False)
    frame = pd.DataFrame(
        {
            "date": p["date"],
            "sector": p["symbol"].map(sectors),
            "x": -(p["close"] / g["close"].shift(1) - 1),
            "y": g["close"].shift(-1) / g["open"].shift(-1) - 1,
        }
    ).dropna()
    ranks = frame.groupby(["date", "sector"])[["x", "y"]].rank()
    frame[["rx", "ry"]] = ranks.to_numpy()
    grouped = frame.groupby(["date", "sector"])
    size = grouped["rx"].transform("size")
    frame = frame[size >= 3]
    corr = frame.groupby(["date", "sector"])[["rx", "ry"]].corr().xs("rx", level=2)["ry"]
    daily = corr.groupby(level="date").mean().dropna()
    return float(daily.mean()), float(daily.std(ddof=1) / np.sqrt(len(daily)))


class SyntheticSource(MarketDataSource):
    """The default source: nothing to download, the same data for the same seed."""

    name = "synthetic"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    def load(
        self,
        symbols: Sequence[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> MarketData:
        md = generate_market(self.settings.synthetic, self.settings.universe)
        if symbols is not None:
            md.universe.require(symbols)
        md.prices = filter_frame(md.prices, symbols, start, end)
        md.market = filter_frame(md.market, None, start, end)
        if md.macro is not None and end is not None:  # as known on `end`; earlier history kept
            md.macro = md.macro[md.macro["realtime_start"] <= pd.Timestamp(end)].reset_index(
                drop=True
            )
        return md
