"""Indicator primitives and families on small cases with hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turbomode.features import build_features
from turbomode.features import indicators as ind
from turbomode.features.temporal import calendar_features


def col(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)[:, None]


def test_shift_returns_and_sma_by_hand() -> None:
    c = col(1, 2, 3, 4, 5)
    np.testing.assert_allclose(
        ind.pct_change(c, 2)[:, 0], [np.nan, np.nan, 2.0, 1.0, 2 / 3], equal_nan=True
    )
    np.testing.assert_allclose(
        ind.rolling_mean(c, 3)[:, 0], [np.nan, np.nan, 2, 3, 4], equal_nan=True
    )
    np.testing.assert_allclose(ind.shift(c, -1)[:, 0], [2, 3, 4, 5, np.nan], equal_nan=True)


def test_rsi_by_hand() -> None:
    # d = [nan, 1, -1, 1]; Wilder(2) gains: 1, 0.5, 0.75; losses: 0, 0.5, 0.25 (valid from bar 2)
    np.testing.assert_allclose(
        ind.rsi(col(1, 2, 1, 2), 2)[:, 0], [np.nan, np.nan, 50.0, 75.0], equal_nan=True
    )
    assert ind.rsi(col(*range(1, 30)), 14)[-1, 0] == 100.0
    assert ind.rsi(col(*range(30, 1, -1)), 14)[-1, 0] == 0.0
    assert ind.rsi(col(*[5.0] * 30), 14)[-1, 0] == 50.0


def test_true_range_and_atr_by_hand() -> None:
    h, lo, c = col(11, 15), col(9, 12), col(10, 13)
    np.testing.assert_allclose(ind.true_range(h, lo, c)[:, 0], [2.0, 5.0])  # gap: 15 − prev 10
    c = col(*[10.0] * 20)
    a = ind.atr(c + 1, c - 1, c, 14)[:, 0]
    assert np.isnan(a[:13]).all() and np.allclose(a[13:], 2.0)


def test_stochastic_williams_bollinger_by_hand() -> None:
    h, lo, c = col(10, 12, 11), col(8, 9, 7), col(9, 11, 10)
    k = ind.stochastic_k(h, lo, c, 3)[-1, 0]
    assert k == pytest.approx(100 * (10 - 7) / (12 - 7))
    assert ind.williams_r(h, lo, c, 3)[-1, 0] == pytest.approx(k - 100)
    x = col(*range(1, 21))
    sd = np.std(np.arange(1, 21), ddof=1)
    assert ind.rolling_std(x, 20)[-1, 0] == pytest.approx(sd)


def test_adx_on_a_steady_uptrend() -> None:
    n = 60
    c = col(*np.linspace(10, 40, n))
    adx, pdi, mdi = ind.adx(c + 0.5, c - 0.5, c, 14)
    assert np.isnan(adx[:27, 0]).all() and adx[-1, 0] == pytest.approx(100.0)
    assert mdi[-1, 0] == 0.0 and pdi[-1, 0] > 0


def test_cci_against_a_loop() -> None:
    rng = np.random.default_rng(1)
    c = col(*(50 + rng.normal(0, 1, 40).cumsum()))
    h, lo = c + 1, c - 1.5
    got = ind.cci(h, lo, c, 20)[:, 0]
    tp = ((h + lo + c) / 3)[:, 0]
    for t in range(19, 40):
        w = tp[t - 19 : t + 1]
        assert got[t] == pytest.approx((tp[t] - w.mean()) / (0.015 * np.abs(w - w.mean()).mean()))
    assert np.isnan(got[:19]).all()


def test_ols_slope_recovers_a_line() -> None:
    y = col(*(0.01 * np.arange(80) + 3.0))
    s = ind.ols_slope(y, 20)[:, 0]
    assert np.isnan(s[:19]).all() and np.allclose(s[19:], 0.01)


@pytest.mark.parametrize("w", [1, 2, 5, 20, 63, 300])
def test_moving_max_min_match_pandas(w: int) -> None:
    rng = np.random.default_rng(w)
    a = rng.normal(size=(250, 9))
    a[:3, 1] = np.nan
    a[100, 2] = np.nan
    a[-20:, 3] = np.nan
    with ind.backend("pandas"):
        want_max, want_min = ind.rolling_max(a, w), ind.rolling_min(a, w)
    np.testing.assert_array_equal(ind.rolling_max(a, w), want_max)
    np.testing.assert_array_equal(ind.rolling_min(a, w), want_min)


def test_vectorized_ewm_matches_pandas_with_gaps() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 12))
    a[:5, 0] = np.nan  # late start
    a[-30:, 1] = np.nan  # early end
    a[100:103, 2] = np.nan  # a gap: handed to pandas
    a[:, 3] = np.nan  # nothing at all
    for span in (2, 12, 26):
        got = ind.ema(a, span)
        with ind.backend("pandas"):
            want = ind.ema(a, span)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)
    with pytest.raises(ValueError, match="backend"), ind.backend("fortran"):
        pass


def test_calendar_features_by_hand() -> None:
    cal = calendar_features(
        np.array(["2024-06-28", "2024-06-03", "2024-03-27"], dtype="datetime64[ns]")
    )
    assert list(cal["day_of_week"]) == [4, 0, 2]
    assert list(cal["bdays_to_month_end"]) == [0, 19, 2]
    assert list(cal["bdays_since_month_start"]) == [19, 0, 18]
    assert list(cal["bdays_to_quarter_end"]) == [0, 19, 2]
    assert list(cal["month_end_window"]) == [1, 0, 0]
    assert list(cal["quarter_end_window"]) == [1, 0, 1]


def test_cross_sectional_by_hand() -> None:
    dates = pd.bdate_range("2021-01-01", periods=30)
    rows = []
    for sym, growth in (("A", 0.01), ("B", 0.02), ("C", -0.01), ("D", 0.0)):
        close = 100 * (1 + growth) ** np.arange(30)
        rows.append(
            pd.DataFrame(
                {
                    "symbol": sym,
                    "date": dates,
                    "open": close,
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": 1e6,
                }
            )
        )
    prices = pd.concat(rows, ignore_index=True)
    sectors = {"A": "Energy", "B": "Energy", "C": "Energy", "D": "Utilities"}
    f = build_features(prices, None, sectors, dtype=np.float64).frame
    last = f[f["date"] == dates[-1]].set_index("symbol")
    assert last["cs_rank_ret_5"].to_dict() == {"A": 0.75, "B": 1.0, "C": 0.25, "D": 0.5}
    assert last["sector_rank_ret_5"].to_dict() == pytest.approx(
        {"A": 2 / 3, "B": 1.0, "C": 1 / 3, "D": 1.0}
    )
    assert last.loc["A", "sector_mom_5"] == pytest.approx(np.mean([1.01**5, 1.02**5, 0.99**5]) - 1)
    assert last.loc["A", "breadth_sma_20"] == pytest.approx(0.5)  # A, B above; C below; D equal
    assert last.loc["A", "breadth_adv"] == pytest.approx(0.5)
    assert last.loc["A", "dispersion_ret_1"] == pytest.approx(
        np.std([0.01, 0.02, -0.01, 0.0], ddof=1)
    )
    assert np.isnan(last["rs_spy_20"]).all()  # no market frame


_TRICKY = [-np.inf, np.inf, -0.0, 0.0, 1e-300, -1e-300, 5.0, np.nan, 1.0, 1.0 + 2.2e-16]


@settings(max_examples=200, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 80)),
    kind=st.sampled_from(["ints", "normal", "tricky"]),
    seed=st.integers(0, 2**16),
)
def test_rank_rows_equals_pandas(shape: tuple[int, int], kind: str, seed: int) -> None:
    """The sort-key ranking equals pandas' average ranks: ties, NaN, ±inf, −0.0 and values a
    rounding apart (which take the checked fallback)."""
    rng = np.random.default_rng(seed)
    if kind == "ints":
        x = rng.integers(-3, 4, size=shape).astype(float)
    elif kind == "normal":
        x = rng.normal(size=shape)
    else:
        x = rng.choice(_TRICKY, size=shape)
    x[rng.random(shape) < 0.2] = np.nan
    want = pd.DataFrame(x).rank(axis=1).to_numpy()
    np.testing.assert_array_equal(ind.rank_rows(x), want)


def test_flat_run_by_hand() -> None:
    a = col(1, 1, 1, 2, np.nan, np.nan, 3, 3)
    assert ind.flat_run(a)[:, 0].tolist() == [1, 2, 3, 1, 1, 1, 1, 2]


def test_windows_of_one_value_are_exact_after_a_history() -> None:
    """A running sum keeps the rounding of values that left the window; with the series'
    flat run, a window of zeros sums to exactly 0 (so 0/0 is NaN, as pandas gives) and a
    window of one value has exactly that mean and a standard deviation of 0."""
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.lognormal(13, 1, 200), np.zeros(30), np.full(30, 1234.5678)])[:, None]
    run = ind.flat_run(v)
    s = ind.rolling_sum(v, 20, run)[:, 0]
    m = ind.rolling_mean(v, 20, run)[:, 0]
    assert (s[219:230] == 0.0).all() and (m[249:] == 1234.5678).all()
    assert (s[249:] == 1234.5678 * 20).all()
    r = np.log(np.concatenate([1 + rng.normal(0, 0.02, 200), np.ones(30)]))[:, None]
    sd = ind.rolling_std(r, 20, ind.flat_run(r))[:, 0]
    assert (sd[219:] == 0.0).all() and (sd[20:200] > 0).all()
    with ind.backend("pandas"):
        want = ind.rolling_sum(v, 20)[:, 0]
    np.testing.assert_allclose(s, want, rtol=1e-12, equal_nan=True)
    with np.errstate(invalid="ignore"):
        assert np.isnan((s / s)[219:230]).all()


@pytest.mark.parametrize("fn", ["rolling_sum", "rolling_mean", "rolling_max", "rolling_min"])
def test_infinities_in_a_window_read_as_missing_like_pandas(fn: str) -> None:
    """A zero volume makes |r|/dollar volume infinite: that window is NaN, and every later
    window is computed as if it were missing (a running sum must not stay NaN from then on)."""
    a = np.arange(1.0, 41.0)[:, None] * np.ones((1, 9))
    a[10, 2] = np.inf
    a[15, 4] = -np.inf
    got = getattr(ind, fn)(a, 5)
    with ind.backend("pandas"):
        want = getattr(ind, fn)(a, 5)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[10:15, 2]).all() and got[15, 2] == want[15, 2]
    e = ind.ema(a, 5)
    with ind.backend("pandas"):
        e_want = ind.ema(a, 5)
    np.testing.assert_allclose(e, e_want, rtol=1e-12, equal_nan=True)
