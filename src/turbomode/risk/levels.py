"""Adaptive stop, target and R levels for a trade.

The stop distance is ATR(14) × sector multiplier × confidence modifier × horizon multiplier:
volatile sectors and longer holds need room, and a confident call gets a wider stop because
the model expects the move to survive noise. 1R is that distance; the target sits
``reward_risk`` R from the entry and the partial-exit levels at 1R, 2R and 3R, all in the
trade's favour.

The scalar functions serve one trade; :func:`levels_frame` scores a whole scan (~500 symbols)
at once with numpy and evaluates the very same float expressions in the same order, so both
give bit-identical numbers (a test checks it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from turbomode.config import RiskSettings
from turbomode.errors import SchemaError, TurboModeError, UnknownSectorError

LONG_SIDES = frozenset({"BUY", "long"})
SHORT_SIDES = frozenset({"SELL", "short"})
FRAME_INPUTS = ("side", "close", "atr", "sector", "confidence", "horizon")
FRAME_OUTPUTS = ("stop", "target", "stop_distance", "r1", "r2", "r3")


class RiskInputError(TurboModeError, ValueError):
    """An input to the risk arithmetic (ATR, price, horizon, side, bar) that cannot be used."""


@dataclass(frozen=True)
class Levels:
    """The price levels of one trade; ``stop_distance`` is 1R in price units."""

    side: str
    entry: float
    stop: float
    target: float
    stop_distance: float
    r1: float
    r2: float
    r3: float


def side_sign(side: str) -> float:
    """+1.0 for BUY/long, −1.0 for SELL/short: every level is ``entry + sign × distance``."""
    if side in LONG_SIDES:
        return 1.0
    if side in SHORT_SIDES:
        return -1.0
    raise RiskInputError(f"unknown side {side!r}; expected BUY/long or SELL/short")


def _modifier_bounds(settings: RiskSettings) -> tuple[float, float, float, float]:
    lo, hi = (float(x) for x in settings.confidence_range)
    mlo, mhi = (float(x) for x in settings.confidence_modifier_range)
    if not hi > lo:
        raise RiskInputError(f"confidence_range must be increasing, got {(lo, hi)}")
    return lo, hi, mlo, mhi


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not (math.isfinite(c) and 0.0 <= c <= 1.0):
        raise RiskInputError(f"confidence must be a probability in [0, 1], got {confidence!r}")
    return c


def confidence_modifier(confidence: float, settings: RiskSettings) -> float:
    """Map confidence linearly from ``confidence_range`` (0.5→0.9) onto
    ``confidence_modifier_range`` (0.8→1.2), clamped outside, so no probability can blow the
    stop up or shrink it to nothing."""
    lo, hi, mlo, mhi = _modifier_bounds(settings)
    c = min(max(_check_confidence(confidence), lo), hi)
    return mlo + (c - lo) / (hi - lo) * (mhi - mlo)


def sector_multiplier(sector: str, settings: RiskSettings) -> float:
    """The sector's stop multiplier; an unknown sector is an error, never a silent 1.0."""
    try:
        return float(settings.sector_multiplier[sector])
    except KeyError:
        raise UnknownSectorError(
            f"no stop multiplier for sector {sector!r}; known: {sorted(settings.sector_multiplier)}"
        ) from None


def horizon_multiplier(horizon: int, settings: RiskSettings) -> float:
    """The horizon's stop multiplier; an unknown horizon is an error, never a silent 1.0."""
    try:
        return float(settings.horizon_multiplier[int(horizon)])
    except (KeyError, TypeError, ValueError):
        known = sorted(settings.horizon_multiplier)
        message = f"no stop multiplier for horizon {horizon!r}; known: {known}"
        raise RiskInputError(message) from None


def _check_atr(atr: float) -> float:
    a = float(atr)
    if not (math.isfinite(a) and a > 0.0):
        # A zero ATR would make 1R zero and every R-multiple a division by zero.
        raise RiskInputError(f"ATR must be a positive finite number, got {atr!r}")
    return a


def check_price(price: float, name: str = "entry price") -> float:
    """A price as float; zero, negative or non-finite prices are errors that name the field."""
    p = float(price)
    if not (math.isfinite(p) and p > 0.0):
        raise RiskInputError(f"{name} must be a positive finite number, got {price!r}")
    return p


def stop_distance(
    atr: float, sector: str, confidence: float, horizon: int, settings: RiskSettings
) -> float:
    """ATR × sector multiplier × confidence modifier × horizon multiplier (1R in price units)."""
    a = _check_atr(atr)
    return (
        a
        * sector_multiplier(sector, settings)
        * confidence_modifier(confidence, settings)
        * horizon_multiplier(horizon, settings)
    )


def levels_at(side: str, entry_price: float, distance: float, reward_risk: float) -> Levels:
    """Levels for a known 1R ``distance``: used when a fill price differs from the signal's
    close but the stop distance the scan published must stay the same."""
    sign = side_sign(side)
    entry = check_price(entry_price)
    d = float(distance)
    if not (math.isfinite(d) and d > 0.0):
        raise RiskInputError(f"stop distance must be a positive finite number, got {distance!r}")
    rr = float(reward_risk)
    return Levels(
        side="BUY" if sign > 0 else "SELL",
        entry=entry,
        stop=entry - sign * d,
        target=entry + sign * (d * rr),
        stop_distance=d,
        r1=entry + sign * (d * 1.0),
        r2=entry + sign * (d * 2.0),
        r3=entry + sign * (d * 3.0),
    )


def levels(
    side: str,
    entry_price: float,
    atr: float,
    sector: str,
    confidence: float,
    horizon: int,
    settings: RiskSettings,
) -> Levels:
    """Stop below (long) or above (short) the entry by 1R, target ``reward_risk`` R away and
    the 1R/2R/3R partial-exit levels, all in the trade's favour."""
    d = stop_distance(atr, sector, confidence, horizon, settings)
    return levels_at(side, entry_price, d, settings.reward_risk)


def _bad_rows(mask: np.ndarray, index: Sequence[Any]) -> str:
    rows = [index[i] for i in np.flatnonzero(mask)[:5]]
    return f"{int(mask.sum())} row(s), e.g. index {rows}"


def levels_frame(frame: pd.DataFrame, settings: RiskSettings) -> pd.DataFrame:
    """:func:`levels` for every row of a scan at once.

    ``frame`` needs columns side (BUY/SELL or long/short), close (the entry basis), atr,
    sector, confidence and horizon. Returns stop, target, stop_distance, r1, r2, r3 on the same
    index, bit-identical to the scalar function. Bad rows raise, naming how many and which.
    """
    missing = [c for c in FRAME_INPUTS if c not in frame.columns]
    if missing:
        raise SchemaError(f"levels_frame needs columns {list(FRAME_INPUTS)}; missing {missing}")
    columns = {c: frame[c].to_numpy() for c in FRAME_INPUTS}
    return pd.DataFrame(levels_arrays(columns, settings, list(frame.index)), index=frame.index)


def levels_arrays(
    columns: Mapping[str, Any], settings: RiskSettings, index: Sequence[Any] | None = None
) -> dict[str, np.ndarray]:
    """:func:`levels_frame` on plain arrays (one per FRAME_INPUTS name): the one vectorized
    implementation, which the service also calls for one row, where building a frame cost
    more than the arithmetic. ``index`` labels the rows in error messages (default 0..n-1)."""
    side = np.asarray(columns["side"], dtype=object)
    rows: Sequence[Any] = range(len(side)) if index is None else index
    sides = side.tolist()
    sign = np.array(
        [1.0 if s in LONG_SIDES else -1.0 if s in SHORT_SIDES else np.nan for s in sides],
        dtype=float,
    )
    if np.isnan(sign).any():
        bad = sorted({str(s) for s in side[np.isnan(sign)]})
        raise RiskInputError(f"unknown side(s) {bad}; expected BUY/long or SELL/short")

    sectors = np.asarray(columns["sector"], dtype=object)
    sec = np.array([settings.sector_multiplier.get(s, np.nan) for s in sectors.tolist()], float)
    if np.isnan(sec).any():
        bad = sorted({str(s) for s in sectors[np.isnan(sec)]})
        raise UnknownSectorError(
            f"no stop multiplier for sector(s) {bad}; known: {sorted(settings.sector_multiplier)}"
        )

    horizons = np.asarray(columns["horizon"])
    hor = np.array([settings.horizon_multiplier.get(h, np.nan) for h in horizons.tolist()], float)
    if np.isnan(hor).any():
        bad = sorted({str(h) for h in horizons[np.isnan(hor)]})
        raise RiskInputError(
            f"no stop multiplier for horizon(s) {bad}; known: {sorted(settings.horizon_multiplier)}"
        )

    atr = np.asarray(columns["atr"], dtype=float)
    bad_atr = ~(np.isfinite(atr) & (atr > 0.0))
    if bad_atr.any():
        raise RiskInputError(f"ATR must be a positive finite number: {_bad_rows(bad_atr, rows)}")

    entry = np.asarray(columns["close"], dtype=float)
    bad_entry = ~(np.isfinite(entry) & (entry > 0.0))
    if bad_entry.any():
        raise RiskInputError(
            f"close must be a positive finite number: {_bad_rows(bad_entry, rows)}"
        )

    conf = np.asarray(columns["confidence"], dtype=float)
    bad_conf = ~(np.isfinite(conf) & (conf >= 0.0) & (conf <= 1.0))
    if bad_conf.any():
        raise RiskInputError(
            f"confidence must be a probability in [0, 1]: {_bad_rows(bad_conf, rows)}"
        )

    lo, hi, mlo, mhi = _modifier_bounds(settings)
    c = np.minimum(np.maximum(conf, lo), hi)
    modifier = mlo + (c - lo) / (hi - lo) * (mhi - mlo)
    d = atr * sec * modifier * hor
    rr = float(settings.reward_risk)
    return {
        "stop": entry - sign * d,
        "target": entry + sign * (d * rr),
        "stop_distance": d,
        "r1": entry + sign * (d * 1.0),
        "r2": entry + sign * (d * 2.0),
        "r3": entry + sign * (d * 3.0),
    }
