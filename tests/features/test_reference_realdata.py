"""Each family against an independent per-symbol reference on rows of real data.

The references are written the plain way — pandas Series per symbol, Python loops for the
Wilder recursions, scipy for moments and ranks — and share no code with the engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from turbomode.features import build_features

from .conftest import load_real

pytestmark = pytest.mark.realdata
SYMBOLS = [
    "AAPL",
    "JPM",
    "XOM",
    "NEE",
    "PLD",
    "MRNA",
    "KO",
    "CAT",
    "LIN",
    "META",
    "AMZN",
    "UNH",
    "GEV",
    "NVDA",
    "HD",
]


@pytest.fixture(scope="module")
def real(shared_data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, str]]:
    px, mk, sectors = load_real(shared_data_dir, SYMBOLS, start="2021-01-01")
    f = build_features(px, mk, sectors, dtype=np.float64).frame
    return px.sort_values(["symbol", "date"]).reset_index(drop=True), mk, f, sectors


def _wilder_loop(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    y, count = np.nan, 0
    for i, v in enumerate(x):
        if np.isnan(v):
            continue
        y = v if count == 0 else y + (v - y) / n
        count += 1
        if count >= n:
            out[i] = y
    return out


def _each(real):
    px, _, f, _ = real
    for sym, g in px.groupby("symbol"):
        yield sym, g.reset_index(drop=True), f[f["symbol"] == sym].reset_index(drop=True)


def close(got: pd.Series | np.ndarray, want: pd.Series | np.ndarray, rtol: float = 1e-7) -> None:
    np.testing.assert_allclose(
        np.asarray(got, float), np.asarray(want, float), rtol=rtol, atol=1e-9, equal_nan=True
    )


def test_trend_family(real) -> None:
    for _, g, f in _each(real):
        c = g["close"]
        for n in (1, 5, 250):
            close(f[f"ret_{n}"], c / c.shift(n) - 1)
        close(f["dist_sma_50"], c / c.rolling(50).mean() - 1)
        e12 = c.ewm(span=12, adjust=False).mean().where(np.arange(len(c)) >= 11)
        e26 = c.ewm(span=26, adjust=False).mean().where(np.arange(len(c)) >= 25)
        close(f["dist_ema_12"], c / e12 - 1)
        macd = e12 - e26
        sig = macd.ewm(span=9, adjust=False).mean().where(macd.notna().cumsum() >= 9)
        close(f["macd_hist_pct"], (macd - sig) / c)
        logc = np.log(c.to_numpy())
        for t in (59, 200, len(c) - 1):
            if t < len(c):
                assert f["trend_slope_60"][t] == pytest.approx(
                    np.polyfit(np.arange(60), logc[t - 59 : t + 1], 1)[0], rel=1e-6
                )
        # ADX by loop
        h, lo = g["high"].to_numpy(), g["low"].to_numpy()
        cc = c.to_numpy()
        up, dn = np.r_[np.nan, np.diff(h)], np.r_[np.nan, -np.diff(lo)]
        pdm = np.where(np.isnan(up), np.nan, np.where((up > dn) & (up > 0), up, 0.0))
        mdm = np.where(np.isnan(up), np.nan, np.where((dn > up) & (dn > 0), dn, 0.0))
        pc = np.r_[np.nan, cc[:-1]]
        tr = np.where(
            np.isnan(pc), np.nan, np.maximum.reduce([h - lo, np.abs(h - pc), np.abs(lo - pc)])
        )
        atr = _wilder_loop(tr, 14)
        pdi, mdi = 100 * _wilder_loop(pdm, 14) / atr, 100 * _wilder_loop(mdm, 14) / atr
        close(f["plus_di_14"], pdi)
        close(f["adx_14"], _wilder_loop(100 * np.abs(pdi - mdi) / (pdi + mdi), 14))


def test_oscillator_family(real) -> None:
    for _, g, f in _each(real):
        c, h, lo = g["close"], g["high"], g["low"]
        d = c.diff().to_numpy()
        for n in (2, 14):
            gain = _wilder_loop(np.where(np.isnan(d), np.nan, np.maximum(d, 0)), n)
            loss = _wilder_loop(np.where(np.isnan(d), np.nan, np.maximum(-d, 0)), n)
            with np.errstate(divide="ignore"):
                close(f[f"rsi_{n}"], 100 - 100 / (1 + gain / loss))
        k = 100 * (c - lo.rolling(14).min()) / (h.rolling(14).max() - lo.rolling(14).min())
        close(f["stoch_k_14"], k)
        close(f["stoch_d_14"], k.rolling(3).mean())
        close(
            f["williams_r_28"],
            -100 * (h.rolling(28).max() - c) / (h.rolling(28).max() - lo.rolling(28).min()),
        )
        tp = (h + lo + c) / 3
        mad = tp.rolling(20).apply(lambda w: np.abs(w - w.mean()).mean(), raw=True)
        close(f["cci_20"], (tp - tp.rolling(20).mean()) / (0.015 * mad))
        close(f["roc_12"], 100 * c.pct_change(12))
        pc = c.shift(1)
        bp = c - np.minimum(lo, pc)
        tr = np.maximum(h, pc) - np.minimum(lo, pc)
        a = {n: bp.rolling(n).sum() / tr.rolling(n).sum() for n in (7, 14, 28)}
        close(f["ultimate_osc"], 100 * (4 * a[7] + 2 * a[14] + a[28]) / 7)


def test_volatility_family(real) -> None:
    for _, g, f in _each(real):
        o, h, lo, c = g["open"], g["high"], g["low"], g["close"]
        tr = np.maximum.reduce(
            [
                (h - lo).to_numpy(),
                (h - c.shift()).abs().to_numpy(),
                (lo - c.shift()).abs().to_numpy(),
            ]
        )
        tr[0] = h[0] - lo[0]
        close(f["atr_pct_14"], _wilder_loop(tr, 14) / c)
        m, s = c.rolling(20).mean(), c.rolling(20).std()
        close(f["bb_pos_20"], (c - (m - 2 * s)) / (4 * s))
        close(f["bb_width_20"], 4 * s / m)
        lr = np.log(c).diff().to_numpy()
        r = c.pct_change().to_numpy()
        for t in (30, 300, len(c) - 1):
            if 60 <= t < len(c):
                assert f["rvol_20"][t] == pytest.approx(
                    np.std(lr[t - 19 : t + 1], ddof=1) * np.sqrt(252), rel=1e-7
                )
                assert f["ret_skew_60"][t] == pytest.approx(
                    stats.skew(r[t - 59 : t + 1], bias=False), rel=1e-5
                )
                assert f["ret_kurt_60"][t] == pytest.approx(
                    stats.kurtosis(r[t - 59 : t + 1], bias=False), rel=1e-5
                )
        close(f["dd_252"], c / c.rolling(252).max() - 1)
        close(
            f["range_pos_20"],
            (c - lo.rolling(20).min()) / (h.rolling(20).max() - lo.rolling(20).min()),
        )
        close(f["gap_1"], o / c.shift() - 1)
        close(
            f["parkinson_vol_20"],
            np.sqrt((np.log(h / lo) ** 2).rolling(20).mean() / (4 * np.log(2))) * np.sqrt(252),
        )


def test_volume_family(real) -> None:
    for _, g, f in _each(real):
        h, lo, c, v = g["high"], g["low"], g["close"], g["volume"]
        obv = np.zeros(len(c))
        for i in range(1, len(c)):
            obv[i] = obv[i - 1] + (v[i] if c[i] > c[i - 1] else -v[i] if c[i] < c[i - 1] else 0)
        obv_s = pd.Series(obv)
        close(f["obv_slope_20"], (obv_s - obv_s.shift(20)) / v.rolling(20).sum(), rtol=1e-6)
        close(f["volume_ratio_20"], v / v.rolling(20).mean())
        tp = (h + lo + c) / 3
        flow = tp * v
        pos = flow.where(tp.diff() > 0, 0.0).rolling(14).sum()
        neg = flow.where(tp.diff() < 0, 0.0).rolling(14).sum()
        mfi = (100 - 100 / (1 + pos / neg)).where(np.arange(len(c)) >= 14)
        close(f["mfi_14"], mfi)
        mfv = ((c - lo) - (h - c)) / (h - lo) * v
        close(f["cmf_20"], mfv.rolling(20).sum() / v.rolling(20).sum())
        close(f["vwap_dist_20"], c / (flow.rolling(20).sum() / v.rolling(20).sum()) - 1)
        close(f["pv_corr_20"], c.pct_change().rolling(20).corr(np.log(v.where(v > 0))), rtol=1e-5)


def test_cross_sectional_family(real) -> None:
    _, mk, f, sectors = real
    spy = mk[mk["symbol"] == "SPY"].set_index("date")["close"]
    for day in sorted(f["date"].unique())[-400::97]:
        d = f[f["date"] == day].set_index("symbol")
        x = d["ret_20"].dropna()
        close(d.loc[x.index, "cs_rank_ret_20"], stats.rankdata(x) / len(x))
        close(d["cs_z_ret_20"].loc[x.index], (x - x.mean()) / x.std(ddof=1))
        sec = d.index.map(sectors)
        for s in set(sec):
            members = d.index[sec == s]
            y = d.loc[members, "ret_5"].dropna()
            close(d.loc[y.index, "sector_rank_ret_5"], stats.rankdata(y) / len(y))
            assert d.loc[members[0], "sector_mom_5"] == pytest.approx(y.mean())
        assert d["breadth_sma_50"].iloc[0] == pytest.approx((d["dist_sma_50"].dropna() > 0).mean())
        spy20 = spy.loc[:day].iloc[-1] / spy.loc[:day].iloc[-21] - 1
        close(d["rs_spy_20"], d["ret_20"] - spy20)


def test_market_family(real) -> None:
    px, mk, f, sectors = real
    m = {s: g.set_index("date") for s, g in mk.groupby("symbol")}
    for day in sorted(f["date"].unique())[-500::111]:
        d = f[f["date"] == day].iloc[0]
        vix = m["^VIX"]["close"].loc[:day]
        assert d["vix_level"] == pytest.approx(vix.iloc[-1])
        assert d["vix_z_20"] == pytest.approx(
            (vix.iloc[-1] - vix.iloc[-20:].mean()) / vix.iloc[-20:].std(ddof=1)
        )
        spy = m["SPY"]["close"].loc[:day]
        assert d["spy_ret_5"] == pytest.approx(spy.iloc[-1] / spy.iloc[-6] - 1)
        assert d["spy_dist_sma_200"] == pytest.approx(spy.iloc[-1] / spy.iloc[-200:].mean() - 1)
        iwm = m["IWM"]["close"].loc[:day]
        assert d["iwm_minus_spy_20"] == pytest.approx(
            iwm.iloc[-1] / iwm.iloc[-21] - spy.iloc[-1] / spy.iloc[-21]
        )
    # beta and sector ETF on one symbol
    g = px[px["symbol"] == "JPM"].set_index("date")["close"]
    fj = f[f["symbol"] == "JPM"].set_index("date")
    spy_r = m["SPY"]["close"].pct_change().reindex(g.index)
    r = g.pct_change()
    t = g.index[-1]
    x, y = spy_r.iloc[-60:].to_numpy(), r.iloc[-60:].to_numpy()
    assert fj.loc[t, "beta_spy_60"] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-6)
    xlf = m["XLF"]["close"].loc[:t]
    assert fj.loc[t, "sector_etf_ret_20"] == pytest.approx(xlf.iloc[-1] / xlf.iloc[-21] - 1)
    assert sectors["JPM"] == "Financials"
