"""One training run end to end: Feast training set → Ray training → out-of-time evaluation
beside baselines → registry → gate → promotion, and a report of every decision.

This is the function behind ``turbomode train`` and the KFP training component; both stay
thin. A candidate is always registered (so a refused model can be inspected), and becomes
production only when the gate says so.
"""

from __future__ import annotations

import logging
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode import __version__
from turbomode.config import Settings
from turbomode.io import atomic_write_json, atomic_write_text
from turbomode.job_metrics import JobMetrics, job_metrics
from turbomode.logs import event
from turbomode.models import drift, explain
from turbomode.models import evaluation as mx
from turbomode.models.ensemble import BASE_MODELS
from turbomode.models.gate import GateReport, apply_decision, decide, render_markdown
from turbomode.models.loading import load_ensemble
from turbomode.models.registry import ModelRegistry
from turbomode.models.train import (
    TaskResult,
    TrainTask,
    all_tasks,
    evaluate_rows,
    oot_window_start,
    predictions,
    results_table,
    train_all,
    training_set,
)
from turbomode.workspace import Workspace

log = logging.getLogger("turbomode.models.pipeline")


@dataclass
class TrainingRun:
    run_id: str
    results: list[TaskResult]
    versions: dict[str, str] = field(default_factory=dict)
    gates: dict[str, GateReport] = field(default_factory=dict)
    report_paths: dict[str, str] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        rows = []
        for r in sorted(self.results, key=lambda r: (r.sector, r.horizon)):
            gate = self.gates.get(r.key)
            ic = r.evaluation["rank_ic"]["mean_ic"] if r.evaluation else None
            bacc = r.evaluation["classification"]["balanced_accuracy"] if r.evaluation else None
            rows.append(
                {
                    "key": r.key,
                    "status": "ok" if r.ok else "failed",
                    "rank_ic": ic,
                    "balanced_accuracy": bacc,
                    "decision": gate.decision if gate else "-",
                    "rule": gate.deciding_rule if gate else (r.error or "-"),
                    "version": self.versions.get(r.key, "-"),
                    "seconds": round(r.seconds, 1),
                }
            )
        return pd.DataFrame(rows)


def code_version() -> str:
    """The package version and, inside a git checkout, the commit."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def production_evaluation(
    registry: ModelRegistry,
    key: str,
    rows: pd.DataFrame,
    horizon: int,
    features: list[str],
    data: pd.DataFrame | None = None,
    sector: str | None = None,
) -> dict[str, Any] | None:
    """The production model's out-of-time evaluation on exactly the candidate's test rows;
    with sequence learners its windows reach back into ``sector``'s earlier rows of ``data``
    (not copied for tree models)."""
    if registry.production(key) is None:
        return None
    path, _manifest = registry.load(key)
    model = load_ensemble(path)
    history = None
    if model.window_days and data is not None:
        history = data[data["sector"] == sector]
    return evaluate_rows(model, rows, horizon, list(model.features), history=history)


def window_rows(data: pd.DataFrame, task: TaskResult) -> pd.DataFrame:
    label = f"label_{task.horizon}"
    if task.test_start is None or task.test_end is None:
        raise ValueError(f"{task.key}: no out-of-time window recorded")
    rows = data[(data["sector"] == task.sector) & data[label].notna()]
    rows = rows[
        (rows["date"] >= pd.Timestamp(task.test_start))
        & (rows["date"] <= pd.Timestamp(task.test_end))
    ]
    return rows.sort_values(["date", "symbol"]).reset_index(drop=True)


REFERENCE_ROWS = 50_000


def drift_reference(
    data: pd.DataFrame, task: TaskResult, features: list[str], oot_rows: pd.DataFrame
) -> dict[str, Any]:
    """The reference :mod:`turbomode.models.drift` compares live rows with: the features of
    the task's training window, and the candidate's scores on its out-of-time rows, each
    calibrated on its own nights and 20-day blocks. Cut points from at most
    ``REFERENCE_ROWS`` evenly spaced rows: deciles need no more."""
    rows = data[
        (data["sector"] == task.sector)
        & (data["date"] >= pd.Timestamp(str(task.train_start)))
        & (data["date"] <= pd.Timestamp(str(task.train_end)))
    ]
    model = load_ensemble(str(task.model_dir))
    # sequence learners: the window's first days reach back into the sector's earlier rows
    history = data[data["sector"] == task.sector] if model.window_days else None
    scores = (
        drift.score_of(predictions(model, oot_rows, list(model.features), history)["model"])
        if len(oot_rows)
        else None
    )
    return drift.build_reference(
        rows, features, scores, oot_rows["date"].to_numpy(), max_rows=REFERENCE_ROWS
    )


# Exact TreeSHAP of a stacked ensemble costs ~7 ms a row on this 2-core machine (default
# settings), in the training driver after every key: 1,000 rows took ~7 s a key, 4 minutes over
# 33 keys. 250 rows rank the features as 1,000 do — measured on two synthetic keys: Spearman
# 0.995 over all features, 9–10 of the top 10 shared, the same order of groups. A forest grown
# without a depth limit costs ~100× more a row, so the rows are also bounded by the work
# (explain.work_per_row): the default forest (25 trees of depth 8) gets all 250, and no model
# fewer than IMPORTANCE_MIN_ROWS. Where even those rows pass the budget, the forest is thinned
# to evenly spaced trees (explain.thin_forest; 30 unlimited-depth trees took 25 s a key at 10
# rows). The manifest records the rows and the trees used.
IMPORTANCE_ROWS = 250
IMPORTANCE_MIN_ROWS = 10
IMPORTANCE_WORK = 25 * 256 * 8**2 * IMPORTANCE_ROWS


def feature_importance(task: TaskResult, oot_rows: pd.DataFrame) -> dict[str, Any]:
    """The manifest's ``importance``: mean |contribution| to P(BUY) − P(SELL) per feature
    and per feature group (:mod:`turbomode.models.explain`) on at most ``IMPORTANCE_ROWS``
    evenly spaced out-of-time rows: what the model leans on where it did not train."""
    from turbomode.features.registry import REGISTRY, select_features

    if oot_rows.empty:
        return {}
    model = load_ensemble(str(task.model_dir))  # a copy of its own: the forest may be thinned
    if model.window_days or any(n not in BASE_MODELS for n in getattr(model, "learners_", [])):
        return {}  # TreeSHAP covers tree ensembles only (explain refuses neural learners)
    work = explain.work_per_row(model)
    budget = IMPORTANCE_ROWS if work == 0 else int(IMPORTANCE_WORK // work)
    n = min(len(oot_rows), max(IMPORTANCE_MIN_ROWS, min(IMPORTANCE_ROWS, budget)))
    picks = np.linspace(0, len(oot_rows) - 1, n).astype(int)
    rows = oot_rows.iloc[np.unique(picks)]
    kept, grown = explain.thin_forest(model, IMPORTANCE_WORK / len(rows))
    features = select_features(model.features)
    groups = {name: REGISTRY[name].group for name in features}
    out = explain.importance(explain.explain(model, rows[features]), groups)
    if grown:
        out["forest_trees"] = {"used": kept, "grown": grown}
    return out


def run_training(
    settings: Settings,
    sectors: Sequence[str] | None = None,
    use_ray: bool = True,
    on_done: Callable[[TaskResult], None] | None = None,
    data: pd.DataFrame | None = None,
    promote: bool = True,
    keys: Sequence[str] | None = None,
) -> TrainingRun:
    """Train, evaluate, register and gate every (sector, horizon) task.

    ``promote=False`` registers and gates but moves no production pointer: the caller
    applies the decisions (:func:`apply_decisions`) once every task is done, as the retrainer
    does so that a failure mid-run leaves production untouched. ``keys`` limits the run to
    those (sector, horizon) tasks.
    """
    from turbomode.feature_store import model_features, require_macro_values

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    features = model_features(settings)
    work = Workspace.of(settings).runs_dir / run_id
    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    with job_metrics("train", settings.stores.pushgateway_url) as metrics:
        data = training_set(settings) if data is None else data
        require_macro_values(data, features)
        tasks: list[TrainTask] = [
            t for t in all_tasks(settings, sectors) if keys is None or t.key in set(keys)
        ]
        results = train_all(settings, data, features, work / "models", tasks, use_ray, on_done)
        run = TrainingRun(run_id, results)
        start = oot_window_start(data["date"], settings)
        for r in results:
            metrics.rows.labels(stage="ok" if r.ok else "failed").inc()
            if not r.ok or r.evaluation is None or r.model_dir is None:
                continue
            rows = window_rows(data, r)
            prod = production_evaluation(registry, r.key, rows, r.horizon, features, data, r.sector)
            look = len(registry.looks(r.key)) + 1
            report = decide(r.evaluation, r.baselines, prod, settings.gate, look=look)
            files = {p.name: p for p in Path(r.model_dir).iterdir() if p.is_file()}
            manifest = {
                "run_id": run_id,
                "sector": r.sector,
                "horizon": r.horizon,
                "features": features,
                "train_range": [r.train_start, r.train_end],
                "test_range": [r.test_start, r.test_end],
                "oot_start": str(start.date()),
                "data_hash": _data_hash(data, r.sector),
                "parameters": settings.models.model_dump(mode="json"),
                "code_version": code_version(),
                "metrics": mx.to_jsonable(_headline(r)),
                "gate": report.to_dict(),
                "drift_reference": drift_reference(data, r, features, rows),
                "importance": feature_importance(r, rows),
            }
            version = registry.register(r.key, files, manifest)
            registry.record_look(
                r.key,
                {
                    "version": version,
                    "run_id": run_id,
                    "number": look,
                    "alpha": report.look["alpha"],
                    "decision": report.decision,
                    "test_range": [r.test_start, r.test_end],
                },
            )
            run.versions[r.key] = version
            run.gates[r.key] = report
            if promote:
                apply_decision(report, registry, r.key, version)
            metrics.rows.labels(stage=f"gate_{report.decision}").inc()
            _record_quality(metrics, r)
        run.report_paths = write_run_report(run, settings)
    event(
        log,
        "train.run",
        run_id=run_id,
        ok=sum(r.ok for r in results),
        promoted=sum(g.promoted for g in run.gates.values()),
    )
    return run


def _record_quality(metrics: JobMetrics, r: TaskResult) -> None:
    """Out-of-time quality per task, for the model-quality dashboard's history."""
    ev = r.evaluation or {}
    labels = {"sector": r.sector, "horizon": str(r.horizon)}
    ic = (ev.get("rank_ic") or {}).get("mean_ic")
    bacc = (ev.get("classification") or {}).get("balanced_accuracy")
    if ic is not None:
        metrics.gauge("turbomode_candidate_rank_ic").labels(**labels).set(ic)
    if bacc is not None:
        metrics.gauge("turbomode_candidate_balanced_accuracy").labels(**labels).set(bacc)


def apply_decisions(run: TrainingRun, registry: ModelRegistry) -> list[str]:
    """Promote every version its gate accepted; return the keys promoted."""
    return [
        key
        for key, report in sorted(run.gates.items())
        if apply_decision(report, registry, key, run.versions[key])
    ]


def _headline(r: TaskResult) -> dict[str, Any]:
    """Metrics kept in the manifest (daily series stay in the run report)."""

    def strip(ev: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in ev.items() if k != "daily"}

    return {
        "ensemble": strip(r.evaluation or {}),
        "baselines": {k: strip(v) for k, v in r.baselines.items()},
        # every base learner's own out-of-time figures on the same rows, and those dropped
        "base_learners": r.learners,
        "dropped": r.dropped,
    }


def _data_hash(data: pd.DataFrame, sector: str) -> str:
    rows = data[data["sector"] == sector][["symbol", "date"]]
    return f"{int(pd.util.hash_pandas_object(rows, index=False).sum()) & 0xFFFFFFFFFFFF:012x}"


def write_run_report(run: TrainingRun, settings: Settings) -> dict[str, str]:
    """The evaluation table (every task beside its baselines) and the gate decisions, as
    JSON and Markdown under ``data/reports``; ``latest.*`` points at the newest run."""
    directory = Workspace.of(settings).reports_dir
    table = results_table(run.results)
    payload = {
        "run_id": run.run_id,
        "evaluation": mx.to_jsonable(table.to_dict(orient="records")),
        "gates": {k: g.to_dict() for k, g in run.gates.items()},
        "versions": run.versions,
    }
    md = [
        f"# Training run {run.run_id}",
        "",
        "## Out-of-time evaluation beside baselines",
        "",
        mx.to_markdown(table.drop(columns=[c for c in ("error",) if c in table])),
        "",
        "## Gate decisions",
        "",
        mx.to_markdown(run.summary()),
        "",
    ]
    md += [render_markdown(g) for g in run.gates.values()]
    paths = {}
    for name in (run.run_id, "latest"):
        atomic_write_json(payload, directory / f"train_{name}.json")
        atomic_write_text("\n".join(md), directory / f"train_{name}.md")
    paths["json"] = str(directory / f"train_{run.run_id}.json")
    paths["markdown"] = str(directory / f"train_{run.run_id}.md")
    return paths
