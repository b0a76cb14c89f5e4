"""``turbomode models …``: inspect the model registry, promote a version, roll back.

A thin adapter over :class:`turbomode.models.registry.ModelRegistry`; the registry location
comes from ``settings.stores.model_registry_uri`` (``TURBOMODE_STORES__MODEL_REGISTRY_URI``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import EXPECTED, fail, settings_from
from turbomode.models.registry import ModelRegistry

models_app = typer.Typer(
    help="Model registry: list keys, show a version, promote, roll back.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

console = Console()
err = Console(stderr=True)

FamilyOption = Annotated[
    str, typer.Option("--family", help="Registry namespace (other systems use their own).")
]


def _registry(ctx: typer.Context, family: str) -> ModelRegistry:
    return ModelRegistry(settings_from(ctx).stores.model_registry_uri, family=family)


@models_app.command("list")
def list_models(ctx: typer.Context, family: FamilyOption = "turbomode") -> None:
    """Every model key with its production version and how many versions are kept."""
    try:
        registry = _registry(ctx, family)
        rows = []
        for key in registry.list_keys():
            versions = registry.list_versions(key)
            rows.append((key, registry.production(key), len(versions), versions[-1:]))
    except EXPECTED as exc:
        fail(exc)
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
    try:
        registry = _registry(ctx, family)
        meta = registry.manifest(key, version)
        production = registry.production(key)
        looks = registry.looks(key)
    except EXPECTED as exc:
        fail(exc)
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
    files = Table(title="artifacts")
    files.add_column("file")
    files.add_column("bytes", justify="right")
    files.add_column("sha256")
    for name, info in meta["files"].items():
        files.add_row(escape(name), str(info["size"]), info["sha256"][:16] + "…")
    console.print(files)


@models_app.command()
def promote(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Model key.")],
    version: Annotated[str, typer.Argument(help="Version id to make production.")],
    family: FamilyOption = "turbomode",
) -> None:
    """Verify a version's checksums and make it production (the old one stays for rollback)."""
    try:
        registry = _registry(ctx, family)
        before = registry.production(key)
        registry.promote(key, version)
    except EXPECTED as exc:
        fail(exc)
    console.print(f"{escape(key)}: production {before or '—'} → {version}")


@models_app.command()
def rollback(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Model key.")],
    family: FamilyOption = "turbomode",
) -> None:
    """Return production to the version before the current one."""
    try:
        registry = _registry(ctx, family)
        before = registry.production(key)
        after = registry.rollback(key)
    except EXPECTED as exc:
        fail(exc)
    console.print(f"{escape(key)}: production {before} → {after} (rolled back)")
