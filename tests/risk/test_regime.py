"""Market regime detection: thresholds, VIX rules, bear warning, state mapping, the forward
filter, no look-ahead (hypothesis), and what it says about the real 1993–2024 market."""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import need
from turbomode.data.sources.files import read_long, rebase_adjusted
from turbomode.errors import SchemaError, TurboModeError
from turbomode.risk.regime import (
    FRAME_COLUMNS,
    PROB_COLUMNS,
    Regime,
    RegimeInputError,
    RegimeSettings,
    combine,
    detect_regimes,
    entry_threshold,
    forward_filter,
    map_states,
    regime_on,
)

DEFAULTS = RegimeSettings()
# Defaults except a shorter HMM warm-up, so hand-built series stay a few hundred bars long.
SHORT = RegimeSettings(min_history=120)
FIRST = SHORT.vol_window + SHORT.min_history - 1  # first row with a regime: 139


def _frame(symbol: str, close: np.ndarray, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """Long market rows in the shape every source returns (symbol, date, OHLC, volume)."""
    return pd.DataFrame(
        {
            "symbol": symbol,
            "date": dates,
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": 0.0,
        }
    )


def calm_spy(n: int, seed: int = 0) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """A calm uptrend: +20 %/yr drift, 10 % annualized volatility."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.20 / 252, 0.10 / math.sqrt(252), n)))
    return close, pd.bdate_range("2010-01-04", periods=n)


def market(close: np.ndarray, dates: pd.DatetimeIndex, vix: np.ndarray | None) -> pd.DataFrame:
    parts = [_frame("SPY", close, dates)]
    if vix is not None:
        parts.append(_frame("^VIX", vix, dates))
    return pd.concat(parts, ignore_index=True)


# --- entry thresholds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("regime", "expected"),
    [
        (Regime.BULL, 65.0),
        (Regime.VOLATILE, 45.0),
        (Regime.CHOPPY, 60.0),
        (Regime.BEAR, 50.0),
        ("BULL", 65.0),
        ("VOLATILE", 45.0),
        ("CHOPPY", 60.0),
        ("BEAR", 50.0),
        (None, 60.0),
        ("SIDEWAYS", 60.0),
        ("bull", 60.0),  # names are upper case; anything else is unknown → base
        (math.nan, 60.0),  # a warm-up row read from a frame
    ],
)
def test_entry_threshold_defaults(regime: object, expected: float) -> None:
    assert entry_threshold(regime, DEFAULTS) == expected  # type: ignore[arg-type]
    assert entry_threshold(regime) == expected  # type: ignore[arg-type]


def test_entry_threshold_configured() -> None:
    s = RegimeSettings(base_threshold=55.0, thresholds={Regime.BULL: 70.0, Regime.BEAR: 40.0})
    assert entry_threshold("BULL", s) == 70.0
    assert entry_threshold(Regime.BEAR, s) == 40.0
    assert entry_threshold("VOLATILE", s) == 55.0  # not configured → base
    assert entry_threshold(None, s) == 55.0


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="thresholds must lie in"):
        RegimeSettings(thresholds={Regime.BULL: 120.0})
    with pytest.raises(ValueError, match="vix_elevated"):
        RegimeSettings(vix_elevated=35.0)
    with pytest.raises(ValueError, match="sma_short"):
        RegimeSettings(sma_short=200)
    with pytest.raises(ValueError, match="fit_window"):
        RegimeSettings(fit_window=100)


# --- state mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ret", "vol", "expected"),
    [
        # the typical SPY fit: calm up, middling flat, turbulent down
        ([0.18, 0.04, 0.01], [0.09, 0.15, 0.27], ["BULL", "CHOPPY", "VOLATILE"]),
        # order of states does not matter, only their means
        ([0.01, 0.18, 0.04], [0.27, 0.09, 0.15], ["VOLATILE", "BULL", "CHOPPY"]),
        # a non-volatile state losing more than 10 %/yr is BEAR
        ([0.15, -0.20, -0.30], [0.10, 0.18, 0.35], ["BULL", "BEAR", "VOLATILE"]),
        # exactly at the bear bound is not BEAR (strictly below)
        ([0.15, -0.10, 0.0], [0.10, 0.18, 0.35], ["BULL", "CHOPPY", "VOLATILE"]),
        # a calm window: highest vol below volatile_state_min_vol (0.20) is not VOLATILE
        ([0.25, 0.15, 0.09], [0.07, 0.09, 0.12], ["BULL", "CHOPPY", "CHOPPY"]),
        ([0.10, 0.05], [0.08, 0.20], ["BULL", "VOLATILE"]),  # 0.20 is enough
        # every calm state losing → no BULL at all
        ([-0.30, -0.20], [0.10, 0.30], ["BEAR", "VOLATILE"]),
        # ties break by state index
        ([0.1, 0.1, 0.1], [0.3, 0.3, 0.1], ["VOLATILE", "CHOPPY", "BULL"]),
    ],
)
def test_map_states(ret: list[float], vol: list[float], expected: list[str]) -> None:
    assert [r.value for r in map_states(ret, vol, DEFAULTS)] == expected


def test_map_states_shape_error() -> None:
    with pytest.raises(RegimeInputError, match="one return and one vol per state"):
        map_states([0.1, 0.2], [0.1], DEFAULTS)


def planted(n_blocks: int = 8, block: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """SPY alternating calm-up blocks (+20 %/yr, 10 % vol) and turbulent-down blocks
    (−30 %/yr, 45 % vol); returns the frame and the calm flag per bar."""
    rng = np.random.default_rng(seed)
    rets, calm = [], []
    for b in range(n_blocks):
        mu, sig = (0.20, 0.10) if b % 2 == 0 else (-0.30, 0.45)
        rets.append(rng.normal(mu / 252, sig / math.sqrt(252), block))
        calm += [b % 2 == 0] * block
    close = 100.0 * np.exp(np.cumsum(np.concatenate(rets)))
    dates = pd.bdate_range("2001-01-02", periods=len(close))
    return market(close, dates, None), np.array(calm)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_hmm_finds_planted_regimes(covariance_type: str) -> None:
    """Two planted regimes, two states: the filtered HMM calls calm blocks BULL and turbulent
    blocks VOLATILE once the 20-bar volatility has caught up (20 bars into each block)."""
    m, calm = planted()
    s = RegimeSettings(min_history=250, n_states=2, covariance_type=covariance_type)
    out = detect_regimes(m, s)
    settled = (np.arange(len(out)) % 120 >= 20) & out["hmm_regime"].notna().to_numpy()
    hmm = out["hmm_regime"].to_numpy()
    assert (hmm[settled & calm] == "BULL").mean() >= 0.98
    assert (hmm[settled & ~calm] == "VOLATILE").mean() >= 0.98
    probs = out.loc[settled, list(PROB_COLUMNS)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    assert out.loc[settled, ["p_bear", "p_choppy"]].to_numpy().max() == 0.0  # 2 states only


def test_hmm_three_states_never_call_turbulence_bull() -> None:
    m, calm = planted()
    out = detect_regimes(m, RegimeSettings(min_history=250))
    settled = (np.arange(len(out)) % 120 >= 20) & out["hmm_regime"].notna().to_numpy()
    hmm = out["hmm_regime"].to_numpy()
    assert set(hmm[settled & ~calm]) <= {"VOLATILE", "BEAR"}
    assert (hmm[settled & calm] == "BULL").mean() >= 0.95


# --- forward filter --------------------------------------------------------------------------


def brute_force_filter(log_em: np.ndarray, transmat: np.ndarray, start: np.ndarray) -> np.ndarray:
    """P(s_t | o_0..t) by summing over every state path of length t + 1."""
    t_len, k = log_em.shape
    em = np.exp(log_em)
    out = np.zeros((t_len, k))
    for t in range(t_len):
        for path in itertools.product(range(k), repeat=t + 1):
            p = start[path[0]] * em[0, path[0]]
            for i in range(1, t + 1):
                p *= transmat[path[i - 1], path[i]] * em[i, path[i]]
            out[t, path[-1]] += p
        out[t] /= out[t].sum()
    return out


def test_forward_filter_equals_brute_force() -> None:
    rng = np.random.default_rng(4)
    transmat = np.array([[0.90, 0.07, 0.03], [0.10, 0.80, 0.10], [0.05, 0.15, 0.80]])
    start = np.array([0.5, 0.3, 0.2])
    log_em = rng.normal(-2.0, 1.5, (7, 3))
    np.testing.assert_allclose(
        forward_filter(log_em, transmat, start),
        brute_force_filter(log_em, transmat, start),
        rtol=1e-12,
    )


def test_forward_filter_underflow_is_exact() -> None:
    """State 1 is unreachable from state 0, and state 0's likelihood underflows: the scaled
    step gives 0/0, the log-space step must still say state 0 with certainty."""
    transmat = np.array([[1.0, 0.0], [0.5, 0.5]])
    log_em = np.array([[0.0, -5.0], [-2000.0, 0.0]])
    got = forward_filter(log_em, transmat, np.array([1.0, 0.0]))
    np.testing.assert_array_equal(got, [[1.0, 0.0], [1.0, 0.0]])


# --- combination and VIX / bear rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "regime", "reason"),
    [
        ({"warm_up": "warm-up: 3 of 504"}, None, "warm-up: 3 of 504"),
        ({"vix_extreme": True, "bear_warning": True}, "VOLATILE", "VIX 31.0 >= 30"),
        ({"bear_warning": True, "vix_warning": True}, "BEAR", "bear warning"),
        ({"vix_warning": True}, "VOLATILE", "VIX 31.0 >= 25 and rising over 5 bars"),
        ({}, "BULL", "HMM BULL (p=0.90)"),
        ({"below_sma_long": True}, "CHOPPY", "HMM BULL (p=0.90) but SPY below SMA200"),
    ],
)
def test_combine_precedence(kw: dict[str, object], regime: str | None, reason: str) -> None:
    args: dict[str, object] = {
        "warm_up": None,
        "vix": 31.0,
        "vix_extreme": False,
        "vix_warning": False,
        "bear_warning": False,
        "below_sma_long": False,
        "settings": DEFAULTS,
    }
    args.update(kw)
    got, why = combine(Regime.BULL, 0.9, **args)  # type: ignore[arg-type]
    assert (None if got is None else got.value) == regime
    assert why.startswith(reason)


def test_combine_bull_below_trend_allowed_when_configured() -> None:
    s = RegimeSettings(bull_requires_uptrend=False)
    got, _ = combine(
        Regime.BULL,
        0.9,
        warm_up=None,
        vix=15.0,
        vix_extreme=False,
        vix_warning=False,
        bear_warning=False,
        below_sma_long=True,
        settings=s,
    )
    assert got is Regime.BULL


def vix_path(n: int) -> np.ndarray:
    """VIX 15 except hand-placed episodes (row: value); expected flags in the test below."""
    v = np.full(n, 15.0)
    v[200:205] = 26.0  # rising vs 5 bars before (15) → warning 200–204
    v[205:210] = 26.0  # level vs 5 bars before (26) → not rising, no warning
    v[210] = 31.0  # extreme
    v[211:216] = 30.0  # extreme (≥ 30); 210–214 also rising vs 26, 215 not (vs 31)
    v[216:221] = 25.0  # falling vs 30 → no warning
    v[221:226] = 25.0  # flat → no warning
    v[230:235] = 24.9  # rising but below 25 → no warning
    v[235:240] = 25.0  # rising vs 24.9, at 25 exactly → warning 235–239
    return v


def test_vix_rules_exact_labels() -> None:
    close, dates = calm_spy(300)
    out = detect_regimes(market(close, dates, vix_path(300)), SHORT)
    assert list(out.columns) == list(FRAME_COLUMNS)
    assert not out["bear_warning"].any()  # the calm uptrend never arms the bear rule
    warn = np.zeros(300, bool)  # the flag is its own rule: an extreme VIX can also be rising
    warn[200:205] = warn[210:215] = warn[235:240] = True
    extreme = np.zeros(300, bool)
    extreme[210:216] = True
    np.testing.assert_array_equal(out["vix_warning"].to_numpy(), warn)
    np.testing.assert_array_equal(out["vix_extreme"].to_numpy(), extreme)
    assert out["vix_available"].all()
    rows = np.arange(300)
    regime, reason = out["regime"].to_numpy(), out["reason"].to_numpy()
    assert all(r == "VOLATILE" for r in regime[warn | extreme])
    assert all(s.startswith("VIX 30.0 >= 30") for s in reason[211:216])
    assert reason[210] == "VIX 31.0 >= 30"
    assert all(s == "VIX 26.0 >= 25 and rising over 5 bars" for s in reason[200:205])
    rest = (rows >= FIRST) & ~warn & ~extreme
    assert all(s.startswith("HMM ") for s in reason[rest])
    assert all(regime[rest] == out["hmm_regime"].to_numpy()[rest])  # above SMA200 throughout
    assert out["regime"].iloc[:FIRST].isna().all()


def test_no_vix_turns_rules_off_and_says_so() -> None:
    close, dates = calm_spy(300)
    without = detect_regimes(market(close, dates, None), SHORT)
    calm_vix = detect_regimes(market(close, dates, np.full(300, 15.0)), SHORT)
    assert without.attrs["vix_available"] is False and calm_vix.attrs["vix_available"] is True
    assert without["vix"].isna().all() and not without["vix_available"].any()
    assert not without[["vix_extreme", "vix_warning"]].to_numpy().any()
    assert all(s.endswith("; VIX absent: VIX rules off") for s in without["reason"])
    # a calm VIX never fires, so the regimes are those of the run with VIX
    pd.testing.assert_series_equal(without["regime"], calm_vix["regime"])
    pd.testing.assert_frame_equal(without[list(PROB_COLUMNS)], calm_vix[list(PROB_COLUMNS)])


def test_stale_vix_turns_rules_off_on_those_days() -> None:
    close, dates = calm_spy(300)
    vix = np.full(300, 35.0)
    m = market(close, dates, vix)
    gap = (m["symbol"] == "^VIX") & m["date"].between(dates[250], dates[259])
    out = detect_regimes(m[~gap], SHORT)
    age = (dates - dates[249]).days
    stale = (np.arange(300) >= 250) & (np.arange(300) <= 259) & (age > 5)
    assert 0 < stale.sum() < 10  # the first few missing days are still fresh enough
    np.testing.assert_array_equal(out["vix_available"].to_numpy(), ~stale)
    assert not out["vix_extreme"].to_numpy()[stale].any()
    assert all("no fresh VIX: VIX rules off" in s for s in out["reason"].to_numpy()[stale])
    assert all(out["regime"].to_numpy()[(np.arange(300) >= FIRST) & ~stale] == "VOLATILE")


def bear_path() -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Up 0.1 %/bar for 400 bars, then down 0.25 %/bar for 150, with 0.4 % daily noise."""
    rng = np.random.default_rng(3)
    drift = np.r_[np.full(400, 0.001), np.full(150, -0.0025)]
    close = 100.0 * np.exp(np.cumsum(drift + rng.normal(0.0, 0.004, 550)))
    return close, pd.bdate_range("2005-01-03", periods=550)


def test_bear_warning_matches_its_definition() -> None:
    close, dates = bear_path()
    out = detect_regimes(market(close, dates, np.full(550, 15.0)), SHORT)
    c = pd.Series(close)
    sma200, sma50 = c.rolling(200).mean(), c.rolling(50).mean()
    dd = 1.0 - c / c.rolling(252).max()
    expected = ((c < sma200) & (sma50 < sma50.shift(10)) & (dd >= 0.10)).to_numpy()
    np.testing.assert_array_equal(out["bear_warning"].to_numpy(), expected)
    first = int(np.argmax(expected))
    # the decline starts at bar 400; about 50 bars later (−12 %) every condition holds
    assert 440 <= first <= 460 and expected[first:].mean() > 0.95
    assert not expected[:400].any()
    assert all(out["regime"].to_numpy()[expected] == "BEAR")
    assert all(s.startswith("bear warning") for s in out["reason"].to_numpy()[expected])
    assert not out["regime"].to_numpy()[FIRST:first].tolist().count("BEAR")


def test_vix_extreme_outranks_bear_warning_outranks_vix_warning() -> None:
    close, dates = bear_path()
    vix = np.full(550, 15.0)
    vix[500:503] = 35.0  # extreme on bear days → VOLATILE
    vix[520:525] = 27.0  # elevated and rising on bear days → still BEAR
    out = detect_regimes(market(close, dates, vix), SHORT)
    assert out["bear_warning"].iloc[495:530].all()
    assert list(out["regime"].iloc[500:503]) == ["VOLATILE"] * 3
    assert out["vix_warning"].iloc[520:525].all()
    assert list(out["regime"].iloc[520:525]) == ["BEAR"] * 5


# --- warm-up, refits, errors, one day --------------------------------------------------------


def test_warm_up_and_refit_schedule() -> None:
    close, dates = calm_spy(300)
    out = detect_regimes(market(close, dates, np.full(300, 15.0)), SHORT)
    assert out["regime"].iloc[:FIRST].isna().all()
    assert out["regime"].iloc[FIRST:].notna().all()
    assert out["reason"].iloc[100] == "warm-up: 81 of 120 HMM observations"  # rows 20..100
    assert out[list(PROB_COLUMNS)].iloc[:FIRST].isna().all().all()
    fit = out["hmm_fit_date"]
    assert fit.iloc[:FIRST].isna().all()
    assert fit.iloc[FIRST] == dates[FIRST] and fit.iloc[FIRST + 20] == dates[FIRST]
    assert fit.iloc[FIRST + 21] == dates[FIRST + 21]
    assert (fit.dropna() <= fit.dropna().index).all()  # never a model fitted after the day


def test_missing_spy_is_an_error_that_names_it() -> None:
    close, dates = calm_spy(50)
    with pytest.raises(RegimeInputError, match=r"no 'SPY' rows \(symbols present: \['\^VIX'\]"):
        detect_regimes(_frame("^VIX", close, dates))
    with pytest.raises(TurboModeError, match="SPY"):
        detect_regimes(_frame("SPY", close, dates).iloc[0:0])
    with pytest.raises(SchemaError, match="close"):
        detect_regimes(_frame("SPY", close, dates).drop(columns="close"))
    with pytest.raises(RegimeInputError, match="every SPY close is NaN"):
        detect_regimes(_frame("SPY", close * np.nan, dates))
    bad = _frame("SPY", close, dates)
    bad.loc[3, "close"] = -1.0
    with pytest.raises(RegimeInputError, match="positive"):
        detect_regimes(bad)


def test_short_history_is_all_warm_up() -> None:
    close, dates = calm_spy(60)
    out = detect_regimes(market(close, dates, None), SHORT)
    assert out["regime"].isna().all() and out["reason"].str.startswith("warm-up").all()
    assert regime_on(market(close, dates, None), SHORT).entry_threshold == 60.0


def test_regime_on_latest_and_as_of() -> None:
    close, dates = calm_spy(300)
    m = market(close, dates, vix_path(300))
    m["date"] = m["date"].dt.strftime("%Y-%m-%d")  # string dates, as parquet files hold them
    full = detect_regimes(m, SHORT)
    last = regime_on(m, SHORT)
    assert last.date == dates[-1] and last.regime is Regime(full["regime"].iloc[-1])
    assert last.entry_threshold == entry_threshold(last.regime, SHORT)
    day = regime_on(m, SHORT, as_of=dates[212] + pd.Timedelta(hours=12))
    assert day.date == dates[212] and day.regime is Regime.VOLATILE and day.vix_extreme
    assert day.entry_threshold == 45.0 and day.vix == 30.0
    assert day.probabilities == {
        r: full[c].iloc[212] for r, c in zip(Regime, PROB_COLUMNS, strict=True)
    }
    with pytest.raises(RegimeInputError, match="no SPY bar on or before"):
        regime_on(m, SHORT, as_of="2000-01-01")


# --- no look-ahead ---------------------------------------------------------------------------

PIT = RegimeSettings(
    vol_window=5,
    min_history=60,
    refit_every=7,
    filter_burn_in=20,
    n_iter=20,
    n_iter_refit=5,
    sma_long=30,
    sma_short=10,
    sma_slope_bars=3,
    drawdown_window=40,
    bear_drawdown=0.05,
    vix_extreme=45.0,  # the synthetic VIX is 8–13 in calm spells and 32–52 in turbulent ones,
    vix_elevated=12.0,  # so every rule fires now and then and the HMM decides the rest
)
PIT_N = 140


@pytest.fixture(scope="module")
def pit_market() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    sig = np.where((np.arange(PIT_N) // 25) % 2 == 0, 0.10, 0.40) / math.sqrt(252)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, PIT_N) * sig))
    vix = 100 * sig * math.sqrt(252) * rng.uniform(0.8, 1.3, PIT_N)
    dates = pd.bdate_range("2015-01-02", periods=PIT_N)
    return market(close, dates, vix)


@pytest.fixture(scope="module")
def pit_full(pit_market: pd.DataFrame) -> pd.DataFrame:
    out = detect_regimes(pit_market, PIT)
    assert out["regime"].notna().sum() >= 50 and out["regime"].nunique() >= 2
    return out


@settings(max_examples=25, deadline=None)
@given(
    t_index=st.integers(min_value=0, max_value=PIT_N - 2),
    mode=st.sampled_from(["truncate", "perturb", "delete_spy", "delete_vix"]),
    seed=st.integers(0, 2**16),
)
def test_no_look_ahead(
    pit_market: pd.DataFrame, pit_full: pd.DataFrame, t_index: int, mode: str, seed: int
) -> None:
    """Changing or deleting any data after t changes no regime, probability, flag or reason
    at or before t."""
    rng = np.random.default_rng(seed)
    m = pit_market
    t = pit_full.index[t_index]
    after = m["date"] > t
    if mode == "truncate":
        m2 = m[~after]
    elif mode == "perturb":
        m2 = m.copy()
        m2.loc[after, "close"] = m2.loc[after, "close"] * rng.uniform(0.8, 1.2, after.sum())
    else:
        sym = "SPY" if mode == "delete_spy" else "^VIX"
        hit = after & (m["symbol"] == sym) & (rng.uniform(size=len(m)) < 0.5)
        m2 = m[~hit]
    got = detect_regimes(m2, PIT).loc[:t]
    want = pit_full.loc[:t]
    num = [c for c in FRAME_COLUMNS if c not in ("regime", "reason", "hmm_regime", "hmm_fit_date")]
    for col in ("regime", "reason", "hmm_regime", "hmm_fit_date"):
        pd.testing.assert_series_equal(got[col], want[col])
    np.testing.assert_allclose(
        got[num].to_numpy(float), want[num].to_numpy(float), rtol=1e-9, atol=1e-12
    )


def test_no_look_ahead_catches_a_leak(pit_market: pd.DataFrame, pit_full: pd.DataFrame) -> None:
    """The comparison above can fail: a smoothed (forward–backward) probability, which reads
    the future, differs from the filtered one on the same fit."""
    from hmmlearn.hmm import GaussianHMM

    x = pit_full[["spy_ret", "spy_rvol"]].dropna().to_numpy()
    x = np.column_stack([x[:, 0], np.log(x[:, 1])])
    z = (x - x.mean(0)) / x.std(0)
    model = GaussianHMM(2, "full", n_iter=20, random_state=0).fit(z)
    smoothed = model.predict_proba(z)
    log_em = np.column_stack(
        [
            -0.5 * np.einsum("ti,ij,tj->t", z - mu, np.linalg.inv(cov), z - mu)
            - 0.5 * np.log(np.linalg.det(cov))
            - np.log(2 * np.pi)
            for mu, cov in zip(model.means_, model.covars_, strict=True)
        ]
    )
    filtered = forward_filter(log_em, model.transmat_, model.startprob_)
    np.testing.assert_allclose(filtered[-1], smoothed[-1], atol=1e-8)  # same at the end
    assert np.abs(filtered[:-1] - smoothed[:-1]).max() > 0.05  # not before it


# --- real market -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_market(shared_data_dir: Path) -> pd.DataFrame:
    path = shared_data_dir / "market.parquet"
    need(path.exists(), f"real market context not found at {path}")
    return rebase_adjusted(read_long(path, ["SPY", "^VIX"]))


@pytest.fixture(scope="module")
def real_regimes(real_market: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    out = detect_regimes(real_market)
    return out, time.perf_counter() - start


def _share(out: pd.DataFrame, start: str, end: str) -> pd.Series:
    return out.loc[start:end, "regime"].value_counts(normalize=True)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_market_regimes(real_regimes: tuple[pd.DataFrame, float]) -> None:
    """Measured on SPY 1993-01 → 2024-06 with the defaults (expanding-window HMM refitted
    every 21 bars): 2000–2024 is about 41 % BULL, 26 % CHOPPY, 24 % VOLATILE, 8 % BEAR."""
    out, seconds = real_regimes
    assert seconds < 60.0, f"{seconds:.1f} s for {len(out)} days"
    assert out.index[0] == pd.Timestamp("1993-01-29")
    assert out["regime"].loc["2000":].notna().all()  # warm-up ends in 1995
    crisis = pd.concat([out.loc["2008-10", "regime"], out.loc["2020-03", "regime"]])
    assert set(crisis) <= {"VOLATILE", "BEAR"}
    assert _share(out, "2008-10", "2008-10").get("VOLATILE", 0.0) == 1.0
    assert _share(out, "2020-03", "2020-03").get("VOLATILE", 0.0) == 1.0
    assert _share(out, "2017", "2017").get("BULL", 0.0) >= 0.95
    assert _share(out, "2022", "2022").get("BULL", 0.0) <= 0.05  # the 2022 bear market
    assert _share(out, "2022", "2022").get("BEAR", 0.0) >= 0.2
    share = _share(out, "2000", "2024")
    assert 0.30 <= share["BULL"] <= 0.50 and 0.15 <= share["VOLATILE"] <= 0.35
    assert 0.03 <= share["BEAR"] <= 0.15 and 0.15 <= share["CHOPPY"] <= 0.35
    # the HMM separates volatility: its VOLATILE days have about three times the realized vol
    r = out.loc["2000":]
    rv = r.groupby("hmm_regime")["spy_rvol"].median()
    assert rv["VOLATILE"] > 2.5 * rv["BULL"]


@pytest.mark.realdata
@pytest.mark.slow
def test_real_market_one_day_is_point_in_time(
    real_market: pd.DataFrame, real_regimes: tuple[pd.DataFrame, float]
) -> None:
    out, _ = real_regimes
    day = regime_on(real_market, as_of="2020-03-16")
    row = out.loc["2020-03-16"]
    assert day.regime is Regime.VOLATILE and row["regime"] == "VOLATILE"
    assert day.reason == row["reason"] and day.vix == pytest.approx(82.69, abs=0.01)
    for r, col in zip(Regime, PROB_COLUMNS, strict=True):
        assert day.probabilities[r] == pytest.approx(row[col], abs=1e-12)
