"""Running a pipeline: here through KFP's local runner, or on a KFP endpoint.

The local runner executes the same compiled components as the cluster, each in a
subprocess of this Python (no container, no volume: the settings' local paths are the
stores). A submit uploads the freshly compiled pipeline as a version (named by its content,
so an unchanged pipeline is uploaded once) and starts a run of that version.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turbomode import __version__
from turbomode.errors import TurboModeError
from turbomode.pipelines.definitions import PIPELINES, compile_pipeline, get_pipeline


class PipelineParameterError(TurboModeError, ValueError):
    """A ``--param`` that the pipeline does not take, or a value of the wrong type."""


class KfpApiError(TurboModeError):
    """The KFP endpoint could not be reached, or refused a request."""


_CASTS: dict[str, Any] = {"String": str, "Integer": int, "Float": float}


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parameter_types(name: str) -> dict[str, str]:
    """The run parameters of pipeline ``name`` and their KFP types."""
    inputs = get_pipeline(name).component_spec.inputs or {}
    return {key: str(spec.type) for key, spec in inputs.items()}


def parse_params(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["k=v", …]`` → arguments typed as the pipeline declares them."""
    types = parameter_types(name)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PipelineParameterError(f"--param takes KEY=VALUE, got {pair!r}")
        if key not in types:
            raise PipelineParameterError(
                f"pipeline {name!r} has no parameter {key!r}; it takes: {', '.join(types)}"
            )
        cast = _boolean if types[key] == "Boolean" else _CASTS.get(types[key], str)
        try:
            out[key] = cast(value)
        except ValueError as exc:
            raise PipelineParameterError(f"{key}: {types[key]} expected, got {value!r}") from exc
    return out


# ---------------------------------------------------------------------------------- local


@dataclass
class StepOutputs:
    """What one step left behind: its metrics and where each output artifact is."""

    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalRun:
    name: str
    run_dir: Path
    steps: dict[str, StepOutputs]
    seconds: float


def read_run_dir(run_dir: Path) -> dict[str, StepOutputs]:
    """Each step's outputs, in the order the steps ran, from the ``executor_output.json``
    KFP writes for each."""
    steps: dict[str, StepOutputs] = {}
    for output in sorted(run_dir.glob("*/executor_output.json"), key=lambda p: p.stat().st_mtime):
        doc = json.loads(output.read_text())
        step = StepOutputs()
        for key, group in doc.get("artifacts", {}).items():
            for artifact in group.get("artifacts", []):
                if key == "metrics":
                    step.metrics.update(artifact.get("metadata", {}))
                else:
                    step.artifacts[key] = artifact["uri"]
        steps[output.parent.name] = step
    return steps


def _hide_shadowed_docker_sdk() -> None:
    """kfp.local imports the Docker SDK when it can. Run from this repository's root, the
    ``docker/`` directory (the Dockerfiles) imports as an empty namespace package instead and
    kfp.local fails on it; mark the SDK absent then, which kfp.local handles."""
    import importlib.util
    import sys

    if "docker" in sys.modules:
        loaded = sys.modules["docker"]
        if loaded is not None and getattr(loaded, "__file__", None) is None:
            sys.modules["docker"] = None  # type: ignore[assignment]
        return
    spec = importlib.util.find_spec("docker")
    if spec is not None and spec.origin is None:
        sys.modules["docker"] = None  # type: ignore[assignment]


def run_local(
    name: str,
    root: Path,
    config: Path | None = None,
    params: dict[str, Any] | None = None,
) -> LocalRun:
    """Run pipeline ``name`` through ``kfp.local`` with the settings file ``config``.

    Raises when a step fails (the step's own log has been streamed above by KFP).
    """
    _hide_shadowed_docker_sdk()
    from kfp import local

    pipeline = get_pipeline(name)
    arguments: dict[str, Any] = {"config": str(config.resolve()) if config else ""}
    arguments.update(params or {})
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    before = set(root.iterdir())
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # The subprocess runner warns for any image whose name lacks "python"; here the
        # components run in this Python, which has everything the image has.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        # KFP warns, step by step, that cluster-only settings (display names) do nothing here.
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        pipeline(**arguments)
    seconds = time.perf_counter() - t0
    prefix = pipeline.pipeline_spec.pipeline_info.name + "-"
    made = [p for p in set(root.iterdir()) - before if p.name.startswith(prefix)]
    if len(made) != 1:
        raise TurboModeError(f"expected one new run directory under {root}, found {len(made)}")
    return LocalRun(name, made[0], read_run_dir(made[0]), seconds)


# ---------------------------------------------------------------------------------- remote


@dataclass
class Submitted:
    """A run started on a KFP endpoint, with the ids a user looks it up by."""

    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    run_id: str
    uploaded: bool


def version_name(name: str, package: Path) -> str:
    """``<name>-<version>-<content hash>``: the same YAML is the same pipeline version."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    return f"{name}-{__version__}-{digest}"


def submit(
    name: str,
    host: str,
    experiment: str = "turbomode",
    params: dict[str, Any] | None = None,
    namespace: str | None = None,
    run_name: str | None = None,
    image: str | None = None,
) -> Submitted:
    """Upload pipeline ``name`` (a new version unless this exact YAML is there already) and
    start a run of it in ``experiment``."""
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return _submit(name, host, experiment, params, namespace, run_name, image)
    except HTTPError as exc:
        raise KfpApiError(f"cannot reach the KFP API at {host}: {exc}") from exc
    except ApiException as exc:
        body = exc.body or b""
        detail = (body.decode(errors="replace") if isinstance(body, bytes) else str(body))[:300]
        raise KfpApiError(
            f"the KFP API at {host} answered {exc.status} {exc.reason}: {detail.strip()}"
        ) from exc


def _submit(
    name: str,
    host: str,
    experiment: str,
    params: dict[str, Any] | None,
    namespace: str | None,
    run_name: str | None,
    image: str | None,
) -> Submitted:
    import kfp

    display = get_pipeline(name, image).pipeline_spec.pipeline_info.name
    description = PIPELINES[name].description
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(name, Path(tmp) / f"{name}.yaml", image)
        vname = version_name(name, package)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "works with KFP ≥ 2.0.0-beta.2"
            client = kfp.Client(host=host, namespace=namespace or "kubeflow")
        pipeline_id = client.get_pipeline_id(display)
        uploaded = False
        if pipeline_id is None:
            made = client.upload_pipeline(
                str(package), pipeline_name=display, description=description, namespace=namespace
            )
            pipeline_id = made.pipeline_id
            uploaded = True
        version_id = _version_id(client, pipeline_id, vname)
        if version_id is None:
            version = client.upload_pipeline_version(
                str(package), vname, pipeline_id=pipeline_id, description=description
            )
            version_id = version.pipeline_version_id
            uploaded = True
    exp = client.create_experiment(experiment, namespace=namespace)
    run = client.run_pipeline(
        experiment_id=exp.experiment_id,
        job_name=run_name or f"{name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
        params=params or {},
        pipeline_id=pipeline_id,
        version_id=version_id,
    )
    return Submitted(pipeline_id, version_id, vname, exp.experiment_id, run.run_id, uploaded)


def _version_id(client: Any, pipeline_id: str, name: str) -> str | None:
    """The id of the version called ``name``, if the pipeline has one."""
    wanted = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )
    found = client.list_pipeline_versions(pipeline_id, filter=wanted).pipeline_versions or []
    return str(found[0].pipeline_version_id) if found else None
