"""What every KFP component does the same way inside its container.

A component receives its settings as a path (the ``config`` parameter), hands its report to
the next step as a JSON artifact and logs its figures as KFP metrics. Those three chores live
here once, so each component body stays a few lines over the ``turbomode`` function it wraps.
Nothing here imports kfp: artifacts are used through their ``path``, ``metadata`` and
``log_metric`` only, which is all a component is given at run time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from turbomode.config import Settings, load_settings
from turbomode.errors import TurboModeError


class ArtifactLike(Protocol):
    """The part of ``kfp.dsl.Artifact`` a component touches."""

    path: str
    metadata: dict[str, Any]


class MetricsLike(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


class StoreMismatchError(TurboModeError):
    """A step reads a different store than the step before it wrote."""


class UnsetReferenceError(TurboModeError):
    """A setting refers to an environment variable (``${NAME}``) the step does not have."""


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_references(s: Settings, environ: Mapping[str, str] | None = None) -> Settings:
    """Replace every ``${NAME}`` in the string settings with the variable ``NAME``, in place.

    The Helm chart's pipeline settings file keeps passwords out of its store URLs
    (``postgresql+psycopg://turbomode:${POSTGRES_PASSWORD}@…``); each step gets the variables
    from the Secrets that hold them. A reference to an unset variable fails, naming the
    setting and the variable, never a value.
    """
    env = os.environ if environ is None else environ
    for section_name in type(s).model_fields:
        section = getattr(s, section_name)
        if not isinstance(section, BaseModel):
            continue
        for field_name in type(section).model_fields:
            value = getattr(section, field_name)
            if not isinstance(value, str) or "${" not in value:
                continue
            missing = [n for n in _REFERENCE.findall(value) if n not in env]
            if missing:
                raise UnsetReferenceError(
                    f"{section_name}.{field_name} refers to ${{{missing[0]}}}, which is not set "
                    "in this step's environment (on a cluster it comes from a Secret: see the "
                    "postgres_secret, redis_secret and model_registry_secret run parameters)"
                )
            setattr(section, field_name, _REFERENCE.sub(lambda m: env[m.group(1)], value))
    return s


def settings(config: str, ray_address: str = "") -> Settings:
    """Settings as the CLI builds them: defaults < YAML file ``config`` < TURBOMODE_* env,
    with ``${NAME}`` references expanded from the environment (:func:`expand_references`).

    ``config`` empty means no file. ``ray_address`` (or, failing that, RAY_ADDRESS in the
    step's environment) replaces ``compute.ray_address`` so a training step joins the cluster's
    Ray instead of starting one inside its pod.
    """
    s = expand_references(load_settings(Path(config) if config else None))
    address = ray_address or s.compute.ray_address or os.environ.get("RAY_ADDRESS") or None
    s.compute.ray_address = address
    return s


def split_list(text: str) -> list[str] | None:
    """``"A, B"`` → ``["A", "B"]``; empty → None (meaning: all)."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    return items or None


def store_location(settings: Settings) -> dict[str, str]:
    """Where this step's stores are, recorded on its artifact for the next step to check."""
    return {
        "data_dir": str(Path(settings.data.data_dir).resolve()),
        "model_registry_uri": settings.stores.model_registry_uri,
    }


def expect_same_store(artifact: ArtifactLike, settings: Settings) -> None:
    """Fail when the previous step wrote another store than this one reads.

    Steps exchange small reports; the data stays in the stores (a shared volume on a
    cluster). A step configured differently from its predecessor would otherwise read stale
    data and succeed.
    """
    here = store_location(settings)
    for key, value in here.items():
        there = artifact.metadata.get(key)
        if there is not None and there != value:
            raise StoreMismatchError(
                f"{key}: the previous step wrote {there!r} but this step reads {value!r}; "
                "give every step the same config"
            )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a DataFrame
        return _plain(value.to_dict(orient="records"))
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return _plain(value.item())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_json(artifact: ArtifactLike, payload: Any) -> Any:
    """Write ``payload`` (dataclasses, frames, dates, numpy scalars allowed) as the artifact's
    JSON file; return the plain form written."""
    plain = _plain(payload)
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plain, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return plain


def read_json(artifact: ArtifactLike) -> Any:
    return json.loads(Path(artifact.path).read_text(encoding="utf-8"))


def copy_file(source: str | Path, artifact: ArtifactLike) -> None:
    """Copy a file the library wrote (a report, tonight's signals) into the artifact."""
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, artifact.path)


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among ``values`` (bools as 0/1; lists and mappings as their size).
    Ids are not figures: ``*_id`` keys are left out."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if name == "id" or name.endswith("_id"):
            continue
        if isinstance(value, int | float) and math.isfinite(value):  # bool is an int
            out[name] = float(value)
        elif isinstance(value, list | tuple | set | frozenset | Mapping):
            out[f"n_{name}"] = float(len(value))
    return out


def log_metrics(metrics: MetricsLike, values: Mapping[str, Any]) -> dict[str, float]:
    """Log every finite figure of ``values`` on a KFP Metrics artifact; return what was logged."""
    logged = numbers(values)
    for name, value in logged.items():
        metrics.log_metric(name, value)
    return logged


def publish_result(result: Any, artifact: ArtifactLike, metrics: MetricsLike) -> dict[str, float]:
    """A job's result dataclass: the whole of it as JSON, its top-level figures as metrics."""
    plain = write_json(artifact, result)
    if not isinstance(plain, dict):
        raise TypeError(f"expected a dataclass or mapping result, got {type(result).__name__}")
    return log_metrics(metrics, plain)


def evaluation_figures(run_report: Mapping[str, Any]) -> dict[str, float]:
    """Headline figures of a training run report (``reports/train_<run>.json``): tasks
    trained and failed, gate decisions, and the mean out-of-time rank IC and balanced accuracy
    of the ensembles beside each baseline, measured on the same rows."""
    rows = run_report.get("evaluation", [])
    gates = run_report.get("gates", {})
    tasks = {(r["sector"], r["horizon"]) for r in rows}
    failed = {(r["sector"], r["horizon"]) for r in rows if r["model"] == "FAILED"}
    out: dict[str, float] = {
        "tasks": float(len(tasks)),
        "trained": float(len(tasks - failed)),
        "failed": float(len(failed)),
        "gate_promote": float(sum(g["decision"] == "promote" for g in gates.values())),
        "gate_reject": float(sum(g["decision"] != "promote" for g in gates.values())),
    }
    by_model: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["model"] == "FAILED":
            continue
        figures = by_model.setdefault(r["model"], {"rank_ic": [], "balanced_accuracy": []})
        for metric, values in figures.items():
            value = r.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                values.append(float(value))
    for model, figures in sorted(by_model.items()):
        for metric, values in figures.items():
            if values:
                out[f"{model}_mean_{metric}"] = sum(values) / len(values)
    return out
