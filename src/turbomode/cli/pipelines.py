"""``turbomode pipelines …``: list, compile, run locally through KFP's local runner, submit to
a Kubeflow Pipelines endpoint.

A thin adapter over :mod:`turbomode.pipelines`. Mounted under the main app it honours the
global ``--config`` (passed to every step as its ``config`` parameter) and ``--data-dir``
(passed to every step as TURBOMODE_DATA__DATA_DIR).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import console, fail, global_options, handles_errors, settings_from
from turbomode.errors import TurboModeError
from turbomode.workspace import Workspace

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
def list_pipelines() -> None:
    """Every pipeline with its run parameters and compiled file."""
    from turbomode.pipelines.definitions import PIPELINES
    from turbomode.pipelines.runs import parameter_types

    table = Table(title="pipelines")
    for col in ("name", "what", "parameters", "file"):
        table.add_column(col)
    for name, info in PIPELINES.items():
        params = ", ".join(parameter_types(name))
        table.add_row(name, escape(info.description), params, f"pipelines/{name}.yaml")
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
) -> None:
    """Run a pipeline here through KFP's local runner: the same components as on the
    cluster, each in a subprocess."""
    from turbomode.pipelines.runs import parse_params, run_local

    _known(name)
    config, data_dir = global_options(ctx)
    arguments = parse_params(name, params or [])
    settings = settings_from(ctx)
    if data_dir is not None:  # the steps are subprocesses: they read it from the env
        os.environ["TURBOMODE_DATA__DATA_DIR"] = str(data_dir.resolve())
    where = root or Workspace.of(settings).kfp_dir
    try:
        run = run_local(name, where, config, arguments)
    except RuntimeError as exc:  # KFP's local runner: a step that failed
        fail(exc)
    table = Table(title=f"{name}: {len(run.steps)} steps in {run.seconds:.0f} s")
    table.add_column("step")
    table.add_column("metrics")
    for step, outputs in run.steps.items():
        figures = ", ".join(f"{k}={v:g}" for k, v in outputs.metrics.items())
        table.add_row(step, figures or "—")
    console.print(table)
    console.print(f"step outputs: {run.run_dir}")


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
