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

from turbomode.cli.common import (
    console,
    handles_errors,
    print_frame,
    print_json,
    progress_bar,
    settings_from,
)
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
def list_models(
    ctx: typer.Context,
    family: FamilyOption = "turbomode",
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """Every model key with its production version and how many versions are kept."""
    registry = _registry(ctx, family)
    rows: list[dict[str, Any]] = []
    for key in registry.list_keys():
        versions = registry.list_versions(key)
        rows.append(
            {
                "key": key,
                "production": registry.production(key),
                "versions": len(versions),
                "latest": versions[-1] if versions else None,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no models in {escape(registry.root)} (family {escape(family)})")
        return
    table = Table(title=f"models in {escape(registry.root)} ({escape(family)})")
    table.add_column("key", overflow="fold")
    table.add_column("production", overflow="fold")
    table.add_column("versions", justify="right")
    table.add_column("latest", overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["key"]), row["production"] or "—", str(row["versions"]), row["latest"] or "—"
        )
    console.print(table)
    console.print("every version of a key: turbomode models versions KEY", highlight=False)


@models_app.command("versions")
@handles_errors
def list_versions(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help='Model key, e.g. "Information Technology/1d".')],
    family: FamilyOption = "turbomode",
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """Every kept version of a key, oldest first: when it was registered, its out-of-time rank
    IC, the gate's decision, and which one is production."""
    registry = _registry(ctx, family)
    versions = registry.list_versions(key)
    if not versions:
        raise TurboModeError(
            f"no versions of {key!r} in {registry.root}; the keys there: turbomode models list"
        )
    production = registry.production(key)
    rows: list[dict[str, Any]] = []
    for version in versions:
        meta = registry.manifest(key, version)
        gate: dict[str, Any] = meta["gate"] if isinstance(meta.get("gate"), dict) else {}
        ensemble = (meta.get("metrics") or {}).get("ensemble") or {}
        rows.append(
            {
                "version": version,
                "production": version == production,
                "registered_at": meta.get("registered_at"),
                "run_id": meta.get("run_id"),
                "rank_ic": (ensemble.get("rank_ic") or {}).get("mean_ic"),
                "gate": gate.get("decision"),
                "gate_rule": gate.get("deciding_rule"),
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{escape(key)}: {len(rows)} version(s)")
    for col in ("version", "production", "registered", "out-of-time rank IC", "gate", "rule"):
        table.add_column(col, overflow="fold")
    for row in rows:
        ic = row["rank_ic"]
        table.add_row(
            row["version"],
            "yes" if row["production"] else "",
            str(row["registered_at"] or ""),
            "" if ic is None else f"{ic:.3f}",
            escape(str(row["gate"] or "")),
            escape(str(row["gate_rule"] or "")),
        )
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
    force: Annotated[
        bool, typer.Option("--force", help="Promote even a version the gate rejected.")
    ] = False,
    family: FamilyOption = "turbomode",
) -> None:
    """Verify a version's checksums and make it production (the old one stays for rollback).
    A version the gate rejected is refused unless --force."""
    registry = _registry(ctx, family)
    found = registry.manifest(key, version).get("gate")  # an unknown version: names the command
    gate: dict[str, Any] = found if isinstance(found, dict) else {}
    decision = gate.get("decision")
    if decision is not None and decision != "promote" and not force:
        raise TurboModeError(
            f"the gate rejected {key!r} version {version} ({_gate_line(gate)}); "
            "promote it anyway with --force"
        )
    before = registry.production(key)
    registry.promote(key, version)
    note = f" (the gate had {decision} it; forced)" if decision not in (None, "promote") else ""
    console.print(f"{escape(key)}: production {before or '—'} → {version}{escape(note)}")


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
    settings = settings_from(ctx)
    path = Workspace.of(settings).reports_dir / f"train_{run_id}.json"
    if not path.exists():
        raise TurboModeError(f"no training report {path}: run `turbomode train` first")
    payload = json.loads(path.read_text())
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = honest_table(payload)
    model = ", ".join(
        sorted(
            {str(r["model"]) for r in payload["evaluation"]}
            - BASELINES
            - {"FAILED"}
            - {str(r["model"]) for r in payload["evaluation"] if is_learner(r["model"])}
        )
    )
    print_frame(table, f"Run {payload['run_id']}: {model or 'no model'} beside the baselines")
    console.print(
        "rank IC: mean daily rank correlation of the score with the next return (IC t: its "
        "t-statistic); balanced accuracy (bal. acc.) over BUY / HOLD / SELL, 1/3 is chance. "
        "All metrics: "
        f"--json or {path.with_suffix('.md')}",
        highlight=False,
    )


# The naive baselines every model is measured beside, on the same rows.
BASELINES = frozenset({"majority", "prior", "momentum"})
# Rows of one base learner of a stacked ensemble (turbomode.models.train.LEARNER_PREFIX).
LEARNER_PREFIX = "base:"


def is_learner(model: object) -> bool:
    return str(model).startswith(LEARNER_PREFIX)


def honest_table(payload: dict[str, Any]) -> Any:
    """The evaluation of a training report as one row per (sector, horizon): the model's rank
    IC and balanced accuracy beside each baseline's, and the gate's decision."""
    import pandas as pd

    gates = payload.get("gates", {})
    rows = []
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in payload["evaluation"]:
        by_key.setdefault((r["sector"], int(r["horizon"])), {})[str(r["model"])] = r
    for (sector, horizon), models in sorted(by_key.items()):
        base = {k: v for k, v in models.items() if k in BASELINES}
        learners = {k[len(LEARNER_PREFIX) :]: v for k, v in models.items() if is_learner(k)}
        own = next((v for k, v in models.items() if k not in BASELINES and not is_learner(k)), {})
        gate = gates.get(f"{sector}/{horizon}d", {})
        row: dict[str, Any] = {"sector": sector, "horizon": f"{horizon}d"}
        row["rank IC"] = own.get("rank_ic")
        row["IC t"] = own.get("ic_t")
        for name in sorted(base):
            row[f"rank IC\n{name}"] = base[name].get("rank_ic")
        row["balanced\naccuracy"] = own.get("balanced_accuracy")
        for name in sorted(base):
            row[f"bal. acc.\n{name}"] = base[name].get("balanced_accuracy")
        for name, ev in learners.items():  # each base learner's own rank IC
            row[f"rank IC\n{name}"] = ev.get("rank_ic")
        failed = own.get("model") == "FAILED"
        row["gate"] = "failed" if failed else gate.get("decision", "—")
        rows.append(row)
    return pd.DataFrame(rows)
