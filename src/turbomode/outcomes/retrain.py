"""The automated retrainer: enough new samples → retrain, gate, promote or keep.

A retrain runs only when at least ``outcomes.min_new_samples`` training samples arrived since
the last completed one. It records itself as *running* with every production pointer it may
move, trains all sector × horizon ensembles on the historical training set plus the new
samples (a sample replaces the historical row of its (symbol, date, horizon); its label is the
realized outcome), and gates each candidate against the baselines and the production model on
the same out-of-time rows. Promotions are applied only after every task is done; an error
while applying them restores the recorded pointers, and a run killed outright is found
*running* by the next retrain, which restores its pointers first. Either way production ends
exactly as it was before the failed run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.io import atomic_write_json, atomic_write_text
from turbomode.logs import event
from turbomode.models.registry import ModelRegistry
from turbomode.outcomes.samples import samples_as_training_rows
from turbomode.store import SignalStore
from turbomode.workspace import Workspace

if TYPE_CHECKING:
    from turbomode.job_metrics import JobMetrics

log = logging.getLogger("turbomode.outcomes.retrain")
DONE = ("promoted", "kept")


@dataclass
class RetrainResult:
    """What one retrain decided, and why."""

    status: str  # skipped | promoted | kept | failed
    run_id: int | None
    n_new_samples: int
    promoted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None


def consecutive_refusals(runs: pd.DataFrame) -> int:
    """Completed retrains in a row, newest first, that promoted nothing.

    Skipped runs (too few samples) and failed ones (the job-failed alert covers those) neither
    count nor break the streak; a promotion ends it.
    """
    if runs.empty:
        return 0
    streak = 0
    for status in reversed(runs[runs["status"].isin(DONE)]["status"].tolist()):
        if status != "kept":
            break
        streak += 1
    return streak


def production_pointers(registry: ModelRegistry, keys: Sequence[str]) -> dict[str, str | None]:
    """The production version of every key (None: no production model)."""
    return {k: registry.production(k) for k in keys}


def restore_pointers(registry: ModelRegistry, pointers: dict[str, str | None]) -> list[str]:
    """Put every key back to the recorded version; return the keys that moved."""
    moved = [k for k, v in sorted(pointers.items()) if registry.production(k) != v]
    for key in moved:
        registry.restore(key, pointers[key])
    return moved


def recover(store: SignalStore, registry: ModelRegistry) -> list[int]:
    """Undo retrains that never finished (killed mid-way): restore their pointers."""
    runs = store.retrain_runs()
    stuck = runs[runs["status"] == "running"] if len(runs) else runs
    out = []
    for r in stuck.sort_values("id", ascending=False).to_dict(orient="records"):
        moved = restore_pointers(registry, dict(r["pointers_before"]))
        store.finish_retrain(
            int(r["id"]), "aborted", {"reason": "interrupted; pointers restored", "moved": moved}
        )
        event(log, "retrain.recovered", run_id=int(r["id"]), moved=len(moved))
        out.append(int(r["id"]))
    return out


def merge_samples(
    data: pd.DataFrame, samples: pd.DataFrame, horizons: Sequence[int]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The training set with the samples' realized labels: a sample overrides the label of its
    (symbol, date, horizon) row — the row's forward return stays the one computed from prices
    over the same window — and a row the set lacks is appended when the sample carries its
    h-day return (a legacy 14-day outcome does not: :mod:`turbomode.outcomes.samples`)."""
    if samples.empty:
        return data, {"replaced": 0, "appended": 0}
    merged = data.copy()
    key = pd.MultiIndex.from_frame(merged[["symbol", "date"]])
    pos = pd.Series(np.arange(len(merged)), index=key)
    replaced = appended = 0
    extra: list[pd.DataFrame] = []
    for h in horizons:
        lab, ret = f"label_{h}", f"fwd_ret_{h}"
        if lab not in samples:
            continue
        part = samples[samples[lab].notna()]
        if part.empty:
            continue
        skey = pd.MultiIndex.from_frame(part[["symbol", "date"]])
        found = skey.isin(key)
        idx = pos.reindex(skey[found]).to_numpy()
        merged.loc[merged.index[idx], lab] = part.loc[found, lab].to_numpy()
        replaced += int(found.sum())
        new = ~found & part[ret].notna().to_numpy()
        if new.any():
            extra.append(part.loc[new])
            appended += int(new.sum())
    if extra:
        merged = pd.concat([merged, *extra], ignore_index=True)
    for h in horizons:
        if f"label_{h}" in merged:
            merged[f"label_{h}"] = merged[f"label_{h}"].astype("Int8")
    return merged, {"replaced": replaced, "appended": appended}


def retrain(
    settings: Settings,
    store: SignalStore | None = None,
    data: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    min_samples: int | None = None,
    use_ray: bool = True,
    force: bool = False,
    sectors: Sequence[str] | None = None,
) -> RetrainResult:
    """Retrain when enough new samples accumulated; gate; promote or keep; write a report.

    ``data`` is the historical training set, or a function building it only when a retrain
    runs (default: from Feast, as ``turbomode train``); ``sectors`` limits the tasks.
    """
    from turbomode.feature_store import FeatureLayout
    from turbomode.job_metrics import job_metrics
    from turbomode.models.pipeline import apply_decisions, run_training
    from turbomode.models.train import all_tasks

    need = settings.outcomes.min_new_samples if min_samples is None else min_samples
    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    store = store or SignalStore(settings.stores.signals_url)
    store.migrate()
    with job_metrics("retrain", settings.stores.pushgateway_url) as metrics:
        recovered = recover(store, registry)
        runs = store.retrain_runs()
        done = runs[runs["status"].isin(DONE)] if len(runs) else runs
        last_id = int(done["max_sample_id"].max()) if len(done) else 0
        new = store.samples_after(last_id)
        keys = [t.key for t in all_tasks(settings, sectors)]
        before = production_pointers(registry, keys)
        # A task without any production model issues no signals, so it would never earn the
        # samples that trigger a retrain: it is retrained on schedule (cold start) until a
        # candidate passes the gate; the others wait for their samples.
        cold = [k for k, v in before.items() if v is None]
        only: list[str] | None = None
        if len(new) < need and not force:
            if not cold:
                report: dict[str, Any] = {
                    "reason": f"waiting for samples: {len(new)} new, {need} needed"
                }
                run_id = store.start_retrain({}, len(new), last_id)
                store.finish_retrain(run_id, "skipped", report)
                _push_state(metrics, store, before)
                event(log, "retrain.skipped", new_samples=len(new), needed=need)
                return RetrainResult(
                    "skipped", run_id, len(new), recovered=recovered, report=report
                )
            only = cold
        # A cold-start run does not consume the samples: they still count toward the next.
        max_id = last_id if only is not None else int(new["id"].max()) if len(new) else last_id
        run_id = store.start_retrain(before, len(new), max_id)
        try:
            from turbomode.models.train import training_set

            names = FeatureLayout.from_registry().all
            history = training_set(settings) if data is None else data() if callable(data) else data
            everything = store.samples_after(0)
            rows = samples_as_training_rows(everything, names)
            merged, counts = merge_samples(history, rows, settings.labels.horizons)
            run = run_training(
                settings, sectors=sectors, data=merged, use_ray=use_ray, promote=False, keys=only
            )
            promoted = apply_decisions(run, registry)
        except BaseException as exc:
            moved = restore_pointers(registry, before)
            report = {"error": f"{type(exc).__name__}: {exc}", "restored": moved}
            store.finish_retrain(run_id, "failed", report)
            metrics.rows.labels(stage="failed").inc()
            event(log, "retrain.failed", run_id=run_id, error=str(exc), restored=len(moved))
            raise
        refused = sorted(k for k, g in run.gates.items() if not g.promoted)
        failed = sorted(r.key for r in run.results if not r.ok)
        status = "promoted" if promoted else "kept"
        report = {
            "mode": "cold start (tasks without production)" if only is not None else "samples",
            "training_run": run.run_id,
            "new_samples": len(new),
            "samples_used": len(everything),
            "samples_merge": counts,
            "promoted": promoted,
            "refused": refused,
            "failed_tasks": failed,
            "decisions": {
                k: {"decision": g.decision, "rule": g.deciding_rule, "reason": g.reason}
                for k, g in sorted(run.gates.items())
            },
            "production_before": before,
            "production_after": production_pointers(registry, keys),
        }
        store.finish_retrain(run_id, status, report)
        _push_state(metrics, store, report["production_after"])
        metrics.rows.labels(stage="promoted").inc(len(promoted))
        metrics.rows.labels(stage="refused").inc(len(refused))
    path = write_report(run_id, status, report, settings)
    event(log, "retrain.done", run_id=run_id, status=status, promoted=len(promoted))
    return RetrainResult(status, run_id, len(new), promoted, refused, recovered, report, str(path))


def _push_state(metrics: JobMetrics, store: SignalStore, pointers: dict[str, str | None]) -> None:
    """The gauges the refused-twice alert and the model-quality dashboard read."""
    streak = consecutive_refusals(store.retrain_runs())
    metrics.gauge("turbomode_retrain_consecutive_refusals").set(streak)
    live = sum(v is not None for v in pointers.values())
    metrics.gauge("turbomode_production_models").set(live)


def write_report(run_id: int, status: str, report: dict[str, Any], settings: Settings) -> Any:
    """``data/reports/retrain_<id>.{json,md}``: what was decided and which rule decided it."""
    directory = Workspace.of(settings).reports_dir
    atomic_write_json(
        {"run_id": run_id, "status": status, **report}, directory / f"retrain_{run_id}.json"
    )
    lines = [
        f"# Retrain {run_id}: {status}",
        "",
        f"New samples: {report['new_samples']}; samples used: {report['samples_used']} "
        f"(replaced {report['samples_merge']['replaced']} historical labels, appended "
        f"{report['samples_merge']['appended']} rows).",
        "",
        "| model | decision | rule | reason |",
        "|---|---|---|---|",
    ]
    for key, d in report["decisions"].items():
        reason = str(d["reason"]).replace("|", "\\|")
        lines.append(f"| {key} | {d['decision']} | {d['rule']} | {reason} |")
    path = directory / f"retrain_{run_id}.md"
    atomic_write_text("\n".join(lines) + "\n", path)
    return path
