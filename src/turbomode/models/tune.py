"""Ray Tune search over the base learners' main hyperparameters, scored only in-sample.

A tuned parameter is only worth having if it was chosen without looking at the out-of-time
window the gate judges: otherwise the gate's test measures the search, not the model. So
:func:`tune_task` takes the first out-of-time day (``before``) and cuts the rows itself with
the same purged rule as training (:func:`training_rows`): no row on or after ``before``, and
no row whose label window reaches it, can enter a trial. Each trial is then scored on purged,
embargoed walk-forward folds *inside* that training period, by the mean daily cross-sectional
rank IC of P(BUY) − P(SELL) against ``fwd_ret_{h}`` — the number the gate's IC floor reads.

Trials report once per fold (``training_iteration`` = folds done, metric = mean IC so far),
so an :class:`~ray.tune.schedulers.ASHAScheduler` stops trials that trail their peers after
the first folds. Each trial builds its model exactly as the ensemble does
(:func:`~turbomode.models.ensemble._make`, balanced weights, the task's threads and device).

:func:`write_params` turns results into a TurboMode config file (``models: {name: {...}}``)
that ``turbomode --config FILE train`` reads. The tuned values apply to every task that
config trains, not only the (sector, horizon) they were searched on.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from turbomode.cluster import ray_session
from turbomode.config import ModelSettings, Settings
from turbomode.logs import event
from turbomode.models.ensemble import (
    BASE_MODELS,
    N_CLASSES,
    Standardizer,
    TrainingDataError,
    _make,
    _proba3,
    balanced_weights,
)
from turbomode.models.evaluation import rank_ic, score_from_proba
from turbomode.models.validation import (
    Fold,
    WalkForward,
    out_of_time_split,
    trading_calendar,
    walk_forward_splits,
)

__all__ = [
    "METRIC",
    "TuneResult",
    "ray_session",
    "search_space",
    "training_rows",
    "tune_task",
    "tuning_folds",
    "write_params",
]

log = logging.getLogger("turbomode.models.tune")
METRIC = "mean_ic"


def search_space(model: str) -> dict[str, Any]:
    """Ray Tune distributions around the :class:`ModelSettings` defaults of one base learner.

    Only the parameters that move out-of-time results (size, step, tree shape, leaf size,
    feature/row sampling, regularization); bounds stay small enough for a 2-core search.
    Parameters not searched keep their configured values.
    """
    from ray import tune

    spaces: dict[str, dict[str, Any]] = {
        "lightgbm": {
            "n_estimators": tune.qrandint(20, 160, 10),
            "learning_rate": tune.loguniform(0.02, 0.3),
            "num_leaves": tune.lograndint(4, 64),
            "min_child_samples": tune.lograndint(20, 500),
            "colsample_bytree": tune.uniform(0.2, 0.9),
            "subsample": tune.uniform(0.5, 1.0),
        },
        "catboost": {
            "iterations": tune.qrandint(20, 160, 10),
            "learning_rate": tune.loguniform(0.03, 0.4),
            "depth": tune.randint(2, 8),
            "l2_leaf_reg": tune.loguniform(1.0, 30.0),
            "rsm": tune.uniform(0.1, 0.8),
        },
        "xgb_hist": {
            "n_estimators": tune.qrandint(20, 160, 10),
            "learning_rate": tune.loguniform(0.02, 0.3),
            "max_depth": tune.randint(2, 9),
            "min_child_weight": tune.loguniform(1.0, 200.0),
            "colsample_bytree": tune.uniform(0.2, 0.9),
            "subsample": tune.uniform(0.5, 1.0),
        },
        "xgb_linear": {
            "n_estimators": tune.qrandint(10, 80, 10),
            "learning_rate": tune.loguniform(0.05, 1.0),
            "reg_lambda": tune.loguniform(1e-3, 30.0),
            "reg_alpha": tune.loguniform(1e-4, 1.0),
        },
        "random_forest": {
            "n_estimators": tune.qrandint(15, 100, 5),
            "max_depth": tune.randint(3, 17),
            "min_samples_leaf": tune.lograndint(5, 500),
            "max_features": tune.choice(["sqrt", "log2", 0.1, 0.2, 0.3]),
        },
    }
    if model not in spaces:
        raise ValueError(f"unknown model {model!r}; expected one of {BASE_MODELS}")
    return spaces[model]


# --------------------------------------------------------------------------- leakage guard


def training_rows(
    rows: pd.DataFrame, horizon: int, before: Any, purge_days: int | None = None
) -> pd.DataFrame:
    """The rows a search may see: dated before ``before`` minus the purge, sorted by date.

    The same rule as :func:`~turbomode.models.validation.out_of_time_split`: keep t with
    position(t) + purge < position(first day ≥ ``before``). When no row reaches ``before`` the
    next trading day may be ``before`` itself, so the last ``purge`` days are dropped anyway:
    an already-cut frame loses a few days, an uncut one can never leak.
    """
    purge = max(int(horizon), int(purge_days if purge_days is not None else horizon))
    cut = pd.Timestamp(before)
    dates = pd.to_datetime(rows["date"]).to_numpy()
    if len(dates) == 0:
        raise ValueError("no rows to tune on")
    if (dates >= cut.to_datetime64()).any():
        idx, _ = out_of_time_split(dates, int(horizon), cut, purge_days=purge)
    else:
        cal, pos = trading_calendar(dates)
        idx = np.flatnonzero(pos <= len(cal) - 1 - purge)
    if len(idx) == 0:
        raise ValueError(f"no rows before {cut.date()} minus a {purge}-day purge")
    kept = rows.iloc[np.sort(idx)]
    return kept.sort_values(["date", "symbol"] if "symbol" in kept else ["date"]).reset_index(
        drop=True
    )


def tuning_folds(dates: Any, horizon: int, settings: Settings, folds: int) -> list[Fold]:
    """Walk-forward folds laid out as the ensemble lays out its stacking folds (purge = the
    horizon, ``models.embargo_days`` between test blocks), so trials see comparable splits."""
    n_days = len(np.unique(pd.to_datetime(np.asarray(dates))))
    cfg = WalkForward(
        n_folds=folds,
        min_train_days=max(20, n_days // (folds + 1)),
        purge_days=int(horizon),
        embargo_days=settings.models.embargo_days,
    )
    return walk_forward_splits(dates, int(horizon), cfg)


# --------------------------------------------------------------------------- trials


def _fold_ic(
    model: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    fwd: np.ndarray,
    dates: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    threads: int,
    device: str,
    seed: int,
    min_names: int,
) -> float:
    """Fit on one fold's training rows as the ensemble would; mean daily rank IC on its test."""
    Xtr, Xte = X[train], X[test]
    if model == "xgb_linear":
        scaler = Standardizer().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    est = _make(model, params, threads, device, seed)
    est.fit(Xtr, y[train], sample_weight=balanced_weights(y[train]))
    ic = rank_ic(score_from_proba(_proba3(est, Xte)), fwd[test], dates[test], min_names)
    return float(ic.mean()) if len(ic) else 0.0


def _trial(
    config: dict[str, Any],
    model: str,
    base: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    fwd: np.ndarray,
    dates: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    threads: int,
    device: str,
    seed: int,
    min_names: int,
) -> None:
    """One Ray Tune trial: report the running mean IC after every fold (ASHA's rungs)."""
    from ray import tune

    params = {**base, **config}
    ics: list[float] = []
    for k, (train, test) in enumerate(splits, start=1):
        ic = _fold_ic(
            model, params, X, y, fwd, dates, train, test, threads, device, seed, min_names
        )
        ics.append(ic)
        tune.report({METRIC: float(np.mean(ics)), "fold_ic": ic, "fold": k})


# --------------------------------------------------------------------------- driver


@dataclass
class TuneResult:
    """The outcome of one search. ``trials`` holds one row per trial, best first: its
    parameters, ``score`` (mean IC over the folds it ran), ``iterations`` (folds run) and
    ``status`` (completed, stopped — by ASHA or the time budget —, error, not run)."""

    model: str
    best_params: dict[str, Any]
    best_score: float
    n_trials: int
    n_stopped_early: int
    trials: pd.DataFrame
    seconds: float
    horizon: int = 1
    n_rows: int = 0
    n_errors: int = 0
    folds: list[dict[str, Any]] = field(default_factory=list)
    """Fold bounds (:meth:`Fold.summary`): every scored date lies in a ``test_*`` range."""


@contextmanager
def _old_tune_output() -> Iterator[None]:
    """Ray's new console output prints an experiment box even at ``verbose=0``; the CLI's
    stdout is for its own table, so select the legacy reporter (silent at 0) while fitting."""
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous


def _status(done: int, folds: int) -> str:
    """completed (every fold), stopped (by ASHA or the time budget), or not run."""
    if done >= folds:
        return "completed"
    return "stopped" if done > 0 else "not run"


def _plain(value: Any) -> Any:
    """numpy scalars → Python, so parameters serialize to YAML and compare with ==."""
    return value.item() if isinstance(value, np.generic) else value


def tune_task(
    rows: pd.DataFrame,
    features: list[str],
    horizon: int,
    settings: Settings,
    model: str = "lightgbm",
    num_samples: int = 20,
    time_budget_s: float = 600,
    folds: int = 3,
    seed: int = 0,
    *,
    before: Any,
    storage_path: Path | str | None = None,
    min_names: int = 5,
) -> TuneResult:
    """Search ``model``'s :func:`search_space` on rows before the out-of-time window.

    ``before`` is the first out-of-time day (``train.oot_window_start``); rows may include the
    window — they are cut here by :func:`training_rows`, so no trial can see them. Trials are
    scored on :func:`tuning_folds` of what is left (mean daily rank IC of P(BUY) − P(SELL)
    against ``fwd_ret_{horizon}``, days with ≥ ``min_names`` names), stopped early by ASHA,
    bounded by ``num_samples`` and ``time_budget_s``. Trial files go to ``storage_path``, or a
    temporary directory removed afterwards. The best trial is the best among those that ran
    every fold (a trial cut after one fold has a noisier, non-comparable score).
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    t0 = time.perf_counter()
    space = search_space(model)
    label, ret = f"label_{horizon}", f"fwd_ret_{horizon}"
    missing = [c for c in (label, ret, "date", *features) if c not in rows]
    if missing:
        raise TrainingDataError(f"tuning rows lack column(s) {missing[:10]}")
    data = training_rows(rows[rows[label].notna()], horizon, before)
    X = data[features].to_numpy(dtype=np.float32)
    y = data[label].to_numpy(dtype=np.int64)
    fwd = data[ret].to_numpy(dtype=np.float64)
    dates = pd.to_datetime(data["date"]).to_numpy()
    layout = tuning_folds(dates, horizon, settings, folds)
    for f in layout:
        if len(np.unique(y[f.train_idx])) < N_CLASSES:
            raise TrainingDataError(f"fold {f.index} training rows lack a class")
        ok = np.isfinite(fwd[f.test_idx])
        names = pd.Series(dates[f.test_idx][ok]).value_counts()
        if not (names >= min_names).any():
            raise TrainingDataError(
                f"fold {f.index} has no day with ≥ {min_names} names: rank IC is undefined"
            )
    assert dates.max() < pd.Timestamp(before).to_datetime64(), "out-of-time rows in tuning set"

    cpus, gpus = settings.compute.cpus_per_task, settings.compute.gpus_per_task
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial,
            model=model,
            base=dict(getattr(settings.models, model)),
            X=X,
            y=y,
            fwd=fwd,
            dates=dates,
            splits=[(f.train_idx, f.test_idx) for f in layout],
            threads=max(1, int(cpus)),
            device=settings.compute.device,
            seed=seed,
            min_names=min_names,
        ),
        {"cpu": cpus, "gpu": gpus},
    )
    # reduction_factor 2: with only `folds` rungs, ASHA's default 4 would leave a single rung.
    scheduler = ASHAScheduler(
        metric=METRIC, mode="max", max_t=folds, grace_period=1, reduction_factor=2
    )
    own_dir = storage_path is None
    root = Path(tempfile.mkdtemp(prefix="turbomode_tune_") if own_dir else str(storage_path))
    try:
        with ray_session(settings), _old_tune_output():
            grid = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    scheduler=scheduler,
                    search_alg=BasicVariantGenerator(random_state=seed),
                    num_samples=num_samples,
                    time_budget_s=time_budget_s,
                ),
                run_config=tune.RunConfig(
                    name=f"{model}_{horizon}d", storage_path=str(root.resolve()), verbose=0
                ),
            ).fit()
            configs, records, errors = [], [], []
            for i in range(len(grid)):
                res = grid[i]
                metrics = res.metrics or {}
                done = int(metrics.get("training_iteration") or 0)
                score = metrics.get(METRIC)
                if res.error is not None:
                    errors.append(str(res.error).strip().splitlines()[-1][:200])
                configs.append({k: _plain((res.config or {}).get(k)) for k in space})
                records.append(
                    {
                        "trial": i,
                        **configs[-1],
                        "score": float(score) if score is not None else math.nan,
                        "iterations": done,
                        "status": "error" if res.error is not None else _status(done, folds),
                    }
                )
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)

    trials = pd.DataFrame(records, columns=["trial", *space, "score", "iterations", "status"])
    trials = trials.sort_values(["iterations", "score"], ascending=False, na_position="last")
    trials = trials.reset_index(drop=True)
    complete = trials[(trials["status"] == "completed") & np.isfinite(trials["score"])]
    if complete.empty:
        raise TrainingDataError(
            f"{model}: no trial ran all {folds} folds ({len(trials)} trials, {len(errors)} "
            f"failed{': ' + errors[0] if errors else ''}); raise time_budget_s or check the data"
        )
    best = complete.loc[complete["score"].idxmax()]
    result = TuneResult(
        model=model,
        best_params=configs[int(best["trial"])],  # not the frame's row: NaN upcasts ints
        best_score=float(best["score"]),
        n_trials=len(trials),
        n_stopped_early=int((trials["status"] == "stopped").sum()),
        trials=trials,
        seconds=time.perf_counter() - t0,
        horizon=horizon,
        n_rows=len(data),
        n_errors=len(errors),
        folds=[f.summary() for f in layout],
    )
    event(
        log,
        "tune.done",
        model=model,
        horizon=horizon,
        trials=result.n_trials,
        stopped_early=result.n_stopped_early,
        best_score=round(result.best_score, 4),
        seconds=round(result.seconds, 1),
    )
    return result


# --------------------------------------------------------------------------- output


def write_params(
    result_or_results: TuneResult | Sequence[TuneResult],
    path: Path | str,
    settings: Settings | None = None,
) -> Path:
    """Write a TurboMode config file: ``models: {name: configured params + best params}``.

    The configured dict is merged in because a ``models.<name>`` entry in a config file
    replaces the whole default dict: without it the untuned defaults (``max_bin``, …) would
    silently fall back to the libraries' own.
    """
    results = (
        [result_or_results] if isinstance(result_or_results, TuneResult) else result_or_results
    )
    base = settings.models if settings is not None else ModelSettings()
    models = {
        r.model: {
            **dict(getattr(base, r.model)),
            **{k: _plain(v) for k, v in r.best_params.items()},
        }
        for r in results
    }
    header = "".join(
        f"# {r.model}: mean rank IC {r.best_score:.4f} over walk-forward folds inside the "
        f"training period ({r.n_trials} trials, {r.horizon}d horizon)\n"
        for r in results
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump({"models": models}, sort_keys=False))
    return out
