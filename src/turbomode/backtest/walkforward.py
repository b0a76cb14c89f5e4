"""Walk-forward signals: what the backtest trades, from models that never saw their test period.

History is cut into test periods (calendar years or quarters). For each period, one ensemble
per sector is trained on the rows whose labels were known on the last trading day *before*
the period (a label at t needs the close of t + h, so the purge is built in), over a rolling
window of ``train_days`` trading days; it then scores every (symbol, day) of the period from
features computed point-in-time (row t uses data ≤ t). Each night's scores become signals by
the scan's own rules (:func:`turbomode.signals.rules.threshold_for_quantile` and
:func:`turbomode.signals.rules.entry_candidates`), so the backtest trades what the nightly scan
would have issued, night by night.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.logs import event
from turbomode.signals.scan import ATR_FEATURE

log = logging.getLogger("turbomode.backtest.walkforward")

Period = Literal["year", "quarter"]
SIGNAL_FIELDS = [
    "date",
    "symbol",
    "sector",
    "horizon",
    "side",
    "p_buy",
    "p_hold",
    "p_sell",
    "confidence",
    "strength",
    "close",
    "atr",
    "entry_low",
    "entry_high",
    "period",
]


@dataclass
class WalkForwardResult:
    """The signals of every test period, and how each period's models were trained."""

    signals: pd.DataFrame
    periods: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0


def period_bounds(
    calendar: pd.DatetimeIndex, start: date, end: date, period: Period = "year"
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) trading day of each calendar year or quarter within [start, end]."""
    days = calendar[(calendar >= pd.Timestamp(start)) & (calendar <= pd.Timestamp(end))]
    if len(days) == 0:
        raise TurboModeError(f"no trading days between {start} and {end} in the data")
    keys = days.year if period == "year" else days.year * 10 + days.quarter
    out = []
    for key in pd.unique(keys):
        chunk = days[keys == key]
        out.append((chunk[0], chunk[-1]))
    return out


def nightly_signals(scores: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """Each night's scores through the scan's entry rules (fixed or quantile thresholds)."""
    from turbomode.signals.rules import entry_candidates, quantile_thresholds

    sig = settings.signals
    parts = []
    for (_day, _h), night in scores.groupby(["date", "horizon"], sort=True):
        if sig.threshold_mode == "quantile":
            limits = quantile_thresholds(night, sig)
            parts.append(
                entry_candidates(
                    night,
                    sig,
                    buy_threshold=limits["buy"],
                    sell_threshold=limits["sell"],
                    on="lift",
                )
            )
        else:
            parts.append(entry_candidates(night, sig))
    if not parts:
        return pd.DataFrame(columns=SIGNAL_FIELDS)
    out = pd.concat(parts, ignore_index=True)
    # Strength on the Smart Scanner's 0–100 scale: the model's probability of the side.
    out["strength"] = 100.0 * out["confidence"]
    return out[SIGNAL_FIELDS].sort_values(["date", "symbol"]).reset_index(drop=True)


def walk_forward_signals(
    settings: Settings,
    md: MarketData,
    start: date,
    end: date,
    work_dir: Path | str,
    horizon: int = 5,
    period: Period = "year",
    train_days: int | None = 756,
    sectors: Sequence[str] | None = None,
    on_period: Callable[[str], None] | None = None,
) -> WalkForwardResult:
    """Train per period and sector on what was known before the period; signal every night.

    ``train_days`` bounds each training window (default about three years; None: all
    history). ``work_dir`` holds nothing the caller needs afterwards but must be fresh.
    """
    from turbomode.models.ensemble import StackedEnsemble
    from turbomode.outcomes.replay import Replay

    if horizon not in settings.labels.horizons:
        raise TurboModeError(f"horizon {horizon} is not among labels.horizons")
    world = Replay(settings, md, Path(work_dir), sectors, use_ray=False, train_days=train_days)
    threads = max(1, int(settings.compute.cpus_per_task))
    note = on_period or (lambda _msg: None)
    label, names = f"label_{horizon}", world.names
    scored: list[pd.DataFrame] = []
    periods: list[dict[str, Any]] = []
    for first, last in period_bounds(world.calendar, start, end, period):
        before = world.calendar[world.calendar < first]
        if len(before) == 0:
            raise TurboModeError(f"no history before {first.date()} to train on")
        known = before[-1]
        t0 = time.perf_counter()
        rows = world.training_rows(known)
        rows = rows[rows[label].notna()]
        window = world.features[
            (world.features["date"] >= first) & (world.features["date"] <= last)
        ]
        info: dict[str, Any] = {
            "period": f"{first.date()}..{last.date()}",
            "trained_on": f"{rows['date'].min().date()}..{known.date()}" if len(rows) else None,
            "sectors": {},
        }
        for sector, train in rows.groupby("sector", sort=True):
            todo = window[window["symbol"].map(world.sector_map) == sector]
            if todo.empty:
                continue
            y = train[label].to_numpy(dtype=np.int64)
            if len(np.unique(y)) < 3:
                info["sectors"][sector] = "skipped: a class is missing from its labels"
                continue
            note(f"{info['period']} {sector}: fit on {len(train):,} rows")
            ens = StackedEnsemble(
                names, horizon, settings.models, threads=threads, device=settings.compute.device
            ).fit(train[names], y, train["date"].to_numpy())
            proba = ens.predict_proba(todo[names])
            scored.append(
                pd.DataFrame(
                    {
                        "date": todo["date"].to_numpy(),
                        "symbol": todo["symbol"].to_numpy(),
                        "sector": sector,
                        "horizon": horizon,
                        "p_sell": proba[:, 0],
                        "p_hold": proba[:, 1],
                        "p_buy": proba[:, 2],
                        "period": info["period"],
                    }
                )
            )
            info["sectors"][str(sector)] = len(train)
        info["seconds"] = round(time.perf_counter() - t0, 1)
        periods.append(info)
        event(log, "walkforward.period", **{k: v for k, v in info.items() if k != "sectors"})
    if not scored:
        raise TurboModeError("no (symbol, day) could be scored in the test periods")
    scores = pd.concat(scored, ignore_index=True)
    bars = md.prices[["symbol", "date", "close"]].assign(date=lambda f: pd.to_datetime(f["date"]))
    atr = world.features[["symbol", "date", ATR_FEATURE]]
    scores = scores.merge(bars, on=["symbol", "date"], how="left").merge(
        atr, on=["symbol", "date"], how="left"
    )
    scores["atr"] = scores.pop(ATR_FEATURE) * scores["close"]
    scores = scores[np.isfinite(scores["close"]) & (scores["atr"] > 0)]  # NaN > 0 is False
    caps = world.md.universe.members.set_index("symbol")["cap_class"]
    scores["cap_class"] = scores["symbol"].map(caps).fillna("unknown")
    signals = nightly_signals(scores, settings)
    return WalkForwardResult(signals, periods, len(scores))
