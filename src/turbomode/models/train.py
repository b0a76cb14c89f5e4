"""Train every (sector, horizon) ensemble: one task each, in parallel on Ray.

The training set comes from Feast point-in-time (features as they were on each date) joined
to horizon labels. Each task fits a :class:`StackedEnsemble` on rows before an out-of-time
window (purged by the horizon), then scores the window beside the baselines on the same rows.
One failing task is reported and never sinks the others. ``use_ray=False`` runs the same
tasks one after another in this process (the benchmark's baseline, and a debugging aid).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode.cluster import ray_session
from turbomode.config import GICS_SECTORS, ModelSettings, Settings
from turbomode.errors import TurboModeError
from turbomode.logs import event
from turbomode.models import evaluation as mx
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.ranker import RankEnsemble, rank_target
from turbomode.models.validation import out_of_time_split

log = logging.getLogger("turbomode.models.train")
MOMENTUM_FEATURE = "ret_5"


@dataclass(frozen=True)
class TrainTask:
    sector: str
    horizon: int

    @property
    def key(self) -> str:
        return f"{self.sector}/{self.horizon}d"


@dataclass
class TaskResult:
    """What one (sector, horizon) task produced, or why it failed."""

    sector: str
    horizon: int
    ok: bool
    error: str | None = None
    model_dir: str | None = None
    n_train: int = 0
    n_test: int = 0
    test_start: str | None = None
    test_end: str | None = None
    train_start: str | None = None
    train_end: str | None = None
    evaluation: dict[str, Any] | None = None
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    learners: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each base learner's own out-of-time evaluation on the same rows (no daily series)."""
    dropped: dict[str, str] = field(default_factory=dict)
    """Base learners dropped from the ensemble, and why."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage and per base learner (``oof_<name>``: its fold fits)."""

    @property
    def key(self) -> str:
        return f"{self.sector}/{self.horizon}d"


def all_tasks(settings: Settings, sectors: Sequence[str] | None = None) -> list[TrainTask]:
    """11 sectors × the configured horizons (33 by default)."""
    chosen = list(sectors) if sectors is not None else list(GICS_SECTORS)
    unknown = [s for s in chosen if s not in GICS_SECTORS]
    if unknown:
        raise TurboModeError(f"unknown sector(s) {unknown}; expected GICS names {GICS_SECTORS}")
    return [TrainTask(s, h) for s in chosen for h in settings.labels.horizons]


def training_set(settings: Settings, profile: str | None = None) -> pd.DataFrame:
    """Labels from the clean store joined point-in-time to the models' features through Feast."""
    from turbomode import feature_store as fs
    from turbomode.data.ingest import load_clean
    from turbomode.labels import make_labels

    md = load_clean(settings)
    sectors = md.universe.sector_map()
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    labels["sector"] = labels["symbol"].map(sectors)
    store = fs.open_store(settings, profile)  # type: ignore[arg-type]
    keep = [c for c in labels.columns if c.startswith(("label_", "fwd_ret_"))]
    entities = labels[["symbol", "date", "sector", *keep]]
    entities = entities[entities[[c for c in keep if c.startswith("label_")]].notna().any(axis=1)]
    return fs.training_frame(store, entities.reset_index(drop=True), fs.model_features(settings))


def oot_window_start(dates: pd.Series, settings: Settings) -> pd.Timestamp:
    """The configured out-of-time start, or the date leaving ``test_fraction`` of days after it."""
    if settings.models.test_start:
        return pd.Timestamp(settings.models.test_start)
    days = np.sort(pd.to_datetime(dates).unique())
    return pd.Timestamp(days[int(len(days) * (1 - settings.models.test_fraction))])


def split_rows(
    rows: pd.DataFrame, horizon: int, test_start: str, settings: Settings, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled rows before the out-of-time window (purged by the horizon, limited to
    ``models.train_years``, every ``models.date_step``-th date for the rank model) and the
    window's rows, both sorted by (date, symbol).

    Works on row positions and copies each part once: a pooled training set is ~1.5 M rows
    × 200 features, and every intermediate copy costs a gigabyte."""
    label = f"label_{horizon}"
    keep = np.flatnonzero(rows[label].notna().to_numpy())
    if len(keep) == 0:
        raise TurboModeError(f"{what}: no labelled rows")
    dates = rows["date"].to_numpy()[keep]
    symbols = pd.factorize(rows["symbol"].to_numpy()[keep], sort=True)[0]
    order = np.lexsort((symbols, dates))
    keep, dates = keep[order], dates[order]
    start = pd.Timestamp(test_start)
    train_idx, test_idx = out_of_time_split(dates, horizon, start)
    tr_pos, tr_dates = keep[train_idx], dates[train_idx]
    years = settings.models.train_years
    if years is not None:
        recent = tr_dates >= np.datetime64(start - pd.Timedelta(days=round(365.25 * years)))
        tr_pos, tr_dates = tr_pos[recent], tr_dates[recent]
    step = settings.models.date_step
    if settings.models.target == "rank" and step > 1 and len(tr_pos):
        days = np.unique(tr_dates)[::-1][::step]  # the newest training day always kept
        tr_pos = tr_pos[np.isin(tr_dates, days)]
    return rows.iloc[tr_pos], rows.iloc[keep[test_idx]]


def input_columns(models: ModelSettings | None, features: list[str]) -> list[str]:
    """The columns a model reads: its features, plus symbol and date when a sequence learner
    builds its windows from them."""
    seq = {"lstm", "transformer"} & set(models.neural_learners if models else [])
    return [*features, "symbol", "date"] if seq else features


def model_rows(
    model: Any, rows: pd.DataFrame, features: list[str], history: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``rows`` as the model reads them. For sequence learners the last ``window`` days of
    ``history`` (earlier rows: the training set before a test window) go first, so the first
    test days get full windows; :func:`predictions` drops them again."""
    cols = input_columns(getattr(model, "settings", None), features)
    if history is None or cols == features or history.empty:
        return rows[cols]
    window = int(model.settings.neural.get("window", 10))
    earlier = np.sort(history.loc[history["date"] < rows["date"].min(), "date"].unique())
    before = history[history["date"].isin(earlier[len(earlier) - (window - 1) :])]
    return pd.concat([before[cols], rows[cols]], ignore_index=True)


def predictions(
    model: Any, rows: pd.DataFrame, features: list[str], history: pd.DataFrame | None = None
) -> dict[str, np.ndarray]:
    """The model's probabilities on ``rows`` (``"model"``) and, for a stacked ensemble, each
    base learner's (by name)."""
    X = model_rows(model, rows, features, history)
    skip = len(X) - len(rows)
    out = {"model": np.asarray(model.predict_proba(X))[skip:]}
    if hasattr(model, "learner_probabilities"):
        out |= {n: p[skip:] for n, p in model.learner_probabilities(X).items()}
    return out


def fit_model(
    tr: pd.DataFrame, horizon: int, features: list[str], settings: Settings, threads: int
) -> StackedEnsemble | RankEnsemble:
    """The configured model kind (``models.target``) fitted on training rows."""
    y_tr = tr[f"label_{horizon}"].to_numpy(dtype=np.int64)
    dates = tr["date"].to_numpy()
    device = settings.compute.device
    if settings.models.target == "rank":
        target = rank_target(tr[f"fwd_ret_{horizon}"].to_numpy(), dates, tr["sector"])
        return RankEnsemble(features, horizon, settings.models, threads, device).fit(
            tr[features], y_tr, dates, target
        )
    return StackedEnsemble(features, horizon, settings.models, threads, device).fit(
        tr[input_columns(settings.models, features)], y_tr, dates
    )


def evaluate_rows(
    model: Any,
    rows: pd.DataFrame,
    horizon: int,
    features: list[str],
    history: pd.DataFrame | None = None,
    proba: np.ndarray | None = None,
) -> dict[str, Any]:
    """A fitted model's out-of-time evaluation on ``rows``, with the daily series the gate's
    paired tests need (:func:`turbomode.models.gate.decide`)."""
    if proba is None:
        proba = predictions(model, rows, features, history)["model"]
    return mx.evaluate(
        rows[f"label_{horizon}"].to_numpy(dtype=np.int64),
        proba,
        rows[f"fwd_ret_{horizon}"].to_numpy(),
        rows["date"].to_numpy(),
        include_daily=True,
        decision_weights=getattr(model, "decision_weights", None),
    )


def learner_evaluations(
    model: Any, probas: dict[str, np.ndarray], rows: pd.DataFrame, horizon: int
) -> dict[str, dict[str, Any]]:
    """Each base learner's out-of-time evaluation on ``rows`` (NaN probabilities: a learner
    that failed to load is left out)."""
    out = {}
    for name, p in probas.items():
        if name == "model" or not np.isfinite(p).all():
            continue
        ev = mx.evaluate(
            rows[f"label_{horizon}"].to_numpy(dtype=np.int64),
            p,
            rows[f"fwd_ret_{horizon}"].to_numpy(),
            rows["date"].to_numpy(),
        )
        out[name] = {k: v for k, v in ev.items() if k != "daily"}
    return out


def gate_evidence(
    model: Any,
    tr: pd.DataFrame,
    te: pd.DataFrame,
    horizon: int,
    features: list[str],
    proba: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The candidate's evaluation on the window ``te`` (``proba``: its probabilities there,
    if already predicted) and each baseline's on the same rows (class priors from the training
    rows ``tr``): what the gate compares."""
    label, ret = f"label_{horizon}", f"fwd_ret_{horizon}"
    y_tr = tr[label].to_numpy(dtype=np.int64)
    y_te = te[label].to_numpy(dtype=np.int64)
    fwd, d_te = te[ret].to_numpy(), te["date"].to_numpy()
    past = te[MOMENTUM_FEATURE].to_numpy() if MOMENTUM_FEATURE in te else np.zeros(len(te))
    baselines = {
        "majority": mx.evaluate(
            y_te, mx.majority_baseline(y_tr, len(te)), fwd, d_te, include_daily=True
        ),
        "prior": mx.evaluate(y_te, mx.prior_baseline(y_tr, len(te)), fwd, d_te, include_daily=True),
        "momentum": mx.evaluate(y_te, mx.momentum_baseline(past), fwd, d_te, include_daily=True),
    }
    return evaluate_rows(model, te, horizon, features, history=tr, proba=proba), baselines


def evaluate_task(
    task: TrainTask,
    model: StackedEnsemble | RankEnsemble,
    tr: pd.DataFrame,
    te: pd.DataFrame,
    features: list[str],
    model_dir: Path,
    seconds: float,
) -> TaskResult:
    """Score one task's out-of-time rows beside the baselines on the same rows."""
    if te.empty:
        raise TurboModeError(f"{task.key}: no rows in the out-of-time window")
    probas = predictions(model, te, features, history=tr)
    evaluation, baselines = gate_evidence(model, tr, te, task.horizon, features, probas["model"])
    learners = learner_evaluations(model, probas, te, task.horizon)
    return TaskResult(
        sector=task.sector,
        horizon=task.horizon,
        ok=True,
        model_dir=str(model_dir),
        n_train=len(tr),
        n_test=len(te),
        train_start=str(pd.Timestamp(tr["date"].min()).date()),
        train_end=str(pd.Timestamp(tr["date"].max()).date()),
        test_start=str(pd.Timestamp(te["date"].min()).date()),
        test_end=str(pd.Timestamp(te["date"].max()).date()),
        evaluation=evaluation,
        baselines=baselines,
        seconds=seconds,
        learners=learners,
        dropped=dict(getattr(model, "dropped_", {})),
        timings={k: round(v, 3) for k, v in getattr(model, "timings_", {}).items()},
    )


def train_one(
    task: TrainTask,
    rows: pd.DataFrame,
    features: list[str],
    settings: Settings,
    out_dir: str,
    test_start: str,
    threads: int = 1,
) -> TaskResult:
    """Fit one model on rows before the out-of-time window and score the window."""
    t0 = time.perf_counter()
    tr, te = split_rows(rows, task.horizon, test_start, settings, task.key)
    model = fit_model(tr, task.horizon, features, settings, threads)
    model_dir = Path(out_dir) / task.sector.replace(" ", "_") / f"{task.horizon}d"
    model.save(model_dir)
    return evaluate_task(task, model, tr, te, features, model_dir, time.perf_counter() - t0)


def train_pooled(
    tasks: Sequence[TrainTask],
    rows: pd.DataFrame,
    features: list[str],
    settings: Settings,
    out_dir: str,
    test_start: str,
    threads: int = 1,
) -> list[TaskResult]:
    """``models.scope: pooled``: one model for a horizon, fitted on every sector's rows, then
    judged per sector on that sector's out-of-time rows (the gate decides per key)."""
    t0 = time.perf_counter()
    horizon = tasks[0].horizon
    tr, te = split_rows(rows, horizon, test_start, settings, f"pooled/{horizon}d")
    model = fit_model(tr, horizon, features, settings, threads)
    model_dir = Path(out_dir) / "pooled" / f"{horizon}d"
    model.save(model_dir)
    fit_s = time.perf_counter() - t0
    results = []
    for task in tasks:
        t1 = time.perf_counter()
        mine = tr["sector"] == task.sector
        try:
            r = evaluate_task(
                task,
                model,
                tr[mine],
                te[te["sector"] == task.sector],
                features,
                model_dir,
                fit_s / len(tasks) + time.perf_counter() - t1,
            )
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            r = TaskResult(task.sector, task.horizon, ok=False, error=detail)
        results.append(r)
    return results


def _run_task(
    task: TrainTask,
    rows: pd.DataFrame,
    features: list[str],
    settings: Settings,
    out_dir: str,
    test_start: str,
    threads: int,
) -> TaskResult:
    """train_one with failures turned into a result, so one task never sinks the others."""
    t0 = time.perf_counter()
    try:
        return train_one(task, rows, features, settings, out_dir, test_start, threads)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return TaskResult(
            task.sector, task.horizon, ok=False, error=detail, seconds=time.perf_counter() - t0
        )


def _run_pooled(
    tasks: list[TrainTask],
    rows: pd.DataFrame,
    features: list[str],
    settings: Settings,
    out_dir: str,
    test_start: str,
    threads: int,
) -> list[TaskResult]:
    """train_pooled with a failure turned into one failed result per task."""
    t0 = time.perf_counter()
    try:
        return train_pooled(tasks, rows, features, settings, out_dir, test_start, threads)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return [
            TaskResult(
                t.sector, t.horizon, ok=False, error=detail, seconds=time.perf_counter() - t0
            )
            for t in tasks
        ]


def _pooled_groups(tasks: Sequence[TrainTask]) -> list[list[TrainTask]]:
    by_h: dict[int, list[TrainTask]] = {}
    for t in tasks:
        by_h.setdefault(t.horizon, []).append(t)
    return [by_h[h] for h in sorted(by_h)]


def train_all(
    settings: Settings,
    data: pd.DataFrame,
    features: list[str],
    out_dir: Path | str,
    tasks: Sequence[TrainTask] | None = None,
    use_ray: bool = True,
    on_done: Callable[[TaskResult], None] | None = None,
) -> list[TaskResult]:
    """Run every task; results come back in completion order through ``on_done``."""
    tasks = list(tasks) if tasks is not None else all_tasks(settings)
    start = str(oot_window_start(data["date"], settings).date())
    by_sector = {s: g.reset_index(drop=True) for s, g in data.groupby("sector")}
    empty = data.iloc[0:0]
    threads = max(1, int(settings.compute.cpus_per_task))
    done = on_done or (lambda _r: None)
    results: list[TaskResult] = []
    event(log, "train.start", tasks=len(tasks), ray=use_ray, test_start=start)
    pooled = settings.models.scope == "pooled"
    if pooled and not use_ray:
        for group in _pooled_groups(tasks):
            for r in _run_pooled(group, data, features, settings, str(out_dir), start, threads):
                results.append(r)
                done(r)
        return results
    if not use_ray:
        for task in tasks:
            r = _run_task(
                task,
                by_sector.get(task.sector, empty),
                features,
                settings,
                str(out_dir),
                start,
                threads,
            )
            results.append(r)
            done(r)
        return results

    import ray

    with ray_session(settings):
        remote = ray.remote(
            num_cpus=settings.compute.cpus_per_task,
            num_gpus=settings.compute.gpus_per_task,
            max_retries=0,
        )(_run_task)
        if pooled:
            remote_pooled = ray.remote(
                num_cpus=settings.compute.cpus_per_task,
                num_gpus=settings.compute.gpus_per_task,
                max_retries=0,
            )(_run_pooled)
            data_ref, features_ref = ray.put(data), ray.put(features)
            waiting = {
                remote_pooled.remote(
                    group, data_ref, features_ref, settings, str(out_dir), start, threads
                ): group
                for group in _pooled_groups(tasks)
            }
            while waiting:
                ready, _ = ray.wait(list(waiting), num_returns=1)
                group = waiting.pop(ready[0])
                try:
                    got = ray.get(ready[0])
                except Exception as exc:
                    got = [
                        TaskResult(t.sector, t.horizon, ok=False, error=f"worker failed: {exc}")
                        for t in group
                    ]
                for r in got:
                    results.append(r)
                    done(r)
            return results
        refs = {ray.put(v): k for k, v in by_sector.items()}
        sector_ref = {k: r for r, k in refs.items()}
        empty_ref = ray.put(empty)
        features_ref, settings_ref = ray.put(features), ray.put(settings)
        pending = {
            remote.remote(
                task,
                sector_ref.get(task.sector, empty_ref),
                features_ref,
                settings_ref,
                str(out_dir),
                start,
                threads,
            ): task
            for task in tasks
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as exc:
                r = TaskResult(task.sector, task.horizon, ok=False, error=f"worker failed: {exc}")
            results.append(r)
            done(r)
    event(log, "train.done", ok=sum(r.ok for r in results), failed=sum(not r.ok for r in results))
    return results


def saved_model_dirs(out_dir: Path | str, horizons: Sequence[int]) -> dict[str, Path]:
    """Registry key → directory of the models a training run saved under ``out_dir``: one per
    (sector, horizon) (``<Sector_with_underscores>/<h>d``), or a pooled model per horizon
    (``pooled/<h>d``) that serves every sector's key. A bench_train work directory's
    ``models_ray*`` folder is found inside ``out_dir``."""
    root = Path(out_dir)
    inner = sorted(p for p in root.glob("models_ray*") if p.is_dir())
    if inner:
        root = inner[0]
    found: dict[str, Path] = {}
    for sector in GICS_SECTORS:
        for h in horizons:
            for directory in (root / sector.replace(" ", "_") / f"{h}d", root / "pooled" / f"{h}d"):
                if (directory / "ensemble.json").is_file():
                    found[f"{sector}/{h}d"] = directory
                    break
    return found


LEARNER_PREFIX = "base:"
"""Rows of :func:`results_table` for one base learner of the ensemble: ``base:<name>``."""


def results_table(results: Sequence[TaskResult]) -> pd.DataFrame:
    """One row per task and model/baseline/base learner: the headline out-of-time metrics."""
    rows = []
    for r in sorted(results, key=lambda r: (r.sector, r.horizon)):
        if not r.ok or r.evaluation is None:
            rows.append(
                {"sector": r.sector, "horizon": r.horizon, "model": "FAILED", "error": r.error}
            )
            continue
        named = {f"{LEARNER_PREFIX}{k}": v for k, v in r.learners.items()}
        for name, ev in {"ensemble": r.evaluation, **r.baselines, **named}.items():
            cls, ic = ev["classification"], ev["rank_ic"]
            rows.append(
                {
                    "sector": r.sector,
                    "horizon": r.horizon,
                    "model": name,
                    "balanced_accuracy": cls["balanced_accuracy"],
                    "roc_auc_macro": cls["roc_auc_macro"],
                    "log_loss": cls["log_loss"],
                    "rank_ic": ic["mean_ic"],
                    "icir": ic["icir"],
                    "ic_t": ic["t_stat"],
                    "top_decile_buy_precision": ev["top_decile"]["top"]["precision_buy"]
                    if ev["top_decile"].get("top")
                    else None,
                }
            )
    return pd.DataFrame(rows)
