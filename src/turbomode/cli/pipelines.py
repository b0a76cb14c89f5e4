"""``turbomode pipelines …``: list, compile, run locally through KFP's local runner, submit to
a Kubeflow Pipelines endpoint.

A thin adapter over :mod:`turbomode.pipelines`. Mounted under the main app it honours the
global ``--config`` (passed to every step as its ``config`` parameter) and ``--data-dir``
(passed to every step as TURBOMODE_DATA__DATA_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import (
    console,
    fail,
    global_options,
    handles_errors,
    print_json,
    settings_from,
)
from turbomode.cli.serve import DEFAULT_PORT
from turbomode.config import Settings
from turbomode.errors import TurboModeError
from turbomode.workspace import Workspace

if TYPE_CHECKING:
    from turbomode.pipelines.runs import LocalRun, StepDone

pipelines_app = typer.Typer(
    help="Kubeflow pipelines: list, compile to YAML, run locally, submit to a KFP endpoint.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Run parameter KEY=VALUE (repeatable)."),
]


def _known(name: str) -> str:
    from turbomode.pipelines.definitions import PIPELINES

    if name not in PIPELINES:
        fail(TurboModeError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}"))
    return name


@pipelines_app.command("list")
def list_pipelines(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """Every pipeline with its run parameters and compiled file."""
    from turbomode.pipelines.definitions import PIPELINES
    from turbomode.pipelines.runs import parameter_types

    rows: list[dict[str, Any]] = [
        {
            "name": name,
            "what": info.description,
            "parameters": parameter_types(name),
            "file": f"pipelines/{name}.yaml",
        }
        for name, info in PIPELINES.items()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title="pipelines")
    for col in ("name", "what", "parameters", "file"):
        table.add_column(col, overflow="fold")
    for row in rows:
        params = ", ".join(row["parameters"])
        table.add_row(row["name"], escape(row["what"]), params, row["file"])
    console.print(table)


@pipelines_app.command("compile")
@handles_errors
def compile_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the pipeline YAML.")] = Path(
        "pipelines"
    ),
    components_out: Annotated[
        Path | None,
        typer.Option("--components-out", help="Directory for one YAML per component."),
    ] = Path("components"),
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="Components image (default: TURBOMODE_COMPONENTS_IMAGE, else "
            "turbomode/components:<version>, what `make images` tags and the chart pulls).",
        ),
    ] = None,
) -> None:
    """Compile every pipeline (and component) to YAML, ready to upload or diff."""
    from turbomode.pipelines.definitions import compile_all

    written = compile_all(out, components_out, image)
    for path in written:
        console.print(f"wrote {path}")


@pipelines_app.command("run-local")
@handles_errors
def run_local_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Pipeline name (see `list`).")],
    params: ParamOption = None,
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Where step outputs go (default: <data_dir>/kfp)."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also print the runner's and each step's full log here."
        ),
    ] = False,
) -> None:
    """Run a pipeline here through KFP's local runner: the same components as on the
    cluster, each in a subprocess. One line per step, then what the run did and what to do
    next; each step's full log is kept under the run's directory."""
    from turbomode.pipelines.runs import parse_params, run_local

    _known(name)
    config, data_dir = global_options(ctx)
    arguments = parse_params(name, params or [])
    settings = settings_from(ctx)
    where = root or Workspace.of(settings).kfp_dir
    console.print(f"[bold]{escape(name)}[/]: running through KFP's local runner")
    # The steps are subprocesses: they read --data-dir from the environment, set for the run
    # only (a caller in the same process keeps its own).
    previous = os.environ.get(DATA_DIR_ENV)
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    try:
        # A failed step raises PipelineStepError: its last log lines, through the one handler.
        run = run_local(name, where, config, arguments, on_step=_print_step, echo=verbose)
    finally:
        if previous is None:
            os.environ.pop(DATA_DIR_ENV, None)
        else:
            os.environ[DATA_DIR_ENV] = previous
    console.print(f"[bold]{escape(name)}[/]: {len(run.steps)} steps in {run.seconds:.0f} s")
    for line in run_summary(run, settings):
        console.print(line, highlight=False)
    console.print(f"step outputs and logs: {escape(str(run.run_dir))}", highlight=False)


DATA_DIR_ENV = "TURBOMODE_DATA__DATA_DIR"


def _print_step(step: StepDone) -> None:
    """One line as each step ends: outcome, time, its first figures."""
    mark = "[green]ok[/]    " if step.ok else "[red]failed[/]"
    figures = " ".join(f"{k}={v:g}" for k, v in list(step.outputs.metrics.items())[:STEP_FIGURES])
    if step.attempt > 1 or not step.ok:
        figures = f"(try {step.attempt}) {figures}"
    console.print(f"  {mark} {step.name:<18} {step.seconds:6.1f} s  {figures}", highlight=False)


# Figures on a step's line (the summary and the step's outputs have the rest).
STEP_FIGURES = 6


def run_summary(run: LocalRun, settings: Settings) -> list[str]:
    """What a newcomer wants after a run: what was promoted or refused and why, tonight's
    signals, where the reports and scans are, and the commands to look at them."""
    from turbomode.pipelines.runs import read_artifact

    lines: list[str] = []
    work = Workspace.of(settings)
    if "evaluate-and-gate" in run.steps:
        decisions = read_artifact(run, "evaluate-and-gate", "decisions")
        promoted = sorted(k for k, d in decisions.items() if d["gate"]["decision"] == "promote")
        refused: dict[str, list[str]] = {}
        for key, d in sorted(decisions.items()):
            if d["gate"]["decision"] != "promote":
                refused.setdefault(str(d["gate"].get("deciding_rule") or "?"), []).append(key)
        lines.append(f"gate: {len(promoted)} of {len(decisions)} task(s) promoted")
        for rule, keys in sorted(refused.items(), key=lambda kv: -len(kv[1])):
            lines.append(f"  refused {len(keys)} — {escape(rule)}: {escape(', '.join(keys))}")
        run_id = read_artifact(run, "train", "run")["run_id"]
        lines.append(f"report: {escape(str(work.reports_dir / f'train_{run_id}.md'))}")
        lines.append(f"  read it: turbomode evaluate --run {run_id}")
    if "scan" in run.steps:
        scan = run.steps["scan"].metrics
        doc = read_artifact(run, "scan", "signals")
        if scan.get("new_bar") == 0:
            lines.append(f"scan: no new bar since the scan of {doc['scan_date']}")
        else:
            lines.append(
                f"scan of {doc['scan_date']}: {scan['scored']:g}/{scan['symbols']:g} symbols "
                f"scored, {scan['signals_fresh']:g} fresh signal(s), {scan['signals_active']:g} "
                f"active, {scan['missing_models']:g} sector/horizon(s) without a production model"
            )
        lines.append(f"scans: {escape(str(work.scans_dir))}")
    lines.append(
        "next: turbomode signals · turbomode status · turbomode serve, then open "
        f"http://127.0.0.1:{DEFAULT_PORT}/dashboard"
    )
    return lines


@pipelines_app.command("submit")
@handles_errors
def submit_command(
    name: Annotated[str, typer.Argument(help="Pipeline name (see `list`).")],
    host: Annotated[str, typer.Option("--host", help="KFP API endpoint, e.g. http://…:8888.")],
    experiment: Annotated[str, typer.Option("--experiment", help="Experiment name.")] = (
        "turbomode"
    ),
    params: ParamOption = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Namespace (multi-user KFP).")
    ] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Run display name.")] = None,
    image: Annotated[str | None, typer.Option("--image", help="Components image.")] = None,
) -> None:
    """Upload the pipeline (a new version only when its YAML changed) and start a run."""
    from turbomode.pipelines.runs import parse_params, submit

    _known(name)
    arguments = parse_params(name, params or [])
    done = submit(name, host, experiment, arguments, namespace, run_name, image)
    state = "uploaded" if done.uploaded else "already there"
    console.print(f"pipeline {done.pipeline_id}, version {done.version_name} ({state})")
    console.print(f"run {done.run_id} in experiment {experiment} ({done.experiment_id})")
