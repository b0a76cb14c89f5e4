"""Running a pipeline: here through KFP's local runner, or on a KFP endpoint.

The local runner executes the same compiled components as the cluster, each in a
subprocess of this Python (no container, no volume: the settings' local paths are the
stores). A submit uploads the freshly compiled pipeline as a version (named by its content,
so an unchanged pipeline is uploaded once) and starts a run of that version.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

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

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / LOGS


@dataclass(frozen=True)
class StepDone:
    """One step of a local run, as it finished: what a caller reports line by line."""

    name: str
    ok: bool
    seconds: float
    outputs: StepOutputs
    attempt: int = 1  # network steps are retried after a pause (definitions.RETRIES)


class PipelineStepError(TurboModeError):
    """A step of a local run failed; the message ends with its last log lines and names the
    step's full log."""

    def __init__(self, pipeline: str, step: str, log: Path, tail: list[str]) -> None:
        self.step, self.log, self.tail = step, log, tail
        lines = "\n".join(f"  {line}" for line in tail)
        super().__init__(
            f"pipeline {pipeline!r} failed at step {step!r}; its last log lines:\n{lines}\n"
            f"full log: {log}"
        )


# Under each run directory: one log per step (the KFP runner's and the step's own output) and
# the runner's lines between steps; the console shows one line per step instead.
LOGS = "logs"
RUNNER_LOG = "_runner.log"
TAIL_LINES = 15
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (SUCCESS|FAILURE)")
_OUTPUT_FILE = re.compile(r'"outputFile": "([^"]+)"')


def read_step(output: Path) -> StepOutputs:
    """A step's metrics and artifact locations, from the ``executor_output.json`` KFP writes."""
    doc = json.loads(output.read_text())
    step = StepOutputs()
    for key, group in doc.get("artifacts", {}).items():
        for artifact in group.get("artifacts", []):
            if key == "metrics":
                step.metrics.update(artifact.get("metadata", {}))
            else:
                step.artifacts[key] = artifact["uri"]
    return step


def read_run_dir(run_dir: Path) -> dict[str, StepOutputs]:
    """Each step's outputs, in the order the steps ran."""
    outputs = sorted(run_dir.glob("*/executor_output.json"), key=lambda p: p.stat().st_mtime)
    return {output.parent.name: read_step(output) for output in outputs}


class _RunnerLog(io.TextIOBase):
    """Where ``kfp.local`` prints (its own log lines and each step's streamed output): split
    into one file per step under ``directory``, colour codes removed, with a callback as each
    step finishes (called with ``outside`` as stdout again); ``echo`` also passes everything
    through to ``outside`` (``--verbose``)."""

    def __init__(
        self,
        directory: Path,
        on_step: Callable[[StepDone], None] | None,
        outside: TextIO,
        echo: bool,
    ) -> None:
        self.directory = directory
        self.on_step = on_step
        self.outside = outside
        self.echo = echo
        self.colour = outside.isatty()
        self.partial = ""
        self.step: str | None = None
        self.started = 0.0
        self.output_file: dict[str, Path] = {}
        self.attempts: dict[str, int] = {}
        self.failed: str | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.file = (directory / RUNNER_LOG).open("a", encoding="utf-8")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.echo:  # colour codes only for a terminal
            self.outside.write(text if self.colour else _ANSI.sub("", text))
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self._line(_ANSI.sub("", line))
        return len(text)

    def _line(self, line: str) -> None:
        started = _STARTED.search(line)
        if started:
            self._switch(started.group(1))
        self.file.write(line + "\n")
        self.file.flush()
        if self.step is not None and (found := _OUTPUT_FILE.search(line)):
            self.output_file.setdefault(self.step, Path(found.group(1)))
        finished = _FINISHED.search(line)
        if finished and finished.group(1) == self.step:
            self._finish(finished.group(1), finished.group(2) == "SUCCESS")

    def _switch(self, step: str) -> None:
        self.file.close()
        self.step, self.started = step, time.perf_counter()
        self.attempts[step] = self.attempts.get(step, 0) + 1
        self.file = self.log(step).open("a", encoding="utf-8")

    def _finish(self, step: str, ok: bool) -> None:
        seconds = time.perf_counter() - self.started
        output = self.output_file.get(step)
        outputs = read_step(output) if ok and output is not None and output.exists() else None
        if not ok:
            self.failed = step
        if self.on_step is not None:
            with contextlib.redirect_stdout(self.outside):
                done = StepDone(step, ok, seconds, outputs or StepOutputs(), self.attempts[step])
                self.on_step(done)

    def log(self, step: str) -> Path:
        return self.directory / f"{step}.log"

    def close(self) -> None:
        if self.partial:
            self._line(_ANSI.sub("", self.partial))
            self.partial = ""
        self.file.close()
        super().close()


def log_tail(log: Path, n: int = TAIL_LINES) -> list[str]:
    """A step's own last ``n`` non-blank lines (what the runner printed after the step ended
    left out), without the runner's indentation."""
    lines: list[str] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if _FINISHED.search(line):
            break
        if line.strip():
            lines.append(line.rstrip().removeprefix("    "))
    return lines[-n:]


def read_artifact(run: LocalRun, step: str, output: str) -> Any:
    """A step's JSON output artifact."""
    return json.loads(Path(run.steps[step].artifacts[output]).read_text(encoding="utf-8"))


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
    on_step: Callable[[StepDone], None] | None = None,
    echo: bool = False,
) -> LocalRun:
    """Run pipeline ``name`` through ``kfp.local`` with the settings file ``config``.

    What the runner prints goes to ``<run dir>/logs/<step>.log`` (and to stdout with ``echo``
    set: ``--verbose``); ``on_step`` hears of each step as it finishes. A failed step raises
    :class:`PipelineStepError` with its last log lines.
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
    staging = Path(tempfile.mkdtemp(prefix=".logs-", dir=root))
    sink = _RunnerLog(staging, on_step, sys.stdout, echo)
    t0 = time.perf_counter()
    error: RuntimeError | None = None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            # The subprocess runner warns for any image whose name lacks "python"; here the
            # components run in this Python, which has everything the image has.
            warnings.filterwarnings("ignore", message=".*non-Python base image.*")
            # KFP warns, step by step, that cluster-only settings (display names) do nothing.
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
            pipeline(**arguments)
    except RuntimeError as exc:  # KFP's local runner: a step failed
        error = exc
    finally:
        sink.close()
    seconds = time.perf_counter() - t0
    prefix = pipeline.pipeline_spec.pipeline_info.name + "-"
    made = [p for p in set(root.iterdir()) - before if p.name.startswith(prefix)]
    logs = made[0] / LOGS if len(made) == 1 else staging
    if logs != staging:
        staging.rename(logs)
    if error is not None:
        if sink.failed is None:
            raise TurboModeError(f"pipeline {name!r} failed: {error} (log: {logs})") from error
        log = logs / f"{sink.failed}.log"
        raise PipelineStepError(name, sink.failed, log, log_tail(log)) from error
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
