"""``turbomode train`` and ``evaluate``: the nightly ensembles and their out-of-time report;
``turbomode models …``: inspect the model registry, promote a version, roll back.

A thin adapter over :class:`turbomode.models.registry.ModelRegistry`; the registry location
comes from ``settings.stores.model_registry_uri`` (``TURBOMODE_STORES__MODEL_REGISTRY_URI``).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import console, handles_errors, print_frame, progress_bar, settings_from
from turbomode.errors import TurboModeError
from turbomode.models.registry import ModelRegistry
from turbomode.workspace import Workspace

models_app = typer.Typer(
    help="Model registry: list keys, show a version, promote, roll back.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

FamilyOption = Annotated[
    str, typer.Option("--family", help="Registry namespace (other systems use their own).")
]


def _registry(ctx: typer.Context, family: str) -> ModelRegistry:
    return ModelRegistry(settings_from(ctx).stores.model_registry_uri, family=family)


@models_app.command("list")
@handles_errors
def list_models(ctx: typer.Context, family: FamilyOption = "turbomode") -> None:
    """Every model key with its production version and how many versions are kept."""
    registry = _registry(ctx, family)
    rows = []
    for key in registry.list_keys():
        versions = registry.list_versions(key)
        rows.append((key, registry.production(key), len(versions), versions[-1:]))
    if not rows:
        console.print(f"no models in {escape(registry.root)} (family {escape(family)})")
        return
    table = Table(title=f"models in {escape(registry.root)} ({escape(family)})")
    table.add_column("key")
    table.add_column("production")
    table.add_column("versions", justify="right")
    table.add_column("latest")
    for key, prod, count, latest in rows:
        table.add_row(escape(key), prod or "—", str(count), latest[0] if latest else "—")
    console.print(table)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:80]
    return str(value)


def _gate_line(gate: dict[str, Any]) -> str:
    """The decision, the rule that made it, and which look on the key it was."""
    line = f"{gate.get('decision', '?')} — {gate.get('deciding_rule', '?')}"
    look = gate.get("look") or {}
    if look:
        line += f" (decision {look['number']} on this key, baselines at alpha {look['alpha']:.3g})"
    return line


@models_app.command()
@handles_errors
def show(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help='Model key, e.g. "Information Technology/1d".')],
    version: Annotated[
        str | None, typer.Option("--version", "-v", help="Version id (default: production).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest.")] = False,
    family: FamilyOption = "turbomode",
) -> None:
    """Summary of a version's manifest: provenance, metrics, artifacts with checksums."""
    registry = _registry(ctx, family)
    meta = registry.manifest(key, version)
    production = registry.production(key)
    looks = registry.looks(key)
    if as_json:
        console.print_json(json.dumps(meta, default=str))
        return
    summary = Table(title=f"{escape(key)} {meta['version']}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
    summary.add_row("production", "yes" if meta["version"] == production else f"no ({production})")
    for field in ("created_at", "registered_at", "run_id", "code_version", "data_range"):
        if field in meta:
            summary.add_row(field, escape(_scalar(meta[field])))
    if "data_hash" in meta:
        summary.add_row("data_hash", escape(str(meta["data_hash"])[:16]))
    if isinstance(meta.get("features"), list):
        summary.add_row("features", str(len(meta["features"])))
    if isinstance(meta.get("gate"), dict):
        summary.add_row("gate", escape(_gate_line(meta["gate"])))
    summary.add_row("gate looks on this key", str(len(looks)))
    console.print(summary)
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and metrics:
        table = Table(title="metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in metrics.items():
            table.add_row(escape(str(name)), escape(_scalar(value)))
        console.print(table)
    _print_importance(meta.get("importance"))
    files = Table(title="artifacts")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    for name, info in meta["files"].items():
        files.add_row(escape(name), str(info["size"]), info["sha256"][:16] + "…")
    console.print(files)


def _print_importance(importance: Any, top: int = 10) -> None:
    """The manifest's global view: mean |contribution| per group and the top features."""
    if not isinstance(importance, dict) or not importance.get("features"):
        return
    rows = importance.get("rows", "?")
    for kind, names in (
        ("group", importance.get("groups", {})),
        ("feature", importance["features"]),
    ):
        table = Table(
            title=f"mean |contribution| to {importance.get('output')} by {kind} ({rows} rows)"
        )
        table.add_column(kind)
        table.add_column("mean |contribution|", justify="right")
        for name, value in sorted(names.items(), key=lambda kv: -kv[1])[:top]:
            table.add_row(escape(str(name)), f"{value:.4f}")
        console.print(table)


@models_app.command()
@handles_errors
def promote(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Model key.")],
    version: Annotated[str, typer.Argument(help="Version id to make production.")],
    family: FamilyOption = "turbomode",
) -> None:
    """Verify a version's checksums and make it production (the old one stays for rollback)."""
    registry = _registry(ctx, family)
    before = registry.production(key)
    registry.promote(key, version)
    console.print(f"{escape(key)}: production {before or '—'} → {version}")


@models_app.command()
@handles_errors
def rollback(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Model key.")],
    family: FamilyOption = "turbomode",
) -> None:
    """Return production to the version before the current one."""
    registry = _registry(ctx, family)
    before = registry.production(key)
    after = registry.rollback(key)
    console.print(f"{escape(key)}: production {before} → {after} (rolled back)")


@handles_errors
def train_command(
    ctx: typer.Context,
    sector: Annotated[
        list[str] | None, typer.Option("--sector", help="Only these GICS sectors (repeatable).")
    ] = None,
    no_ray: Annotated[
        bool, typer.Option("--no-ray", help="Run the tasks one after another in this process.")
    ] = False,
) -> None:
    """Train every sector × horizon ensemble on Ray, evaluate out of time beside the
    baselines, register each candidate and promote the ones the gate accepts."""
    from turbomode.models.pipeline import run_training
    from turbomode.models.train import all_tasks

    settings = settings_from(ctx)
    total = len(all_tasks(settings, sector))
    with progress_bar(transient=False) as progress:
        bar = progress.add_task("training", total=total)

        def done(r: Any) -> None:
            mark = "[green]ok[/]" if r.ok else f"[red]failed[/] {escape(str(r.error))[:80]}"
            progress.console.print(f"{r.key}: {mark} ({r.seconds:.0f} s)")
            progress.update(bar, advance=1, description=f"training: {r.key}")

        run = run_training(settings, sector, use_ray=not no_ray, on_done=done)
    print_frame(run.summary(), f"Training run {run.run_id}")
    console.print(f"report: {run.report_paths['markdown']}")


@handles_errors
def evaluate_command(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Option("--run", help="Run id, or 'latest'.")] = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Show a training run's out-of-time evaluation: every (sector, horizon) beside the
    majority, prior and momentum baselines (also written as JSON and Markdown)."""
    import pandas as pd

    settings = settings_from(ctx)
    path = Workspace.of(settings).reports_dir / f"train_{run_id}.json"
    if not path.exists():
        raise TurboModeError(f"no training report {path}: run `turbomode train` first")
    payload = json.loads(path.read_text())
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = pd.DataFrame(payload["evaluation"])
    print_frame(
        table.drop(columns=[c for c in ("error",) if c in table]), f"Run {payload['run_id']}"
    )
    console.print(f"markdown: {path.with_suffix('.md')}")
