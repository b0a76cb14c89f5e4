"""Walk-forward signals: what the backtest trades, from models that never saw their test period.

History is cut into test periods (calendar years or quarters). For each period, one ensemble
per sector is trained on the rows whose labels were known on the last trading day *before*
the period (a label at t needs the close of t + h, so the purge is built in), over a rolling
window of ``train_days`` trading days; it then scores every (symbol, day) of the period from
features computed point-in-time (row t uses data ≤ t). Each night's scores become signals by
the scan's own rules (:func:`turbomode.signals.rules.entry_thresholds` and
:func:`turbomode.signals.rules.night_candidates`), so the backtest trades what the nightly scan
would have issued, night by night.

Two books come out of one pass. The **ungated** book trades every period's models. The
**gated** book trades only models the promotion gate accepts (:func:`turbomode.models.gate.decide`,
the platform's own decision): at each period and sector a candidate is fitted on the same
window minus its last ``gate_days`` labelled days (purged by the horizon), and judged on those
days beside the baselines and the model the gated book trades now, exactly as a retrain is
judged. Accepted, the period's model (refitted on the whole window, the one the ungated book
trades) becomes the gated book's model for the sector; refused, the previous accepted model
keeps trading, and a sector never accepted trades nothing — as production does.

Only point-in-time index members are scored (:meth:`Universe.point_in_time`, when the data has
membership intervals): the nightly cross-section, and so the signals, are those of the index
of the day, and the gate's window is judged on the members of each of its days.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError
from turbomode.logs import event
from turbomode.signals.scan import ATR_FEATURE

if TYPE_CHECKING:
    from turbomode.models.ensemble import StackedEnsemble
    from turbomode.models.gate import GateReport

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
    """The signals of every test period, and how each period's models were trained; with the
    gate, ``gated`` holds the signals of the models it accepted (see the module docstring)."""

    signals: pd.DataFrame
    periods: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0
    gated: pd.DataFrame | None = None


@dataclass
class _Production:
    """The model the gated book trades for one sector, and the period it was trained for."""

    model: Any
    period: str


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
    from turbomode.signals.rules import night_candidates

    nights = scores.groupby(["date", "horizon"], sort=True)
    parts = [night_candidates(night, settings.signals) for _key, night in nights]
    if not parts:
        return pd.DataFrame(columns=SIGNAL_FIELDS)
    out = pd.concat(parts, ignore_index=True)
    # Strength on the Smart Scanner's 0–100 scale: the model's probability of the side.
    out["strength"] = 100.0 * out["confidence"]
    return out[SIGNAL_FIELDS].sort_values(["date", "symbol"]).reset_index(drop=True)


def _fit(
    settings: Settings,
    names: list[str],
    horizon: int,
    threads: int,
    rows: pd.DataFrame,
    y: np.ndarray,
) -> StackedEnsemble:
    """A period's (or a gate candidate's) ensemble on ``rows``, as configured: its inputs
    include symbol and date when sequence learners read windows."""
    from turbomode.models.ensemble import StackedEnsemble
    from turbomode.models.train import input_columns

    return StackedEnsemble(
        names,
        horizon,
        settings.models,
        threads=threads,
        device=settings.compute.device,
        inference=settings.compute.inference,
    ).fit(rows[input_columns(settings.models, names)], y, rows["date"].to_numpy())


def _scores(
    model: Any,
    rows: pd.DataFrame,
    names: list[str],
    sector: str,
    horizon: int,
    period: str,
    history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The period's probabilities; sequence learners' windows reach back into ``history``
    (the sector's feature rows, members or not), only ever to rows dated ≤ their own."""
    if getattr(model, "window_days", 0):
        cols = [*names, "symbol", "date"]
        proba = model.predict_proba(rows[cols], history=history)
    else:
        proba = model.predict_proba(rows[names])
    return pd.DataFrame(
        {
            "date": rows["date"].to_numpy(),
            "symbol": rows["symbol"].to_numpy(),
            "sector": sector,
            "horizon": horizon,
            "p_sell": proba[:, 0],
            "p_hold": proba[:, 1],
            "p_buy": proba[:, 2],
            "period": period,
        }
    )


def _history(
    features: pd.DataFrame,
    sectors: dict[str, str],
    sector: str,
    first: pd.Timestamp,
    last: pd.Timestamp,
    cols: list[str],
) -> pd.DataFrame | None:
    """The sector's rows up to the period's end, from a year before it: what the windows of
    the period's rows read (None when the model reads no windows)."""
    if "symbol" not in cols:
        return None
    rows = features[
        (features["date"] >= first - pd.Timedelta(days=366)) & (features["date"] <= last)
    ]
    return rows.loc[rows["symbol"].map(sectors) == sector, cols]


def gate_step(
    settings: Settings,
    train: pd.DataFrame,
    horizon: int,
    names: list[str],
    gate_days: int,
    production: Any | None,
    members: Callable[[pd.DataFrame], pd.DataFrame],
    threads: int = 1,
    look: int = 1,
) -> GateReport | str:
    """The gate's decision on one sector's window ``train`` (rows with labels known before
    the period): a candidate fitted before the last ``gate_days`` labelled days (purged by
    the horizon) against the baselines and ``production`` on those days' index members.
    A string says why no candidate could be judged (the gated book then keeps its model).
    ``look`` is the sector's decision count in this backtest, this one included: the gate
    spends alpha over them as it does over a deployment's monthly retrains."""
    from turbomode.models.gate import decide
    from turbomode.models.train import evaluate_rows, gate_evidence
    from turbomode.models.validation import out_of_time_split

    days = np.unique(train["date"].to_numpy())
    if len(days) <= gate_days:
        return f"{len(days)} labelled days: the gate window needs {gate_days} and more"
    try:
        tr_idx, te_idx = out_of_time_split(train["date"].to_numpy(), horizon, days[-gate_days])
    except ValueError as exc:
        return str(exc)
    tr, te = train.iloc[tr_idx], members(train.iloc[te_idx])
    y = tr[f"label_{horizon}"].to_numpy(dtype=np.int64)
    if len(np.unique(y)) < 3 or te.empty:
        return "a class is missing from the candidate's labels, or the window has no members"
    candidate = _fit(settings, names, horizon, threads, tr, y)
    evaluation, baselines = gate_evidence(candidate, tr, te, horizon, names)
    prod = None if production is None else evaluate_rows(production, te, horizon, names, history=tr)
    return decide(evaluation, baselines, prod, settings.gate, look=look)


def walk_forward_signals(
    settings: Settings,
    md: MarketData,
    start: date,
    end: date,
    horizon: int | None = None,
    period: Period = "year",
    train_days: int | None = 756,
    sectors: Sequence[str] | None = None,
    on_period: Callable[[str], None] | None = None,
    gate_days: int | None = None,
) -> WalkForwardResult:
    """Train per period and sector on what was known before the period; signal every night.

    ``train_days`` bounds each training window (default about three years; None: all
    history). ``gate_days`` (e.g. 126) adds the gated book, judged on that many days at the
    end of each window (None: the ungated book only). Nothing is written.
    """
    from turbomode.feature_store import model_features
    from turbomode.models.train import input_columns
    from turbomode.outcomes.history import MarketHistory

    horizon = settings.horizon_or_default(horizon)
    if horizon not in settings.labels.horizons:
        raise TurboModeError(f"horizon {horizon} is not among labels.horizons")
    if gate_days is not None and gate_days < settings.gate.min_days:
        raise TurboModeError(
            f"gate_days {gate_days} is below the gate's min_days {settings.gate.min_days}: "
            "every candidate would be refused"
        )
    world = MarketHistory(settings, md, sectors, train_days=train_days)
    members = world.md.universe.point_in_time
    threads = max(1, int(settings.compute.cpus_per_task))
    note = on_period or (lambda _msg: None)
    label, names = f"label_{horizon}", model_features(settings)  # what the platform trains on
    cols = input_columns(settings.models, names)  # symbol and date too for sequence learners
    scored: list[pd.DataFrame] = []
    gated: list[pd.DataFrame] = []
    production: dict[str, _Production] = {}
    looks: dict[str, int] = {}
    periods: list[dict[str, Any]] = []
    for first, last in period_bounds(world.calendar, start, end, period):
        before = world.calendar[world.calendar < first]
        if len(before) == 0:
            raise TurboModeError(f"no history before {first.date()} to train on")
        known = before[-1]
        t0 = time.perf_counter()
        rows = world.training_rows(known)
        rows = rows[rows[label].notna()]
        window = members(
            world.features[(world.features["date"] >= first) & (world.features["date"] <= last)]
        )
        name = f"{first.date()}..{last.date()}"
        info: dict[str, Any] = {
            "period": name,
            "trained_on": f"{rows['date'].min().date()}..{known.date()}" if len(rows) else None,
            "sectors": {},
        }
        if gate_days is not None:
            info["gate"] = {}
        for sector, train in rows.groupby("sector", sort=True):
            sector = str(sector)
            todo = window[window["symbol"].map(world.sector_map) == sector]
            if todo.empty:
                continue
            history = _history(world.features, world.sector_map, sector, first, last, cols)
            y = train[label].to_numpy(dtype=np.int64)
            ens = None
            if len(np.unique(y)) < 3:
                info["sectors"][sector] = "skipped: a class is missing from its labels"
            else:
                note(f"{name} {sector}: fit on {len(train):,} rows")
                ens = _fit(settings, names, horizon, threads, train, y)
                scored.append(_scores(ens, todo, names, sector, horizon, name, history))
                info["sectors"][sector] = len(train)
            if gate_days is None:
                continue
            held = production.get(sector)
            report = gate_step(
                settings,
                train,
                horizon,
                names,
                gate_days,
                held.model if held else None,
                members,
                threads,
                look=looks.get(sector, 0) + 1,
            )
            if not isinstance(report, str):
                looks[sector] = looks.get(sector, 0) + 1
            if not isinstance(report, str) and report.promoted and ens is not None:
                production[sector] = held = _Production(ens, name)
            info["gate"][sector] = {
                "decision": "not judged" if isinstance(report, str) else report.decision,
                "reason": report if isinstance(report, str) else report.reason,
                "look": None if isinstance(report, str) else looks[sector],
                "trades": held.period if held else None,
            }
            if held is not None:
                gated.append(
                    scored[-1]
                    if held.period == name
                    else _scores(held.model, todo, names, sector, horizon, name, history)
                )
        info["seconds"] = round(time.perf_counter() - t0, 1)
        periods.append(info)
        event(log, "walkforward.period", **{k: v for k, v in info.items() if k != "sectors"})
    if not scored:
        raise TurboModeError("no (symbol, day) could be scored in the test periods")
    scores = _tradable(pd.concat(scored, ignore_index=True), md, world)
    book = None
    if gate_days is not None:
        book = (
            nightly_signals(_tradable(pd.concat(gated, ignore_index=True), md, world), settings)
            if gated
            else pd.DataFrame(columns=SIGNAL_FIELDS)
        )
    return WalkForwardResult(nightly_signals(scores, settings), periods, len(scores), book)


def _tradable(scores: pd.DataFrame, md: MarketData, world: Any) -> pd.DataFrame:
    """Scores with the day's close, ATR in price and cap class; rows without a finite close
    or a positive ATR cannot size a position and are dropped."""
    bars = md.prices[["symbol", "date", "close"]].assign(date=lambda f: pd.to_datetime(f["date"]))
    atr = world.features[["symbol", "date", ATR_FEATURE]]
    scores = scores.merge(bars, on=["symbol", "date"], how="left").merge(
        atr, on=["symbol", "date"], how="left"
    )
    scores["atr"] = scores.pop(ATR_FEATURE) * scores["close"]
    scores = scores[np.isfinite(scores["close"]) & (scores["atr"] > 0)]  # NaN > 0 is False
    caps = world.md.universe.members.set_index("symbol")["cap_class"]
    scores["cap_class"] = scores["symbol"].map(caps).fillna("unknown")
    return scores
