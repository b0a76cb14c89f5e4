"""Outcome tracking: what happened to each signal once its hold period was over.

Every issued signal (a fresh call: ``signal_date`` equal to the scan date that made it) is
registered as a pending outcome. Once the hold period is over and its prices are known, the
tracker computes, from the prices alone:

* entry at the open of the bar after the signal (the signal is made from a close; the
  earliest trade is the next open), exit at the close ``hold_days`` bars after the signal —
  the same window the labels use, so an outcome can be judged by the rule that labeled it;
* the realized return, the return on the signal's side, the maximum favourable and adverse
  excursions (side-signed, from the highs and lows of the held bars), and which of stop and
  target the bars reached first (both in one bar counts as the stop: the conservative read);
* correctness: ``rule="label"`` — the realized class under the labeling rule (the same
  :func:`turbomode.labels.make_labels`, sector-relative by default) equals the side;
  ``rule="legacy"`` — hold 14 days, BUY correct at ≥ +10 %, SELL correct when the return
  stays below it;
* the realized ``label``: under either rule the class :func:`turbomode.labels.make_labels`
  gives the signal's (symbol, date) at the signal's *horizon* — prices up to t + h only. It
  is what a training sample of the signal teaches its h-day model, so the legacy rule's
  14-day ±10 % judgement never becomes the label of a 1/2/5-day model (its window would reach
  past the purge of t + h that training relies on). Under the legacy rule a signal whose
  horizon label is unknown (ATR warm-up) still resolves, without a label.

Resolved signals leave the active table (the scan carries only unresolved ones). A signal
whose symbol has no prices for part of its hold (delisted, halted) stays pending with the
reason. Running twice records nothing twice: a resolution only updates a row still pending.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.labels import BUY, SELL, make_labels
from turbomode.logs import event
from turbomode.store import SignalStore

log = logging.getLogger("turbomode.outcomes.track")


@dataclass
class TrackResult:
    """What one tracking run did."""

    as_of: date
    registered: int
    resolved: pd.DataFrame
    pending: dict[int, str] = field(default_factory=dict)
    rolling: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_resolved(self) -> int:
        return len(self.resolved)

    def reasons(self) -> dict[str, int]:
        """Pending signals by why they wait (the text before the first ':')."""
        return dict(Counter(r.split(":")[0] for r in self.pending.values()))


def rolling_hit_rate(
    outcomes: pd.DataFrame, as_of: date | pd.Timestamp, window_days: int, horizons: Sequence[int]
) -> pd.DataFrame:
    """Hit rate of the outcomes resolved (by exit date) in the ``window_days`` up to ``as_of``.

    One row per horizon, indexed by horizon, with ``n`` and ``hit_rate`` (NaN when none
    resolved): the rate operators watch, beside its sample size so an alert can ignore noise.
    """
    day = pd.Timestamp(as_of)
    rows = []
    done = outcomes[outcomes["status"] == "resolved"] if len(outcomes) else outcomes
    if len(done):
        exit_day = pd.to_datetime(done["exit_date"])
        done = done[(exit_day > day - pd.Timedelta(days=window_days)) & (exit_day <= day)]
    for h in horizons:
        got = done[done["horizon"] == h]["correct"].astype(float) if len(done) else pd.Series()
        rows.append(
            {"horizon": int(h), "n": len(got), "hit_rate": got.mean() if len(got) else np.nan}
        )
    return pd.DataFrame(rows).set_index("horizon")


def hold_days(horizon: int, settings: Settings) -> int:
    """Bars a signal is held before its outcome is judged."""
    if settings.outcomes.rule == "legacy":
        return settings.outcomes.legacy_hold_days
    return int(horizon)


def issued_signals(store: SignalStore, settings: Settings, since: date | None) -> list[dict]:
    """Signals first called on the scan that recorded them (carried ones are not new)."""
    hist = store.signal_history(since=since)
    if hist.empty:
        return []
    fresh = hist[hist["scan_date"] == hist["signal_date"]]
    rows = []
    r: Any
    for r in fresh.itertuples(index=False):
        rows.append(
            {
                "symbol": r.symbol,
                "sector": r.sector,
                "cap_class": r.cap_class,
                "horizon": int(r.horizon),
                "side": r.side,
                "signal_date": pd.Timestamp(r.signal_date).date(),
                "confidence": float(r.confidence),
                "close": float(r.close),
                "stop": float(r.stop),
                "target": float(r.target),
                "model_version": r.model_version,
                "hold_days": hold_days(int(r.horizon), settings),
                "rule": settings.outcomes.rule,
            }
        )
    return rows


def first_hit(side: str, highs: np.ndarray, lows: np.ndarray, stop: float, target: float) -> str:
    """'stop', 'target' or 'neither': which level the held bars reached first."""
    for hi, lo in zip(highs, lows, strict=True):
        stop_hit = lo <= stop if side == "BUY" else hi >= stop
        target_hit = hi >= target if side == "BUY" else lo <= target
        if stop_hit:
            return "stop"
        if target_hit:
            return "target"
    return "neither"


def judge(
    row: Mapping[Any, Any],
    bars: pd.DataFrame,
    realized_label: int | None,
    settings: Settings,
) -> dict[str, Any]:
    """The outcome of one signal from its held bars (date-indexed open/high/low/close);
    ``realized_label`` is the class of the signal's horizon (:func:`resolve`), recorded as the
    outcome's label under either rule."""
    side = str(row["side"])
    entry = float(bars["open"].iloc[0])
    exit_ = float(bars["close"].iloc[-1])
    ret = exit_ / entry - 1.0
    sign = 1.0 if side == "BUY" else -1.0
    highs, lows = bars["high"].to_numpy(float), bars["low"].to_numpy(float)
    if side == "BUY":
        mfe, mae = highs.max() / entry - 1.0, lows.min() / entry - 1.0
    else:
        mfe, mae = 1.0 - lows.min() / entry, 1.0 - highs.max() / entry
    if settings.outcomes.rule == "legacy":
        thr = settings.outcomes.legacy_buy_return
        correct = ret >= thr if side == "BUY" else ret < thr
    else:
        if realized_label is None:
            raise ValueError("rule 'label' needs the realized label")
        correct = realized_label == (BUY if side == "BUY" else SELL)
    return {
        "id": int(row["id"]),
        "symbol": row["symbol"],
        "horizon": int(row["horizon"]),
        "signal_date": row["signal_date"],
        "entry_date": pd.Timestamp(bars.index[0]).date(),
        "entry_price": entry,
        "exit_date": pd.Timestamp(bars.index[-1]).date(),
        "exit_price": exit_,
        "realized_return": ret,
        "side_return": sign * ret,
        "mfe": float(mfe),
        "mae": float(mae),
        "first_hit": first_hit(side, highs, lows, float(row["stop"]), float(row["target"])),
        "label": None if realized_label is None else int(realized_label),
        "correct": bool(correct),
    }


def resolve(
    pending: pd.DataFrame,
    prices: pd.DataFrame,
    sectors: Mapping[str, str],
    settings: Settings,
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Judge every pending outcome the prices allow; the others get the reason they wait."""
    resolved: list[dict[str, Any]] = []
    waiting: dict[int, str] = {}
    if pending.empty:
        return resolved, waiting
    calendar = pd.DatetimeIndex(np.sort(prices["date"].unique()))
    first = pd.Timestamp(pending["signal_date"].min())
    start = calendar[max(0, int(calendar.searchsorted(first)) - settings.outcomes.lookback_days)]
    window = prices[prices["date"] >= start]
    known = {s: sectors[s] for s in window["symbol"].unique() if s in sectors}
    labelled = window[window["symbol"].isin(list(known))]
    labels = make_labels(labelled, settings.labels, sectors=known).set_index(["symbol", "date"])
    if settings.outcomes.rule == "label":
        window = labelled
    by_symbol = {
        str(s): g.set_index("date")[["open", "high", "low", "close"]].sort_index()
        for s, g in window.groupby("symbol")
    }
    for row in pending.to_dict(orient="records"):
        oid, sym, h = int(row["id"]), str(row["symbol"]), int(row["hold_days"])
        day = pd.Timestamp(row["signal_date"])
        i = int(calendar.searchsorted(day))
        if i >= len(calendar) or calendar[i] != day:
            waiting[oid] = f"no market day: {day.date()} is not in the price calendar"
            continue
        if i + h >= len(calendar):
            waiting[oid] = (
                f"hold not over: {h} bar(s) needed after {day.date()}, "
                f"{len(calendar) - 1 - i} so far"
            )
            continue
        held = calendar[i + 1 : i + h + 1]
        bars = by_symbol.get(sym)
        got = bars.reindex(held) if bars is not None else None
        if got is None or got.isna().any(axis=None):
            n_missing = len(held) if got is None else int(got["close"].isna().sum())
            waiting[oid] = (
                f"missing prices: {sym} lacks {n_missing} of {h} held bar(s) "
                f"{held[0].date()}..{held[-1].date()} (delisted or halted?)"
            )
            continue
        column = f"label_{int(row['horizon'])}"
        value = labels[column].get((sym, day), pd.NA) if column in labels else pd.NA
        if pd.isna(value) and settings.outcomes.rule == "label":
            waiting[oid] = f"no label: {sym} {day.date()} (ATR warm-up or no sector peers)"
            continue
        realized = None if pd.isna(value) else int(value)
        resolved.append(judge(row, got, realized, settings))
    return resolved, waiting


def track_outcomes(
    settings: Settings,
    store: SignalStore | None = None,
    prices: pd.DataFrame | None = None,
    sectors: Mapping[str, str] | None = None,
    as_of: date | None = None,
) -> TrackResult:
    """Register newly issued signals, then resolve every pending one the prices allow.

    ``prices``/``sectors`` default to the clean store; ``as_of`` (default: the newest bar)
    hides later prices, which is how replay runs the tracker on a simulated day.
    """
    from turbomode.job_metrics import job_metrics

    with job_metrics("outcomes", settings.stores.pushgateway_url) as metrics:
        if prices is None or sectors is None:
            from turbomode.data.ingest import load_clean

            md = load_clean(settings)
            prices = md.prices if prices is None else prices
            sectors = md.universe.sector_map() if sectors is None else sectors
        day = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(prices["date"].max())
        prices = prices[prices["date"] <= day]
        store = store or SignalStore(settings.stores.signals_url)
        store.migrate()
        known = store.outcomes()
        since = pd.Timestamp(known["signal_date"].max()).date() if len(known) else None
        issued = [
            s for s in issued_signals(store, settings, since) if s["signal_date"] <= day.date()
        ]
        registered = store.register_outcomes(issued)
        pending = store.outcomes("pending")
        pending = pending[pending["signal_date"] <= day]
        resolved, waiting = resolve(pending, prices, sectors, settings)
        store.record_outcomes(resolved, waiting)
        frame = pd.DataFrame(resolved)
        metrics.rows.labels(stage="registered").inc(registered)
        metrics.rows.labels(stage="resolved").inc(len(resolved))
        metrics.rows.labels(stage="pending").inc(len(waiting))
        if len(frame):
            metrics.rows.labels(stage="correct").inc(int(frame["correct"].sum()))
        window = settings.outcomes.hit_rate_window_days
        rolling = rolling_hit_rate(store.outcomes(), day, window, settings.labels.horizons)
        for h, n, rate in zip(rolling.index, rolling["n"], rolling["hit_rate"], strict=True):
            metrics.gauge("turbomode_signal_outcomes_window").labels(horizon=str(h)).set(n)
            if n:  # no rate without outcomes: an absent series, not a false 0 % alarm
                metrics.gauge("turbomode_signal_hit_rate").labels(horizon=str(h)).set(rate)
    result = TrackResult(day.date(), registered, frame, waiting, rolling)
    event(
        log,
        "outcomes.tracked",
        as_of=str(result.as_of),
        registered=registered,
        resolved=result.n_resolved,
        pending=len(waiting),
        hit_rate=round(float(frame["correct"].mean()), 4) if len(frame) else None,
    )
    return result
