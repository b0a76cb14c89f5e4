"""Signal rules of the nightly scan: entry candidates, time decay, capacity, sector overview.

Everything here is pure (no I/O, no clock): the scan passes ``as_of`` explicitly, so a rerun
for a past night gives the same answer. The per-row work over a whole scan (~500 symbols ×
3 horizons) is vectorized; the capacity rules work on the few hundred active signals.

Choices, and why:

* **Entry.** BUY when P(BUY) ≥ threshold, SELL when P(SELL) ≥ threshold (``≥``: a probability
  exactly at the threshold fires). When both pass — possible only with thresholds ≤ 0.5, e.g.
  from :func:`threshold_for_quantile` — the larger probability wins and an exact tie gives no
  signal, because the model does not prefer a side. With shorts disabled a row whose SELL wins
  gives no signal rather than falling back to a BUY the model rates less likely than a SELL.
* **Age** is counted in *calendar* days between ``signal_date`` and ``as_of``: ``decay_days``
  = 14 means two weeks of wall time; news and earnings arrive over weekends and holidays too,
  and the rules then need no exchange calendar (a Friday signal is 3 days old on Monday).
* **Decay** is linear, ``confidence × (1 − age / decay_days × decay_factor)``; past
  ``decay_days`` the same line continues (0.8 → 0.56 at 14 days, 0.464 at 20 days) and is
  clamped at 0 (reached at ``decay_days / decay_factor`` days). Old signals are not expired
  here — they simply rank low and lose their slot to anything fresher.
* **Age buckets** are quarters of ``decay_days``, closed on the left: [0, ¼) hot, [¼, ½) warm,
  [½, ¾) cool, ≥ ¾ cold (3.5 / 7 / 10.5 days for 14).
* **One signal per (symbol, horizon).** A fresh signal always replaces the active one for its
  key: it is newer information. Same side → *refresh*: the new record (new date, so its age
  restarts, new confidence and levels) inherits the old one's capacity slot. Opposite side →
  *reversal*: the old one goes and the new one competes for a slot on its own side.
* **Capacity.** At most ``capacity_per_class_side`` per (cap_class, side), ranked by effective
  confidence at ``as_of``. A fresh signal takes the slot of an incumbent only with a strictly
  higher effective confidence (ties keep the incumbent: churn costs trades); effective
  confidences are compared rounded to 1e-9 so float noise cannot decide a tie. Remaining ties
  break by symbol, then horizon.
* **Sector stance.** Signals are counted (a symbol with BUYs on three horizons counts three):
  bullish when n_buy − n_sell ≥ 2 and BUYs are ≥ 60 % of the sector's signals, bearish
  symmetrically, otherwise neutral — two conditions so that neither one stray signal nor a
  large but evenly split sector reads as a view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Literal, TypeAlias, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.config import SignalSettings
from turbomode.errors import SchemaError, TurboModeError
from turbomode.records.signals import SIDES, Side, Signal

PROBABILITY_COLUMNS: tuple[str, ...] = ("p_buy", "p_hold", "p_sell")
SCORE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "sector",
    "cap_class",
    "horizon",
    *PROBABILITY_COLUMNS,
    "close",
    "atr",
)
LEVEL_COLUMNS: tuple[str, ...] = ("stop", "target", "stop_distance")
PROBABILITY_TOLERANCE = 1e-6
RANK_DECIMALS = 9
AGE_BUCKETS: tuple[str, ...] = ("hot", "warm", "cool", "cold")
STANCE_MIN_NET = 2
STANCE_MIN_SHARE = 0.60
SIGNAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Signal))
_TEXT_FIELDS = ("symbol", "sector", "cap_class", "side", "model_version")

Columns: TypeAlias = pd.DataFrame | Mapping[str, Any]
"""Score rows as a frame or as a mapping of equal-length arrays: the entry rule reads columns
by name and takes either, so the scan's frames and the service's arrays share it."""

ReplaceReason = Literal["refresh", "reversal", "capacity"]
DropReason = Literal["superseded", "displaced", "over_capacity", "capacity_full"]


class InvalidProbabilityError(TurboModeError, ValueError):
    """Score rows whose class probabilities are not a distribution; ``symbols`` names them."""

    def __init__(self, labels: list[str], symbols: list[str]) -> None:
        self.symbols = sorted(set(symbols))
        shown = ", ".join(labels[:20]) + (" …" if len(labels) > 20 else "")
        super().__init__(
            f"{len(labels)} score row(s) with probabilities that are not finite, outside [0, 1] "
            f"or not summing to 1 (±{PROBABILITY_TOLERANCE:g}): {shown}"
        )


# --------------------------------------------------------------------------- entry


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}; has {list(frame.columns)}")


def invalid_probability_mask(scores: pd.DataFrame) -> pd.Series:
    """True for rows whose p_buy, p_hold, p_sell are not a probability distribution.

    The scan uses it to set failed rows aside before :func:`entry_candidates`, which refuses
    them: a silently dropped row would look like "no signal" when it is "no valid score".
    """
    _require(scores, PROBABILITY_COLUMNS, "scores")
    return pd.Series(invalid_rows(scores), index=scores.index, name="invalid_probability")


def invalid_rows(scores: Columns) -> npt.NDArray[np.bool_]:
    """:func:`invalid_probability_mask` as a bool array, for a frame or a mapping of columns."""
    # Column by column: selecting a list of columns copies a frame, 10× the cost on one row.
    p = np.column_stack([np.asarray(scores[c], dtype=float) for c in PROBABILITY_COLUMNS])
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(p).all(axis=1)
            & (p >= 0.0).all(axis=1)
            & (p <= 1.0).all(axis=1)
            & (np.abs(p.sum(axis=1) - 1.0) <= PROBABILITY_TOLERANCE)
        )
    return ~ok


def _check_threshold(value: float, name: str) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return float(value)


def entry_candidates(
    scores: pd.DataFrame,
    settings: SignalSettings,
    *,
    buy_threshold: float | None = None,
    sell_threshold: float | None = None,
    on: Literal["probability", "lift"] = "probability",
) -> pd.DataFrame:
    """The score rows that become BUY or SELL candidates, with side, confidence and entry band.

    ``scores`` has one row per (symbol, horizon) with the SCORE_COLUMNS (other columns are
    kept). The thresholds default to ``settings.entry_probability``; pass measured ones
    (:func:`threshold_for_quantile`) to use the distribution instead. ``on="lift"`` compares
    each side's *lift* — its probability over the model's class prior (:func:`lifts`) — with
    the thresholds instead (:func:`quantile_thresholds`), and the probability with
    ``settings.threshold_floor``. Adds ``side``,
    ``confidence`` (the probability of the side) and ``entry_low`` / ``entry_high`` =
    close × (1 ∓ entry_range). Rows keep their input order; the index is reset.

    Raises :class:`InvalidProbabilityError` (a ValueError) naming every bad row: the whole
    scan is refused rather than quietly scored without them.
    """
    _require(scores, SCORE_COLUMNS, "scores")
    keep, side, confidence = _entries(scores, settings, buy_threshold, sell_threshold, on)
    out = scores.loc[keep].reset_index(drop=True)
    out["side"] = side
    out["confidence"] = confidence
    close = out["close"].to_numpy(dtype=float)
    out["entry_low"], out["entry_high"] = _entry_band(close, settings)
    return out


def night_entries(
    columns: Mapping[str, npt.NDArray[Any]],
    settings: SignalSettings,
    limits: Mapping[str, float],
) -> dict[str, npt.NDArray[Any]]:
    """:func:`night_candidates` on a mapping of equal-length arrays (the SCORE_COLUMNS and any
    others, kept): the same rule, for the service's few rows, where a frame's per-call cost
    was most of a request. Returns the kept rows' columns plus side, confidence, entry band."""
    missing = [c for c in SCORE_COLUMNS if c not in columns]
    if missing:
        raise SchemaError(f"scores lack column(s) {missing}; have {list(columns)}")
    keep, side, confidence = _entries(
        columns, settings, limits["buy"], limits["sell"], threshold_basis(settings)
    )
    out = {c: np.asarray(v)[keep] for c, v in columns.items()}
    out["side"] = side
    out["confidence"] = confidence
    out["entry_low"], out["entry_high"] = _entry_band(np.asarray(out["close"], float), settings)
    return out


def _entry_band(
    close: npt.NDArray[np.float64], settings: SignalSettings
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    return close * (1.0 - settings.entry_range), close * (1.0 + settings.entry_range)


def _entries(
    scores: Columns,
    settings: SignalSettings,
    buy_threshold: float | None,
    sell_threshold: float | None,
    on: Literal["probability", "lift"],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.str_], npt.NDArray[np.float64]]:
    """Which rows enter, their side and confidence: the entry rule behind both
    :func:`entry_candidates` and :func:`night_entries`. Invalid rows raise."""
    bad = invalid_rows(scores)
    if bad.any():
        symbols = np.asarray(scores["symbol"])[bad].astype(str).tolist()
        horizons = np.asarray(scores["horizon"])[bad].tolist()
        labels = [f"{s} (h={h})" for s, h in zip(symbols, horizons, strict=True)]
        raise InvalidProbabilityError(labels, symbols)

    p_buy = np.asarray(scores["p_buy"], dtype=float)
    p_sell = np.asarray(scores["p_sell"], dtype=float)
    is_buy, is_sell = _sides(scores, settings, buy_threshold, sell_threshold, on)
    if not settings.shorts_enabled:
        is_sell = np.zeros_like(is_sell)

    keep = is_buy | is_sell
    chosen_buy = is_buy[keep]
    side = np.where(chosen_buy, "BUY", "SELL")
    confidence = np.where(chosen_buy, p_buy[keep], p_sell[keep])
    return keep, side, confidence


def _sides(
    scores: Columns,
    settings: SignalSettings,
    buy_threshold: float | None,
    sell_threshold: float | None,
    on: Literal["probability", "lift"],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which rows call BUY and which SELL at the thresholds: a side passes its threshold (on
    P(side), or on its lift with P(side) ≥ ``threshold_floor``); when both pass, the larger
    wins. The one comparison behind entries and the nightly calls on open positions."""
    p_buy = np.asarray(scores["p_buy"], dtype=float)
    p_sell = np.asarray(scores["p_sell"], dtype=float)
    if on == "lift":
        t_buy = _check_lift(buy_threshold, "buy_threshold")
        t_sell = _check_lift(sell_threshold, "sell_threshold")
        v_buy, v_sell = lifts(scores)
        floor = settings.threshold_floor
        buy_ok = (v_buy >= t_buy) & (p_buy >= floor)
        sell_ok = (v_sell >= t_sell) & (p_sell >= floor)
    else:
        t_buy = _check_threshold(
            settings.entry_probability if buy_threshold is None else buy_threshold,
            "buy_threshold",
        )
        t_sell = _check_threshold(
            settings.entry_probability if sell_threshold is None else sell_threshold,
            "sell_threshold",
        )
        v_buy, v_sell = p_buy, p_sell
        buy_ok = p_buy >= t_buy
        sell_ok = p_sell >= t_sell
    is_buy = buy_ok & (~sell_ok | (v_buy > v_sell))
    is_sell = sell_ok & (~buy_ok | (v_sell > v_buy))
    return is_buy, is_sell


def night_calls(
    scores: pd.DataFrame, settings: SignalSettings, limits: Mapping[str, float]
) -> list[str]:
    """Each row's call tonight — "BUY", "SELL" or "HOLD" — at ``limits`` as
    ``threshold_mode`` reads them (:func:`entry_thresholds`): the same comparison as an
    entry, without the entry-only rules (shorts may be off, yet a SELL call still counts
    against an open long)."""
    is_buy, is_sell = _sides(
        scores, settings, limits["buy"], limits["sell"], threshold_basis(settings)
    )
    return np.where(is_buy, "BUY", np.where(is_sell, "SELL", "HOLD")).tolist()


def _check_lift(value: float | None, name: str) -> float:
    if value is None or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive lift, got {value}")
    return float(value)


def lifts(scores: Columns) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """P(BUY) / prior(BUY) and P(SELL) / prior(SELL) per row: how much likelier than its base
    rate the model rates each side. Calibrated probabilities of different models, horizons and
    sectors sit around different priors (a 5-day BUY is likelier than a 1-day one); lifts are
    comparable across them. Without ``prior_buy`` / ``prior_sell`` columns the prior is 1/3
    (the stacked ensemble's balanced classes)."""
    p_buy = np.asarray(scores["p_buy"], dtype=float)
    third = np.full(len(p_buy), 1.0 / 3.0)
    pb = np.asarray(scores["prior_buy"], dtype=float) if "prior_buy" in scores else third
    ps = np.asarray(scores["prior_sell"], dtype=float) if "prior_sell" in scores else third
    return p_buy / pb, np.asarray(scores["p_sell"], dtype=float) / ps


def quantile_thresholds(scores: pd.DataFrame, settings: SignalSettings) -> dict[str, float]:
    """The night's lift thresholds: the ``threshold_quantile`` of every (symbol, horizon)
    lift, never below ``threshold_floor_lift`` — for :func:`entry_candidates` with
    ``on="lift"``."""
    out = {}
    for side, values in zip(("buy", "sell"), lifts(scores), strict=True):
        v = values[np.isfinite(values)]
        if v.size == 0:
            raise ValueError("no finite probabilities to take a quantile of")
        q = float(np.quantile(v, settings.threshold_quantile))
        out[side] = max(settings.threshold_floor_lift, q)
    return out


def entry_thresholds(
    settings: SignalSettings,
    scores: pd.DataFrame | None = None,
    *,
    measured: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The night's entry thresholds ({"buy", "sell"}) as ``threshold_mode`` prescribes them.

    The one reading of the mode, so the scan, the walk-forward backtest and the service
    enter by the same rule. fixed: ``entry_probability``, compared with P(side). quantile:
    lifts (:func:`lifts`) — ``measured`` when given (a scan's thresholds of the whole night,
    which a request scoring a few symbols cannot measure again), else
    :func:`quantile_thresholds` of ``scores``, else (no scores, nothing to take a quantile
    of) ``threshold_floor_lift``. Use them with :func:`night_candidates`.
    """
    if settings.threshold_mode == "fixed":
        return {"buy": settings.entry_probability, "sell": settings.entry_probability}
    if measured:
        return {side: float(measured[side]) for side in ("buy", "sell")}
    if scores is None or scores.empty:
        return {"buy": settings.threshold_floor_lift, "sell": settings.threshold_floor_lift}
    return quantile_thresholds(scores, settings)


def threshold_basis(settings: SignalSettings) -> Literal["probability", "lift"]:
    """What the night's thresholds compare: P(side) (fixed mode) or its lift (quantile)."""
    return "lift" if settings.threshold_mode == "quantile" else "probability"


def night_candidates(
    scores: pd.DataFrame,
    settings: SignalSettings,
    limits: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """:func:`entry_candidates` as ``threshold_mode`` says: at ``limits`` (default:
    :func:`entry_thresholds` of ``scores``), compared with what that mode's thresholds are
    on — P(side) in fixed mode, its lift in quantile mode."""
    limits = entry_thresholds(settings, scores) if limits is None else limits
    return entry_candidates(
        scores,
        settings,
        buy_threshold=limits["buy"],
        sell_threshold=limits["sell"],
        on=threshold_basis(settings),
    )


def threshold_for_quantile(probabilities: npt.ArrayLike, quantile: float, floor: float) -> float:
    """The probability at ``quantile`` of the measured distribution, never below ``floor``.

    ``quantile`` is the level: 0.95 makes the top 5 % of the night's P(BUY) pass (with
    ``≥``, interpolated between neighbours so exactly the top share passes when values are
    distinct). The floor keeps a night where the model is unsure of everything from still
    emitting its top 5 %. Non-finite values are ignored (they fail validation elsewhere).
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    p = np.asarray(probabilities, dtype=float).ravel()
    p = p[np.isfinite(p)]
    if p.size == 0:
        raise ValueError("no finite probabilities to take a quantile of")
    return max(float(floor), float(np.quantile(p, quantile)))


# --------------------------------------------------------------------------- decay


def _as_date(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def signal_age(signal_date: date, as_of: date) -> int:
    """Calendar days from ``signal_date`` to ``as_of`` (see the module notes for why)."""
    age = (_as_date(as_of) - _as_date(signal_date)).days
    if age < 0:
        raise ValueError(f"signal_date {signal_date} is after as_of {as_of}")
    return age


@overload
def effective_confidence(confidence: float, age_days: float, settings: SignalSettings) -> float: ...
@overload
def effective_confidence(
    confidence: npt.NDArray[Any] | pd.Series | Sequence[float],
    age_days: npt.ArrayLike,
    settings: SignalSettings,
) -> npt.NDArray[np.float64]: ...
@overload
def effective_confidence(
    confidence: npt.ArrayLike,
    age_days: npt.NDArray[Any] | pd.Series | Sequence[float],
    settings: SignalSettings,
) -> npt.NDArray[np.float64]: ...
def effective_confidence(
    confidence: npt.ArrayLike, age_days: npt.ArrayLike, settings: SignalSettings
) -> float | npt.NDArray[np.float64]:
    """Confidence decayed linearly with age, so stale calls give way to fresh ones.

    ``confidence × (1 − age_days / decay_days × decay_factor)``, clamped at 0; beyond
    ``decay_days`` the line continues. Scalars give a float, arrays (broadcast) an array.
    """
    c = np.asarray(confidence, dtype=float)
    a = np.asarray(age_days, dtype=float)
    if np.any(a < 0):
        raise ValueError("age_days must be ≥ 0 (a signal cannot come from after as_of)")
    out = np.maximum(c * (1.0 - a / settings.decay_days * settings.decay_factor), 0.0)
    return float(out) if out.ndim == 0 else out


@overload
def age_bucket(age_days: float, decay_days: float) -> str: ...
@overload
def age_bucket(
    age_days: npt.NDArray[Any] | pd.Series | Sequence[float], decay_days: float
) -> npt.NDArray[np.str_]: ...
def age_bucket(age_days: npt.ArrayLike, decay_days: float) -> str | npt.NDArray[np.str_]:
    """'hot' / 'warm' / 'cool' / 'cold' by quarter of ``decay_days``, left-closed.

    For 14 days: [0, 3.5) hot, [3.5, 7) warm, [7, 10.5) cool, ≥ 10.5 cold — a label for the
    dashboard that says how much of its confidence a signal has already lost.
    """
    if decay_days <= 0:
        raise ValueError(f"decay_days must be > 0, got {decay_days}")
    a = np.asarray(age_days, dtype=float)
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("age_days must be finite and ≥ 0")
    index = np.minimum(np.floor(a / (decay_days / 4.0)), 3).astype(int)
    labels = np.asarray(AGE_BUCKETS)[index]
    return str(labels) if labels.ndim == 0 else labels


def _rank_value(signal: Signal, as_of: date, settings: SignalSettings) -> float:
    eff = effective_confidence(signal.confidence, signal_age(signal.signal_date, as_of), settings)
    return round(eff, RANK_DECIMALS)


# --------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class Replacement:
    """``new`` took ``old``'s place: same key (refresh / reversal) or a capacity slot."""

    old: Signal
    new: Signal
    reason: ReplaceReason


@dataclass(frozen=True)
class Dropped:
    """A signal left out of the active set and why; ``by`` is the signal that took its place.

    superseded: a fresh signal for the same (symbol, horizon) arrived; displaced: a fresh
    signal with strictly higher effective confidence took its capacity slot; over_capacity:
    more incumbents than slots (capacity was lowered); capacity_full: a fresh signal that did
    not beat the weakest incumbent.
    """

    signal: Signal
    reason: DropReason
    by: Signal | None = None


@dataclass(frozen=True)
class SelectionResult:
    """The active set after a scan and how it came about.

    ``active`` = ``kept`` (existing, unchanged) + ``added`` (fresh, including refreshes,
    reversals and capacity replacements); every input signal not active is in ``dropped``.
    Lists are ordered by effective confidence at ``as_of``, then symbol and horizon.
    """

    active: list[Signal]
    added: list[Signal]
    replaced: list[Replacement]
    kept: list[Signal]
    dropped: list[Dropped]


def _unique_keys(signals: list[Signal], what: str) -> dict[tuple[str, int], Signal]:
    by_key: dict[tuple[str, int], Signal] = {}
    dupes: set[tuple[str, int]] = set()
    for s in signals:
        if s.key in by_key:
            dupes.add(s.key)
        by_key[s.key] = s
    if dupes:
        raise ValueError(
            f"{what} signals hold more than one signal per (symbol, horizon): {sorted(dupes)}"
        )
    return by_key


def select_active(
    existing: list[Signal], fresh: list[Signal], as_of: date, settings: SignalSettings
) -> SelectionResult:
    """Merge tonight's ``fresh`` signals into the ``existing`` active set under capacity.

    One signal per (symbol, horizon) — a fresh one replaces the old (refresh or reversal) —
    then at most ``capacity_per_class_side`` per (cap_class, side) by effective confidence at
    ``as_of``, a fresh signal entering a full class only by strictly beating the weakest
    incumbent. See the module notes for the reasoning.
    """
    old_by_key = _unique_keys(existing, "existing")
    new_by_key = _unique_keys(fresh, "fresh")
    rank = {id(s): _rank_value(s, as_of, settings) for s in [*existing, *fresh]}

    def order(s: Signal) -> tuple[float, str, int]:
        return (-rank[id(s)], s.symbol, s.horizon)

    dropped: list[Dropped] = []
    replaced: list[Replacement] = []
    superseded: dict[int, Signal] = {}  # id(fresh refresh/reversal) → old signal it replaces
    incumbents: list[Signal] = []
    challengers: list[Signal] = []
    for key, new in sorted(new_by_key.items()):
        old = old_by_key.get(key)
        if old is None:
            challengers.append(new)
            continue
        if new.signal_date < old.signal_date:
            raise ValueError(
                f"fresh signal {key} dated {new.signal_date} is older than the active one "
                f"dated {old.signal_date}"
            )
        superseded[id(new)] = old
        dropped.append(Dropped(old, "superseded", new))
        same_slot = (new.side, new.cap_class) == (old.side, old.cap_class)
        (incumbents if same_slot else challengers).append(new)
    incumbents.extend(s for k, s in old_by_key.items() if k not in new_by_key)

    cap = settings.capacity_per_class_side
    buckets: dict[tuple[str, str], tuple[list[Signal], list[Signal]]] = {}
    for s in incumbents:
        buckets.setdefault((s.cap_class, s.side), ([], []))[0].append(s)
    for s in challengers:
        buckets.setdefault((s.cap_class, s.side), ([], []))[1].append(s)

    active: list[Signal] = []
    for inc, chal in buckets.values():
        inc.sort(key=order)
        chal.sort(key=order)
        # Incumbents rank ahead of challengers at equal effective confidence.
        ranked = sorted(
            [(s, 0) for s in inc] + [(s, 1) for s in chal],
            key=lambda e: (-rank[id(e[0])], e[1], e[0].symbol, e[0].horizon),
        )
        admitted = {id(s) for s, _ in ranked[:cap]}
        active.extend(s for s, _ in ranked[:cap])

        lost = [s for s in reversed(inc) if id(s) not in admitted]  # weakest first
        won = [s for s in chal if id(s) in admitted]  # strongest first
        n_over = max(0, len(inc) - cap)
        dropped.extend(Dropped(s, "over_capacity") for s in lost[:n_over])
        entering = won[max(0, cap - len(inc)) :]
        for old, new in zip(lost[n_over:], entering, strict=True):
            dropped.append(Dropped(old, "displaced", new))
            replaced.append(Replacement(old, new, "capacity"))
        dropped.extend(Dropped(s, "capacity_full") for s in chal if id(s) not in admitted)

    active.sort(key=order)
    fresh_ids = {id(s) for s in fresh}
    for s in active:
        old = superseded.get(id(s))
        if old is not None:
            reason: ReplaceReason = "refresh" if old.side == s.side else "reversal"
            replaced.append(Replacement(old, s, reason))
    replaced.sort(key=lambda r: order(r.new))
    dropped.sort(key=lambda d: (d.signal.symbol, d.signal.horizon, d.signal.signal_date))
    return SelectionResult(
        active=active,
        added=[s for s in active if id(s) in fresh_ids],
        replaced=replaced,
        kept=[s for s in active if id(s) not in fresh_ids],
        dropped=dropped,
    )


# --------------------------------------------------------------------------- overview


def sector_overview(
    active: list[Signal],
    as_of: date,
    settings: SignalSettings,
    sectors: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Per sector: n_buy, n_sell, mean effective confidence per side, net, buy_share, stance.

    One row per sector with signals, plus every name in ``sectors`` (zero rows) so the
    dashboard can show all 11. Mean confidences are NaN for a side with no signals;
    stance follows the module notes (net ≥ 2 and share ≥ 60 %).
    """
    frame = signals_to_frame(active, as_of=as_of, settings=settings)
    names = sorted(set(frame["sector"].astype(str)) | set(sectors or ()))
    rows = []
    for sector in names:
        sub = frame[frame["sector"] == sector]
        eff = {side: sub.loc[sub["side"] == side, "effective_confidence"] for side in SIDES}
        n_buy, n_sell = len(eff["BUY"]), len(eff["SELL"])
        total = n_buy + n_sell
        net = n_buy - n_sell
        buy_share = n_buy / total if total else math.nan
        if net >= STANCE_MIN_NET and buy_share >= STANCE_MIN_SHARE:
            stance = "bullish"
        elif -net >= STANCE_MIN_NET and 1.0 - buy_share >= STANCE_MIN_SHARE:
            stance = "bearish"
        else:
            stance = "neutral"
        rows.append(
            {
                "sector": sector,
                "n_buy": n_buy,
                "n_sell": n_sell,
                "mean_eff_buy": float(eff["BUY"].mean()) if n_buy else math.nan,
                "mean_eff_sell": float(eff["SELL"].mean()) if n_sell else math.nan,
                "net": net,
                "buy_share": buy_share,
                "stance": stance,
            }
        )
    columns = ["sector", "n_buy", "n_sell", "mean_eff_buy", "mean_eff_sell", "net"]
    out = pd.DataFrame(rows, columns=[*columns, "buy_share", "stance"])
    return out.astype({"n_buy": "int64", "n_sell": "int64", "net": "int64"})


# --------------------------------------------------------------------------- frames


def signals_from_frame(
    candidates_with_levels: pd.DataFrame,
    signal_date: date,
    model_versions: str | Mapping[tuple[str, int], str],
) -> list[Signal]:
    """Build :class:`Signal` records from candidates that carry stop, target, stop_distance.

    ``model_versions`` is one version for every row or a mapping (sector, horizon) → version
    (the models are trained per sector × horizon). Missing columns, missing versions, a side
    other than BUY / SELL, or non-finite numbers raise naming the rows: a half-built signal
    must not reach the store.
    """
    frame = candidates_with_levels
    _require(frame, _SIGNAL_INPUTS, "candidates_with_levels")
    if frame.empty:
        return []
    columns = {c: frame[c].to_numpy() for c in _SIGNAL_INPUTS}
    return signals_from_columns(columns, signal_date, model_versions)


_SIGNAL_NUMBERS: tuple[str, ...] = (
    *PROBABILITY_COLUMNS,
    "confidence",
    "close",
    "atr",
    "entry_low",
    "entry_high",
    *LEVEL_COLUMNS,
)
_SIGNAL_INPUTS: tuple[str, ...] = ("symbol", "sector", "cap_class", "horizon", "side")
_SIGNAL_INPUTS += _SIGNAL_NUMBERS


def signals_from_columns(
    columns: Mapping[str, npt.NDArray[Any]],
    signal_date: date,
    model_versions: str | Mapping[tuple[str, int], str],
) -> list[Signal]:
    """:func:`signals_from_frame` on a mapping of equal-length arrays, with the same checks:
    records straight from columns, without a frame's per-row cost."""
    missing_cols = [c for c in _SIGNAL_INPUTS if c not in columns]
    if missing_cols:
        raise SchemaError(f"candidates_with_levels lacks column(s) {missing_cols}")
    n = len(columns["symbol"])
    if n == 0:
        return []
    day = _as_date(signal_date)
    values = np.column_stack([np.asarray(columns[c], dtype=float) for c in _SIGNAL_NUMBERS])
    sides = np.asarray(columns["side"], dtype=object).tolist()
    bad_rows = ~np.isfinite(values).all(axis=1) | np.array([s not in SIDES for s in sides])
    if bad_rows.any():
        shown = sorted(set(np.asarray(columns["symbol"])[bad_rows].astype(str).tolist()))
        raise ValueError(f"candidates with a bad side or non-finite numbers: {shown}")

    symbols = [str(s) for s in np.asarray(columns["symbol"]).tolist()]
    sectors = [str(s) for s in np.asarray(columns["sector"]).tolist()]
    caps = [str(s) for s in np.asarray(columns["cap_class"]).tolist()]
    horizons = [int(h) for h in np.asarray(columns["horizon"]).tolist()]
    if isinstance(model_versions, str):
        versions = [model_versions] * n
    else:
        keys = list(zip(sectors, horizons, strict=True))
        missing = sorted({k for k in keys if k not in model_versions})
        if missing:
            raise ValueError(f"no model version for (sector, horizon) {missing}")
        versions = [model_versions[k] for k in keys]
    numbers = [[float(v) for v in row] for row in values.tolist()]

    out = []
    for i in range(n):
        side: Side = "BUY" if sides[i] == "BUY" else "SELL"
        out.append(
            Signal(
                symbol=symbols[i],
                sector=sectors[i],
                cap_class=caps[i],
                horizon=horizons[i],
                side=side,
                signal_date=day,
                model_version=str(versions[i]),
                **dict(zip(_SIGNAL_NUMBERS, numbers[i], strict=True)),
            )
        )
    return out


def signals_to_frame(
    signals: list[Signal],
    as_of: date | None = None,
    settings: SignalSettings | None = None,
) -> pd.DataFrame:
    """One row per signal, columns in :class:`Signal` field order; signal_date as datetime64.

    With ``as_of`` (and ``settings``) adds ``age_days``, ``effective_confidence`` and
    ``age_bucket`` — what the dashboard and :func:`sector_overview` show.
    """
    frame = pd.DataFrame(
        [[getattr(s, f) for f in SIGNAL_FIELDS] for s in signals], columns=list(SIGNAL_FIELDS)
    )
    frame["signal_date"] = pd.to_datetime(frame["signal_date"])
    floats = [
        f for f in SIGNAL_FIELDS if f not in _TEXT_FIELDS and f not in ("horizon", "signal_date")
    ]
    frame = frame.astype({"horizon": "int64", **dict.fromkeys(floats, "float64")})
    if as_of is None:
        return frame
    if settings is None:
        raise ValueError("signals_to_frame needs settings to decay confidence at as_of")
    ages = np.array([signal_age(s.signal_date, as_of) for s in signals], dtype=float)
    frame["age_days"] = ages.astype("int64")
    frame["effective_confidence"] = effective_confidence(
        frame["confidence"].to_numpy(dtype=float), ages, settings
    )
    frame["age_bucket"] = age_bucket(ages, settings.decay_days)
    return frame
