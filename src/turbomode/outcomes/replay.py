"""Replay: the whole loop driven day by day over history with a simulated clock.

For every trading day d in [start, end], in the order the schedule runs them:

1. the nightly scan of d: features of d (computed point-in-time: row t uses data ≤ t), the
   production models, d's bar — the same :func:`turbomode.signals.scan.run_scan`;
2. outcome tracking as of d (prices ≤ d);
3. after the last trading day of a week: training samples (features as of each signal date);
4. after the last trading day of a month: the retrainer, on labels known by d (a label at t
   needs the close of t + h ≤ d) plus the samples.

Before the first day an initial model is trained on what was known the day before ``start``
and gated like any other (a sector whose candidate fails has no production model, and the
scan says so). Everything is written under its own work directory — a signals store and a
model registry of the replay's own — so a replay never touches production.

The days run on a :class:`~turbomode.outcomes.history.MarketHistory`: features computed once
over the whole clean store, point in time, and the labels known on each day.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.io import atomic_write_json, atomic_write_text
from turbomode.logs import event
from turbomode.outcomes.history import MarketHistory

log = logging.getLogger("turbomode.outcomes.replay")

MONTH_COLUMNS = [
    "month",
    "signals",
    "outcomes",
    "hit_rate",
    "avg_return",
    "retrain",
    "promoted",
    "refused",
    "production_models",
]


@dataclass
class ReplayResult:
    """The month-by-month table and where it was written."""

    months: pd.DataFrame
    days: int
    retrains: list[dict[str, Any]] = field(default_factory=list)
    initial: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def replay_settings(settings: Settings, work_dir: Path) -> Settings:
    """The user's settings with every store moved under ``work_dir`` (production untouched)."""
    work_dir = work_dir.resolve()
    return settings.model_copy(
        update={
            "data": settings.data.model_copy(update={"data_dir": work_dir}),
            "stores": settings.stores.model_copy(
                update={
                    "signals_url": f"sqlite:///{work_dir / 'signals.db'}",
                    "model_registry_uri": str(work_dir / "models"),
                    "pushgateway_url": None,
                }
            ),
        }
    )


class Replay(MarketHistory):
    """The replay's world: the market history (:class:`MarketHistory`) with the settings moved
    under the work directory and a signals store of its own there."""

    def __init__(
        self,
        settings: Settings,
        md: MarketData,
        work_dir: Path,
        sectors: Sequence[str] | None = None,
        use_ray: bool = False,
        train_days: int | None = None,
    ) -> None:
        from turbomode.store import SignalStore

        super().__init__(replay_settings(settings, work_dir), md, sectors, train_days)
        self.use_ray = use_ray
        self.store = SignalStore(self.settings.stores.signals_url)
        self.store.migrate()


def run_replay(
    settings: Settings,
    start: date,
    end: date,
    work_dir: Path | str,
    sectors: Sequence[str] | None = None,
    use_ray: bool = False,
    md: MarketData | None = None,
    on_day: Callable[[date, str], None] | None = None,
    train_days: int | None = None,
) -> ReplayResult:
    """Drive scan → outcomes → weekly samples → monthly retrain over [start, end].

    ``train_days`` trains every model on a rolling window of that many trading days (default:
    all history known on the day).
    """
    from turbomode.data.ingest import load_clean
    from turbomode.models.pipeline import run_training
    from turbomode.models.registry import ModelRegistry
    from turbomode.outcomes.retrain import retrain
    from turbomode.outcomes.samples import frame_lookup, generate_samples
    from turbomode.outcomes.track import track_outcomes
    from turbomode.signals.scan import ModelCache, run_scan

    work = Path(work_dir)
    if work.exists() and any(work.iterdir()):
        raise FileExistsError(f"replay work directory {work} is not empty: give a fresh one")
    work.mkdir(parents=True, exist_ok=True)
    world = Replay(settings, md or load_clean(settings), work, sectors, use_ray, train_days)
    rs = world.settings
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    days = world.calendar[(world.calendar >= s) & (world.calendar <= e)]
    if len(days) == 0:
        raise ValueError(f"no trading days between {start} and {end} in the data")
    before = world.calendar[world.calendar < days[0]]
    if len(before) == 0:
        raise ValueError(f"no history before {days[0].date()} to train the first models on")
    note = on_day or (lambda _d, _s: None)
    registry = ModelRegistry(rs.stores.model_registry_uri, family="turbomode")
    lookup = frame_lookup(world.features, world.names)

    note(before[-1].date(), "initial training")
    first = run_training(
        rs, sectors=world.sectors, use_ray=use_ray, data=world.training_rows(before[-1])
    )
    initial = {
        "as_of": str(before[-1].date()),
        "promoted": sorted(k for k, g in first.gates.items() if g.promoted),
        "refused": sorted(k for k, g in first.gates.items() if not g.promoted),
    }
    models = ModelCache(
        registry, threads=max(1, int(rs.compute.cpus_per_task)), inference=rs.compute.inference
    )
    retrains: list[dict[str, Any]] = []
    for i, day in enumerate(days):
        nxt = days[i + 1] if i + 1 < len(days) else None
        note(day.date(), "scan")
        run_scan(
            rs,
            store=world.store,
            models=models,
            scan_date=day.date(),
            vectors=world.vectors(day),
            market=world.market_until(day),
            measure_drift=False,  # the replay measures outcomes, not the market's drift
        )
        track_outcomes(rs, world.store, world.prices_until(day), world.sector_map, as_of=day.date())
        week_ends = nxt is None or nxt.isocalendar()[:2] != day.isocalendar()[:2]
        month_ends = nxt is None or (nxt.year, nxt.month) != (day.year, day.month)
        if week_ends:
            note(day.date(), "samples")
            generate_samples(rs, world.store, lookup=lookup, names=world.names)
        if month_ends and nxt is not None:
            note(day.date(), "retrain")
            res = _retrain(rs, world, day, retrain, use_ray)
            retrains.append({"date": str(day.date()), **res})
    months = month_table(world.store, retrains, initial, days)
    result = ReplayResult(months, len(days), retrains, initial)
    result.files = write_replay(result, work, start, end)
    event(log, "replay.done", days=len(days), months=len(months), retrains=len(retrains))
    return result


def _retrain(
    rs: Settings, world: Replay, day: pd.Timestamp, retrain: Callable[..., Any], use_ray: bool
) -> dict[str, Any]:
    res = retrain(
        rs,
        store=world.store,
        data=lambda: world.training_rows(day),
        use_ray=use_ray,
        sectors=world.sectors,
    )
    return {
        "status": res.status,
        "new_samples": res.n_new_samples,
        "promoted": list(res.promoted),
        "refused": list(res.refused),
        "production_models": sum(
            v is not None for v in res.report.get("production_after", {}).values()
        )
        if res.report.get("production_after")
        else None,
    }


def month_table(
    store: Any, retrains: list[dict[str, Any]], initial: dict[str, Any], days: pd.DatetimeIndex
) -> pd.DataFrame:
    """Per month of the replay: signals issued, outcomes (by the month the signal was made),
    hit rate and mean side return of those signals, the retrain's decision and counts."""
    months = pd.PeriodIndex(days, freq="M").unique()
    hist = store.signal_history()
    issued = hist[hist["scan_date"] == hist["signal_date"]] if len(hist) else hist
    outs = store.outcomes("resolved")
    production = len(initial.get("promoted", []))
    rows = []
    for m in months:
        sig_m = (
            issued[pd.PeriodIndex(issued["signal_date"], freq="M") == m] if len(issued) else issued
        )
        out_m = outs[pd.PeriodIndex(outs["signal_date"], freq="M") == m] if len(outs) else outs
        rt = [r for r in retrains if pd.Period(r["date"], freq="M") == m]
        r = rt[-1] if rt else None
        if r is not None and r.get("production_models") is not None:
            production = int(r["production_models"])
        rows.append(
            {
                "month": str(m),
                "signals": len(sig_m),
                "outcomes": len(out_m),
                "hit_rate": float(out_m["correct"].astype(bool).mean()) if len(out_m) else None,
                "avg_return": float(out_m["side_return"].mean()) if len(out_m) else None,
                "retrain": r["status"] if r else "-",
                "promoted": len(r["promoted"]) if r else 0,
                "refused": len(r["refused"]) if r else 0,
                "production_models": production,
            }
        )
    return pd.DataFrame(rows, columns=MONTH_COLUMNS)


def write_replay(result: ReplayResult, work: Path, start: date, end: date) -> dict[str, str]:
    """``replay.json`` and ``replay.md`` in the work directory."""
    from turbomode.models import evaluation as mx

    doc = {
        "start": str(start),
        "end": str(end),
        "days": result.days,
        "initial": result.initial,
        "retrains": result.retrains,
        "months": mx.to_jsonable(result.months.to_dict(orient="records")),
    }
    atomic_write_json(doc, work / "replay.json")
    total = result.months
    n_out = int(total["outcomes"].sum())
    weighted = (
        (total["hit_rate"].fillna(0) * total["outcomes"]).sum() / n_out if n_out else float("nan")
    )
    md = [
        f"# Replay {start} → {end}",
        "",
        f"{result.days} trading days; initial models promoted: {len(result.initial['promoted'])}, "
        f"refused: {len(result.initial['refused'])}; {int(total['signals'].sum())} signals, "
        f"{n_out} outcomes, hit rate {weighted:.3f}.",
        "",
        mx.to_markdown(total),
        "",
    ]
    atomic_write_text("\n".join(md), work / "replay.md")
    return {"json": str(work / "replay.json"), "markdown": str(work / "replay.md")}
