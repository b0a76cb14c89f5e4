"""``turbomode tune``: a Ray Tune search over base-learner parameters for one (sector, horizon).

A thin adapter over :func:`turbomode.models.tune.tune_task`: it loads the training set as
``turbomode train`` does, keeps the sector's labelled rows and hands them over with the first
out-of-time day, so the search is cut (purged) before the window the gate later judges. The
best parameters are written as a config file for ``turbomode --config FILE train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from turbomode.cli.common import console, err, handles_errors, settings_from
from turbomode.config import GICS_SECTORS
from turbomode.errors import TurboModeError
from turbomode.models.ensemble import BASE_MODELS
from turbomode.workspace import Workspace

SHOWN_TRIALS = 5


def _models(chosen: list[str] | None) -> list[str]:
    names = chosen or ["lightgbm"]
    if "all" in names:
        return list(BASE_MODELS)
    unknown = [m for m in names if m not in BASE_MODELS]
    if unknown:
        raise TurboModeError(f"unknown model(s) {unknown}; expected {list(BASE_MODELS)} or 'all'")
    return list(dict.fromkeys(names))


@handles_errors
def tune_command(
    ctx: typer.Context,
    sector: Annotated[str, typer.Option("--sector", help="GICS sector to tune on.")],
    horizon: Annotated[int, typer.Option("--horizon", help="Label horizon in days.")] = 1,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help=f"Base learner (repeatable) or 'all': {', '.join(BASE_MODELS)}."
        ),
    ] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials per model.")] = 20,
    time_budget: Annotated[
        float, typer.Option("--time-budget", min=1, help="Seconds per model.")
    ] = 600,
    folds: Annotated[
        int, typer.Option("--folds", min=1, help="Walk-forward folds inside the training period.")
    ] = 3,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Config file to write (default data/tuning/SECTOR_Hd.yaml)."),
    ] = None,
) -> None:
    """Search base-learner parameters on walk-forward folds before the out-of-time window and
    write the best as a config file (use it with `turbomode --config FILE train`)."""
    from turbomode.feature_store import model_features
    from turbomode.models.train import oot_window_start, training_set
    from turbomode.models.tune import ray_session, tune_task, write_params

    settings = settings_from(ctx)
    if sector not in GICS_SECTORS:
        raise TurboModeError(f"unknown sector {sector!r}; expected one of {GICS_SECTORS}")
    if horizon not in settings.labels.horizons:
        raise TurboModeError(
            f"horizon {horizon} is not configured (labels.horizons: {settings.labels.horizons})"
        )
    names = _models(model)
    with err.status("loading the training set"):
        data = training_set(settings)
    before = oot_window_start(data["date"], settings)
    label = f"label_{horizon}"
    rows = data[(data["sector"] == sector) & data[label].notna()].reset_index(drop=True)
    if rows.empty:
        raise TurboModeError(f"no labelled rows for {sector} at {horizon}d")
    features = model_features(settings)
    results = []
    with ray_session(settings):
        for name in names:
            with err.status(f"tuning {name} ({trials} trials, ≤ {time_budget:.0f} s)"):
                results.append(
                    tune_task(
                        rows,
                        features,
                        horizon,
                        settings,
                        model=name,
                        num_samples=trials,
                        time_budget_s=time_budget,
                        folds=folds,
                        before=before,
                    )
                )
    slug = sector.replace(" ", "_")
    target = out or Workspace.of(settings).tuning_dir / f"{slug}_{horizon}d.yaml"
    path = write_params(results, target, settings)
    for r in results:
        first, last = r.folds[0], r.folds[-1]
        table = Table(
            title=f"{r.model} — {sector} {horizon}d: best mean rank IC {r.best_score:.4f} "
            f"({r.n_trials} trials, {r.n_stopped_early} stopped early, {r.seconds:.0f} s; "
            f"scored {first['test_start']} → {last['test_end']}, out of time from "
            f"{before.date()})"
        )
        shown = r.trials.head(SHOWN_TRIALS)
        for col in shown.columns:
            table.add_column(str(col), justify="left" if col == "status" else "right")
        for rec in shown.itertuples(index=False):
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rec))
        console.print(table)
    console.print(f"written: {path} (use: turbomode --config {path} train)")
