"""Every feature is scale-free, and the new families match an independent pandas formula.

Prices are split- and dividend-adjusted as of the download, so a price or volume *level* at t
encodes corporate actions that happened later (a stock that will split 10:1 shows a tenth of
its price years before). A feature that changes when one symbol's whole history is multiplied
by a constant is such a level; none may remain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from turbomode.features import REGISTRY, build_features

from .conftest import ETF3, synthetic_market


@pytest.fixture(scope="module")
def synth() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    return synthetic_market(n_symbols=12, n_days=420, seed=3)


@pytest.fixture(scope="module")
def base(synth) -> pd.DataFrame:
    prices, market, sectors = synth
    return build_features(prices, market, sectors, dtype=np.float64).frame


def _moved(a_frame: pd.DataFrame, b_frame: pd.DataFrame, names: list[str]) -> dict[str, float]:
    """Columns whose NaN pattern or values (beyond 1e-6 relative) differ between two builds."""
    a, b = a_frame[names].to_numpy(), b_frame[names].to_numpy()
    out: dict[str, float] = {}
    with np.errstate(invalid="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(a), 1e-12)
    worst = np.nanmax(np.where(np.isnan(rel), 0, rel), axis=0)
    for j, n in enumerate(names):
        if not (np.isnan(a[:, j]) == np.isnan(b[:, j])).all():
            out[n] = float("nan")
        elif worst[j] > 1e-6:
            out[n] = float(worst[j])
    return out


def _scaled(prices: pd.DataFrame, price_k: float, volume_k: float) -> pd.DataFrame:
    scaled = prices.copy()
    hit = scaled["symbol"] == "S01"
    scaled.loc[hit, ["open", "high", "low", "close"]] *= price_k
    scaled.loc[hit, "volume"] *= volume_k
    return scaled


@pytest.mark.parametrize(("price_k", "volume_k"), [(4.0, 1.0), (1.0, 8.0), (0.1, 37.0)])
def test_scaling_one_symbols_history_changes_no_feature(synth, base, price_k, volume_k) -> None:
    prices, market, sectors = synth
    got = build_features(_scaled(prices, price_k, volume_k), market, sectors, dtype=np.float64)
    moved = _moved(base, got.frame, REGISTRY.names())
    assert not moved, f"features that depend on the price or volume scale: {moved}"


def test_a_level_feature_would_be_caught(synth, base) -> None:
    """The check can fail: a price level (the close, as the removed SMA levels were) moves."""
    prices, market, sectors = synth
    got = build_features(_scaled(prices, 4.0, 1.0), market, sectors, dtype=np.float64).frame
    key = ["symbol", "date"]
    a = base.merge(prices[[*key, "close"]], on=key)
    b = got.merge(_scaled(prices, 4.0, 1.0)[[*key, "close"]], on=key)
    assert set(_moved(a, b, ["close", "rsi_14"])) == {"close"}


def _per_symbol(prices: pd.DataFrame) -> pd.core.groupby.DataFrameGroupBy:
    return prices.sort_values(["symbol", "date"]).groupby("symbol", sort=False)


def test_overnight_intraday_and_volume_shocks_against_pandas(synth, base) -> None:
    prices, _, _ = synth
    p = prices.sort_values(["symbol", "date"]).reset_index(drop=True)
    g = p.groupby("symbol", sort=False)
    on = np.log(p["open"] / g["close"].shift(1))
    intra = np.log(p["close"] / p["open"])
    f = base.sort_values(["symbol", "date"]).reset_index(drop=True)
    for n in (5, 20):
        want_on = on.groupby(p["symbol"]).transform(lambda s, n=n: s.rolling(n).sum())
        want_in = intra.groupby(p["symbol"]).transform(lambda s, n=n: s.rolling(n).sum())
        np.testing.assert_allclose(f[f"overnight_ret_{n}"], want_on, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(f[f"intraday_ret_{n}"], want_in, rtol=1e-9, atol=1e-12)
    dv = p["close"] * p["volume"]
    roll = lambda s, n: s.groupby(p["symbol"]).transform(lambda x: x.rolling(n).mean())  # noqa: E731
    np.testing.assert_allclose(
        f["dollar_volume_ratio_20_250"], roll(dv, 20) / roll(dv, 250), rtol=1e-7
    )
    np.testing.assert_allclose(
        f["volume_shock_5_250"], roll(p["volume"], 5) / roll(p["volume"], 250), rtol=1e-7
    )
    illiq = (p["close"] / g["close"].shift(1) - 1).abs() / dv
    np.testing.assert_allclose(
        f["amihud_ratio_20_250"], roll(illiq, 20) / roll(illiq, 250), rtol=1e-7
    )


def test_residual_returns_against_a_loop(synth, base) -> None:
    """Residual = return − beta × sector ETF return, beta by OLS over the 60 bars before."""
    prices, market, sectors = synth
    sym = "S04"
    etf = ETF3[sectors[sym]]
    s = prices[prices["symbol"] == sym].set_index("date")["close"]
    m = market[market["symbol"] == etf].set_index("date")["close"].reindex(s.index)
    r, rm = (s / s.shift(1) - 1).to_numpy(), (m / m.shift(1) - 1).to_numpy()
    f = base[base["symbol"] == sym].set_index("date")
    resid = np.full(len(r), np.nan)
    for t in range(61, len(r)):
        x, y = rm[t - 60 : t], r[t - 60 : t]
        beta = np.cov(x, y, ddof=0)[0, 1] / np.var(x)
        resid[t] = r[t] - beta * rm[t]
    np.testing.assert_allclose(f["resid_ret_1"].to_numpy()[61:], resid[61:], rtol=1e-6, atol=1e-9)
    want5 = pd.Series(resid).rolling(5).sum().to_numpy()
    np.testing.assert_allclose(f["resid_ret_5"].to_numpy()[70:], want5[70:], rtol=1e-6, atol=1e-9)
    t = len(r) - 1
    idio = np.std(resid[t - 59 : t + 1], ddof=1) * np.sqrt(252)
    assert f["idio_vol_60"].iloc[t] == pytest.approx(idio, rel=1e-6)


def test_within_sector_ranks_and_relative_returns_against_groupby(synth, base) -> None:
    _, _, sectors = synth
    f = base.assign(sector=base["symbol"].map(sectors))
    by = f.groupby(["date", "sector"])
    for k in ("resid_ret_5", "gap_1", "intraday_ret_5", "dd_252"):
        want = by[k].rank(pct=True)
        np.testing.assert_allclose(f[f"sector_rank_{k}"], want, rtol=1e-9, equal_nan=True)
    want = f["ret_5"] - by["ret_5"].transform("mean")
    np.testing.assert_allclose(f["sector_rel_ret_5"], want, rtol=1e-9, atol=1e-12)
    want = f.groupby("date")["max_ret_20"].rank(pct=True)
    np.testing.assert_allclose(f["cs_rank_max_ret_20"], want, rtol=1e-9, equal_nan=True)
