"""Market regime per day — BULL, BEAR, CHOPPY or VOLATILE — from SPY and VIX, point in time.

Three inputs, each using only bars on or before the day it labels:

* **HMM.** A Gaussian hidden Markov model (hmmlearn) over SPY's daily log return and the log
  of its realized volatility (``vol_window`` bars, annualized). It is refitted every
  ``refit_every`` SPY bars on an expanding window (or the last ``fit_window`` bars) ending at
  the refit bar, warm-started from the previous fit so state meanings stay put and a refit
  costs a few EM iterations (defaults: 3 states, 20-bar volatility, first fit after 504
  observations, refit every 21 bars, seeded). Between refits the last fit is used. State
  probabilities are *filtered* (forward algorithm up to the day, written here; hmmlearn's
  ``predict_proba`` is forward–backward smoothed and would read the future). Hidden states
  get a meaning from their fitted means (:func:`map_states`).
* **VIX rules.** VIX ≥ ``vix_extreme`` is a volatile market outright; VIX ≥ ``vix_elevated``
  and higher than ``vix_rising_bars`` bars before is a volatile warning (defaults 30; 25
  and 5 bars). Without a ^VIX series
  (or on days where its last bar is stale) the VIX rules are off, and the reason says so.
* **Bear early warning.** SPY below its SMA(``sma_long``), SMA(``sma_short``) lower than
  ``sma_slope_bars`` bars before, and SPY at least ``bear_drawdown`` below its
  ``drawdown_window``-bar high (defaults: SMA200, SMA50 lower than 10 bars before, 10 %
  below the 252-bar high).

Precedence, first match wins (documented in :func:`combine`): warm-up (no regime) →
VIX extreme → bear warning → VIX warning → the HMM's regime, where an HMM BULL with SPY below
its SMA(``sma_long``) is only CHOPPY.

The regime then sets the entry threshold on the 0–100 signal strength
(:func:`entry_threshold`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.linalg import solve_triangular

from turbomode.config import Regime, RegimeSettings
from turbomode.data.schema import require_columns
from turbomode.errors import SchemaError, TurboModeError
from turbomode.features import indicators as ind
from turbomode.features.indicators import TRADING_DAYS, Array
from turbomode.features.market import MarketContext

SPY = "SPY"
VIX = "^VIX"


REGIME_ORDER: tuple[Regime, ...] = (Regime.BULL, Regime.BEAR, Regime.CHOPPY, Regime.VOLATILE)
PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{r.value.lower()}" for r in REGIME_ORDER)


class RegimeInputError(TurboModeError, ValueError):
    """The market frame cannot give a regime (no SPY, non-positive closes, bad dates)."""


def entry_threshold(regime: Regime | str | None, settings: RegimeSettings | None = None) -> float:
    """Entry threshold on the 0–100 signal strength for ``regime``: issue #9's defaults raise
    the bar in a bull market, where strength is plentiful, and lower it in volatile and bear
    markets so the strongest names still qualify. No or an unknown regime → the base."""
    s = settings or RegimeSettings()
    if isinstance(regime, str) and regime in Regime.__members__:
        key = Regime(regime)
        if key in s.thresholds:
            return float(s.thresholds[key])
    return float(s.base_threshold)


# --- HMM ---------------------------------------------------------------------------------


def map_states(
    annual_return: npt.ArrayLike, annual_vol: npt.ArrayLike, settings: RegimeSettings
) -> list[Regime]:
    """Meaning of each hidden state from its fitted means, deterministically:

    1. the highest-volatility state is VOLATILE if its volatility ≥ ``volatile_state_min_vol``;
    2. any other state with annualized mean log return < ``bear_state_max_return`` is BEAR;
    3. of the rest, the lowest-volatility state is BULL and any others are CHOPPY.

    Ties break by state index, so the same fit always gets the same labels.
    """
    ret = np.asarray(annual_return, dtype=np.float64)
    vol = np.asarray(annual_vol, dtype=np.float64)
    if ret.shape != vol.shape or ret.ndim != 1 or len(ret) == 0:
        raise RegimeInputError(
            f"need one return and one vol per state, got {ret.shape}, {vol.shape}"
        )
    out: list[Regime | None] = [None] * len(ret)
    top = int(np.argmax(vol))  # first index on ties
    if vol[top] >= settings.volatile_state_min_vol:
        out[top] = Regime.VOLATILE
    for k in range(len(ret)):
        if out[k] is None and ret[k] < settings.bear_state_max_return:
            out[k] = Regime.BEAR
    rest = [k for k in range(len(ret)) if out[k] is None]
    if rest:
        bull = min(rest, key=lambda k: (vol[k], k))
        for k in rest:
            out[k] = Regime.BULL if k == bull else Regime.CHOPPY
    return [r for r in out if r is not None]


@dataclass(frozen=True)
class _Fit:
    """One fitted HMM in raw units (feature 0: daily log return; 1: log annualized vol)."""

    transmat: Array
    means: Array  # (K, 2)
    covars: Array  # (K, 2, 2)
    meanings: list[Regime]


def _stationary(transmat: Array) -> Array:
    """Stationary distribution of a transition matrix (uniform if it is not unique)."""
    k = transmat.shape[0]
    a = np.vstack([transmat.T - np.eye(k), np.ones((1, k))])
    b = np.zeros(k + 1)
    b[-1] = 1.0
    pi, *_ = np.linalg.lstsq(a, b, rcond=None)
    pi = np.clip(pi, 0.0, None)
    total = pi.sum()
    return pi / total if total > 0 and np.isfinite(total) else np.full(k, 1.0 / k)


_HANDLED = ("Model is not converging", "Some rows of transmat_ have zero sum")


def _drop_handled(record: logging.LogRecord) -> bool:
    """hmmlearn warns "Model is not converging" whenever an EM step lowers the log-likelihood
    (float noise of ~1e-6 at convergence; hundreds of refits would print it often) and about
    zero rows of the transition matrix, which :func:`_valid` rejects and handles."""
    return not record.getMessage().startswith(_HANDLED)


def _valid(fit: _Fit) -> bool:
    """Finite parameters, a stochastic transition matrix and positive-definite covariances."""
    if not all(np.isfinite(a).all() for a in (fit.transmat, fit.means, fit.covars)):
        return False
    if not np.allclose(fit.transmat.sum(axis=1), 1.0, atol=1e-6):
        return False
    try:
        np.linalg.cholesky(fit.covars)
    except np.linalg.LinAlgError:
        return False
    return True


def _fit_once(z: Array, mu: Array, sd: Array, prev: _Fit | None, s: RegimeSettings) -> _Fit | None:
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(
        n_components=s.n_states,
        covariance_type=s.covariance_type,
        n_iter=s.n_iter if prev is None else s.n_iter_refit,
        tol=s.tol,
        random_state=s.random_state,
        init_params="stmc" if prev is None else "",
    )
    hmm_log = logging.getLogger("hmmlearn.base")
    hmm_log.addFilter(_drop_handled)
    try:
        if prev is not None:
            model.startprob_ = _stationary(prev.transmat)
            model.transmat_ = prev.transmat
            model.means_ = (prev.means - mu) / sd
            covars = prev.covars / np.outer(sd, sd)[None, :, :]
            model.covars_ = (
                covars if s.covariance_type == "full" else np.diagonal(covars, axis1=1, axis2=2)
            )
        with np.errstate(all="ignore"):  # a degenerate fit is caught by _valid below
            model.fit(z)
        means = np.asarray(model.means_) * sd + mu
        # hmmlearn's covars_ property gives full (K, d, d) matrices for every covariance type.
        covars = np.asarray(model.covars_) * np.outer(sd, sd)[None, :, :]
    except (ValueError, np.linalg.LinAlgError):
        return None  # degenerate data for this start (a state on a handful of outliers)
    finally:
        hmm_log.removeFilter(_drop_handled)
    transmat = np.asarray(model.transmat_, dtype=np.float64)
    meanings = map_states(means[:, 0] * TRADING_DAYS, np.exp(means[:, 1]), s)
    fit = _Fit(transmat, means, covars, meanings)
    return fit if _valid(fit) else None


def _fit(x: Array, prev: _Fit | None, settings: RegimeSettings) -> _Fit | None:
    """Fit the HMM on ``x`` (raw units), standardized on ``x`` alone. Warm-started from
    ``prev`` (few EM steps, stable state meanings); if that degenerates, a fresh seeded start;
    None if both fail, and the caller keeps the previous fit."""
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    fit = _fit_once(z, mu, sd, prev, settings) if prev is not None else None
    return fit if fit is not None else _fit_once(z, mu, sd, None, settings)


def _log_emission(x: Array, fit: _Fit) -> Array:
    """log N(x_t | mean_k, cov_k) for every row and state, shape (T, K)."""
    t, d = x.shape
    out = np.empty((t, len(fit.means)))
    for k, (m, c) in enumerate(zip(fit.means, fit.covars, strict=True)):
        chol = np.linalg.cholesky(c)
        sol = solve_triangular(chol, (x - m).T, lower=True)
        out[:, k] = (
            -0.5 * np.sum(sol * sol, axis=0)
            - np.log(np.diag(chol)).sum()
            - 0.5 * d * math.log(2.0 * math.pi)
        )
    return out


def forward_filter(log_emission: Array, transmat: Array, start: Array) -> Array:
    """Filtered state probabilities P(state_t | obs_0..t) by the scaled forward algorithm.

    Row t reads rows ≤ t only: the point-in-time counterpart of hmmlearn's forward–backward
    ``predict_proba``. ``start`` is the state distribution before row 0's observation. A step
    whose scaled likelihood underflows to zero is redone exactly in log space.
    """
    t_len, k = log_emission.shape
    out = np.empty((t_len, k))
    scaled = np.exp(log_emission - log_emission.max(axis=1, keepdims=True))
    a_mat = np.asarray(transmat, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_a = np.log(a_mat)
    pred = np.asarray(start, dtype=np.float64)
    for i in range(t_len):
        if i > 0:
            pred = out[i - 1] @ a_mat
        a = pred * scaled[i]
        total = a.sum()
        if not (total > 0.0 and np.isfinite(total)):
            with np.errstate(divide="ignore"):
                if i > 0:
                    prior = np.logaddexp.reduce(np.log(out[i - 1])[:, None] + log_a, axis=0)
                else:
                    prior = np.log(pred)
            lp = log_emission[i] + prior
            top = lp.max()
            if not np.isfinite(top):
                raise RegimeInputError(f"observation {i} is impossible under every HMM state")
            a = np.exp(lp - top)
            total = a.sum()
        out[i] = a / total
    return out


def _hmm_probabilities(x: Array, settings: RegimeSettings) -> tuple[Array, npt.NDArray[np.intp]]:
    """Per observation: regime probabilities (T, 4) in REGIME_ORDER (NaN before the first fit)
    and the index of the refit observation whose model produced them (−1 before)."""
    n = len(x)
    probs = np.full((n, len(REGIME_ORDER)), np.nan)
    fit_at = np.full(n, -1, dtype=np.intp)
    first = settings.min_history - 1
    prev: _Fit | None = None
    prev_at = -1
    for f in range(first, n, settings.refit_every):
        lo = 0 if settings.fit_window is None else max(0, f + 1 - settings.fit_window)
        fresh = _fit(x[lo : f + 1], prev, settings)
        if fresh is not None:
            prev, prev_at = fresh, f
        if prev is None:
            continue  # no usable fit yet: these rows stay without a regime
        fit = prev
        end = min(n, f + settings.refit_every)
        burn = settings.filter_burn_in
        s0 = lo if burn is None else max(lo, f - burn)
        start = _stationary(fit.transmat)
        state_p = forward_filter(_log_emission(x[s0:end], fit), fit.transmat, start)
        state_p = state_p[f - s0 :]
        for j, regime in enumerate(REGIME_ORDER):
            cols = [k for k, m in enumerate(fit.meanings) if m is regime]
            probs[f:end, j] = state_p[:, cols].sum(axis=1) if cols else 0.0
        fit_at[f:end] = prev_at
    return probs, fit_at


# --- inputs ------------------------------------------------------------------------------


def _spy_bars(market: pd.DataFrame | None) -> tuple[npt.NDArray[np.datetime64], Array]:
    """SPY's dates and closes, sorted, from the long market frame; a clear error if absent."""
    if market is None or market.empty:
        raise RegimeInputError(
            "regime detection needs SPY closes, but the market frame is empty or None"
        )
    require_columns(market, ["symbol", "date", "close"], "market frame")
    spy = market.loc[market["symbol"] == SPY, ["date", "close"]]
    if spy.empty:
        present = sorted(map(str, market["symbol"].unique()))
        raise RegimeInputError(
            f"regime detection needs SPY closes, but the market frame has no {SPY!r} rows "
            f"(symbols present: {present})"
        )
    spy = spy.assign(
        date=pd.to_datetime(spy["date"]), close=pd.to_numeric(spy["close"], errors="coerce")
    )
    spy = spy.dropna(subset=["close"]).sort_values("date", kind="stable")
    if spy["date"].duplicated().any():
        raise SchemaError("market frame has duplicate SPY dates")
    close = spy["close"].to_numpy(dtype=np.float64)
    if len(close) == 0:
        raise RegimeInputError("regime detection needs SPY closes, but every SPY close is NaN")
    if not np.all(np.isfinite(close)) or np.any(close <= 0):
        raise RegimeInputError("SPY closes must be finite and positive to take log returns")
    return spy["date"].to_numpy(dtype="datetime64[ns]"), close


# --- detection ---------------------------------------------------------------------------

FRAME_COLUMNS: tuple[str, ...] = (
    "regime",
    "reason",
    "hmm_regime",
    *PROB_COLUMNS,
    "hmm_fit_date",
    "vix",
    "vix_available",
    "vix_extreme",
    "vix_warning",
    "bear_warning",
    "spy_close",
    "spy_ret",
    "spy_rvol",
    "spy_dist_sma_long",
    "spy_drawdown",
)


def combine(
    hmm_regime: Regime | None,
    hmm_p: float,
    *,
    warm_up: str | None,
    vix: float,
    vix_extreme: bool,
    vix_warning: bool,
    bear_warning: bool,
    below_sma_long: bool,
    settings: RegimeSettings,
) -> tuple[Regime | None, str]:
    """One regime and its reason for one day; first match wins:

    1. warm-up (``warm_up`` set): no regime;
    2. VIX ≥ ``vix_extreme`` → VOLATILE;
    3. bear early warning → BEAR;
    4. VIX ≥ ``vix_elevated`` and rising → VOLATILE;
    5. the HMM's regime, except BULL below SMA(``sma_long``) → CHOPPY when
       ``bull_requires_uptrend``.
    """
    if warm_up is not None:
        return None, warm_up
    if vix_extreme:
        return Regime.VOLATILE, f"VIX {vix:.1f} >= {settings.vix_extreme:g}"
    if bear_warning:
        return Regime.BEAR, (
            f"bear warning: SPY below SMA{settings.sma_long}, SMA{settings.sma_short} falling, "
            f"drawdown >= {settings.bear_drawdown:.0%}"
        )
    if vix_warning:
        return Regime.VOLATILE, (
            f"VIX {vix:.1f} >= {settings.vix_elevated:g} and rising over "
            f"{settings.vix_rising_bars} bars"
        )
    if hmm_regime is None:  # cannot happen after warm-up; kept for a clear message
        return None, "no HMM regime"
    if hmm_regime is Regime.BULL and settings.bull_requires_uptrend and below_sma_long:
        return Regime.CHOPPY, (f"HMM BULL (p={hmm_p:.2f}) but SPY below SMA{settings.sma_long}")
    return hmm_regime, f"HMM {hmm_regime.value} (p={hmm_p:.2f})"


def detect_regimes(market: pd.DataFrame, settings: RegimeSettings | None = None) -> pd.DataFrame:
    """The regime of every SPY bar, using only bars on or before it.

    ``market`` is the long market-context frame every source returns (``symbol, date,
    close, …``; SPY as ``"SPY"``, VIX as ``"^VIX"``). Returns a frame indexed by ``date`` (SPY's
    calendar) with :data:`FRAME_COLUMNS`: ``regime`` (BULL/BEAR/CHOPPY/VOLATILE, None in
    warm-up), ``reason``, the HMM's regime and filtered probabilities per regime, the date of
    the HMM fit in use, VIX and its rule flags, the bear warning and the SPY inputs.
    ``attrs["vix_available"]`` says whether any VIX series was given.
    """
    s = settings or RegimeSettings()
    dates, close = _spy_bars(market)
    n = len(close)
    c = close[:, None]
    log_ret = np.log(c / ind.shift(c, 1))
    rvol = ind.rolling_std(log_ret, s.vol_window) * math.sqrt(TRADING_DAYS)
    sma_long = ind.rolling_mean(c, s.sma_long)[:, 0]
    sma_short = ind.rolling_mean(c, s.sma_short)[:, 0]
    drawdown = (1.0 - c / ind.rolling_max(c, s.drawdown_window))[:, 0]
    log_ret, rvol = log_ret[:, 0], rvol[:, 0]

    with np.errstate(invalid="ignore"):
        below_long = close < sma_long  # NaN SMA → False
        falling = sma_short < ind.shift(sma_short[:, None], s.sma_slope_bars)[:, 0]
        bear = below_long & falling & (drawdown >= s.bear_drawdown)

    # VIX as of each SPY date on its own calendar (MarketContext: last bar ≤ date, not stale).
    ctx = MarketContext(market[market["symbol"] == VIX])
    has_vix = ctx.has(VIX)
    with np.errstate(divide="ignore", invalid="ignore"):  # its other features: flat VIX → 0/0
        vix = ctx.on_dates(VIX, "close", dates) if has_vix else np.full(n, np.nan)
    vix_ok = np.isfinite(vix)
    with np.errstate(invalid="ignore"):
        vix_prev = ind.shift(vix[:, None], s.vix_rising_bars)[:, 0]
        vix_ext = vix_ok & (vix >= s.vix_extreme)
        vix_warn = vix_ok & (vix >= s.vix_elevated) & (vix > vix_prev)

    # HMM observations: bars with both a return and a volatility (from bar vol_window on).
    valid = np.isfinite(log_ret) & np.isfinite(rvol) & (rvol > 0)
    obs_idx = np.flatnonzero(valid)
    x = np.column_stack([log_ret[obs_idx], np.log(rvol[obs_idx])])
    probs = np.full((n, len(REGIME_ORDER)), np.nan)
    fit_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if len(obs_idx) >= s.min_history:
        from threadpoolctl import threadpool_limits  # the `regime` extra

        # Many tiny 2×2 and 3×3 products: BLAS threads only add contention (5× slower on a
        # busy 2-core machine).
        with threadpool_limits(limits=1):
            p_obs, fit_at = _hmm_probabilities(x, s)
        probs[obs_idx] = p_obs
        ok = fit_at >= 0
        fit_date[obs_idx[ok]] = dates[obs_idx[fit_at[ok]]]

    n_obs_so_far = np.cumsum(valid)
    regimes: list[str | None] = []
    hmm_regimes: list[str | None] = []
    reasons: list[str] = []
    no_vix = "" if has_vix else "; VIX absent: VIX rules off"
    for i in range(n):
        p = probs[i]
        if np.isfinite(p).all():
            j = int(np.argmax(p))
            hmm_r: Regime | None = REGIME_ORDER[j]
            hmm_p = float(p[j])
            warm = None
        else:
            hmm_r, hmm_p = None, math.nan
            seen = int(n_obs_so_far[i])
            warm = (
                f"warm-up: {seen} of {s.min_history} HMM observations"
                if seen < s.min_history
                else "no regime: no HMM fit has succeeded yet"
            )
        regime, reason = combine(
            hmm_r,
            hmm_p,
            warm_up=warm,
            vix=float(vix[i]),
            vix_extreme=bool(vix_ext[i]),
            vix_warning=bool(vix_warn[i]),
            bear_warning=bool(bear[i]),
            below_sma_long=bool(below_long[i]),
            settings=s,
        )
        if has_vix and not vix_ok[i]:
            reason += "; no fresh VIX: VIX rules off"
        regimes.append(None if regime is None else regime.value)
        hmm_regimes.append(None if hmm_r is None else hmm_r.value)
        reasons.append(reason + no_vix)

    out = pd.DataFrame(
        {
            "regime": np.array(regimes, dtype=object),
            "reason": reasons,
            "hmm_regime": np.array(hmm_regimes, dtype=object),
            **{col: probs[:, j] for j, col in enumerate(PROB_COLUMNS)},
            "hmm_fit_date": fit_date,
            "vix": vix,
            "vix_available": vix_ok,
            "vix_extreme": vix_ext,
            "vix_warning": vix_warn,
            "bear_warning": bear,
            "spy_close": close,
            "spy_ret": log_ret,
            "spy_rvol": rvol,
            "spy_dist_sma_long": close / sma_long - 1.0,
            "spy_drawdown": drawdown,
        },
        index=pd.DatetimeIndex(dates, name="date"),
    )
    out.attrs["vix_available"] = has_vix
    return out


@dataclass(frozen=True)
class RegimeDay:
    """The regime of one day, as the scanner reads it."""

    date: pd.Timestamp
    regime: Regime | None
    reason: str
    entry_threshold: float
    probabilities: dict[Regime, float]
    vix: float | None
    vix_extreme: bool
    vix_warning: bool
    bear_warning: bool


def regime_on(
    market: pd.DataFrame,
    settings: RegimeSettings | None = None,
    as_of: str | pd.Timestamp | None = None,
) -> RegimeDay:
    """The regime of the last SPY bar on or before ``as_of`` (None: the latest bar), with its
    entry threshold. Rows after ``as_of`` are dropped first, so nothing later can reach it."""
    s = settings or RegimeSettings()
    frame = market
    if as_of is not None:
        cutoff = pd.Timestamp(as_of)
        frame = market[pd.to_datetime(market["date"]) <= cutoff]
        if frame.empty or not (frame["symbol"] == SPY).any():
            raise RegimeInputError(f"no SPY bar on or before {cutoff.date()}")
    table = detect_regimes(frame, s)
    row = table.iloc[-1]
    regime = None if row["regime"] is None else Regime(row["regime"])
    probs = {r: float(row[col]) for r, col in zip(REGIME_ORDER, PROB_COLUMNS, strict=True)}
    vix = float(row["vix"])
    return RegimeDay(
        date=pd.Timestamp(table.index[-1]),
        regime=regime,
        reason=str(row["reason"]),
        entry_threshold=entry_threshold(regime, s),
        probabilities=probs,
        vix=vix if math.isfinite(vix) else None,
        vix_extreme=bool(row["vix_extreme"]),
        vix_warning=bool(row["vix_warning"]),
        bear_warning=bool(row["bear_warning"]),
    )
