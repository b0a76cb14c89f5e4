"""``turbomode ingest``, ``universe show``, ``features build|materialize|list`` and ``config
show``: the data the rest reads — thin adapters over :mod:`turbomode.data`,
:mod:`turbomode.feature_store` and :mod:`turbomode.config`."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from turbomode.cli.common import (
    console,
    handles_errors,
    print_json,
    progress_bar,
    settings_from,
    stage_lines,
)
from turbomode.cli.smart import curate_command
from turbomode.errors import TurboModeError
from turbomode.redaction import redact

universe_app = typer.Typer(help="Inspect the universe: sectors, cap classes, membership.")
features_app = typer.Typer(help="Compute features into Feast, materialize, list the registry.")
config_app = typer.Typer(help="Show the effective configuration.")
universe_app.command("curate")(curate_command)


class SourceName(StrEnum):
    synthetic = "synthetic"
    parquet = "parquet"
    csv = "csv"
    yfinance = "yfinance"
    fred = "fred"


@handles_errors
def ingest_command(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(help="File or directory for --source parquet/csv.")
    ] = None,
    source: Annotated[
        SourceName | None, typer.Option("--source", "-s", help="Where data comes from.")
    ] = None,
    symbols: Annotated[
        str | None, typer.Option("--symbols", help="Comma-separated symbols (default: all).")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="First date, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last date, YYYY-MM-DD.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Load market data, validate every row, write the clean store and a quarantine report;
    then the macro step (macro.source). `--source fred`: only the macro series, from FRED."""
    from turbomode.data.ingest import STEPS
    from turbomode.data.ingest import ingest as run_ingest
    from turbomode.data.sources import get_source

    if source is SourceName.fred:
        _ingest_macro(ctx, path, symbols, start, end, as_json)
        return
    settings = settings_from(ctx)
    name = source.value if source else (settings.data.source if path is None else "parquet")
    src = get_source(settings, name, path)
    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    with progress_bar(transient=True) as progress:
        task = progress.add_task(f"ingest ({name})", total=len(STEPS))

        def step(label: str) -> None:
            progress.update(task, advance=1, description=f"ingest ({name}): {label}")

        report = run_ingest(settings, src, wanted, start, end, on_step=step)
    summary = report.summary()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    _print_ingest(summary, report)


def _ingest_macro(
    ctx: typer.Context,
    path: Path | None,
    symbols: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
) -> None:
    """`turbomode ingest --source fred`: the macro series' vintages into the clean store."""
    from turbomode.data.ingest import ingest_macro
    from turbomode.data.sources.fred import FredSource

    if path is not None or symbols:
        raise TurboModeError("--source fred takes no PATH and no --symbols")
    settings = settings_from(ctx)
    roles = list(settings.macro.series)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("ingest (fred)", total=len(roles))

        def done(role: str) -> None:
            progress.update(task, advance=1, description=f"ingest (fred): {role}")

        report = ingest_macro(settings, FredSource(settings, on_series=done), start, end)
    summary = report.summary()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    table = Table(title="Macro series — source: fred (as first published, with revisions)")
    for col in ("role", "series", "observations", "rows", "first", "last", "newest release"):
        table.add_column(col)
    for role, info in summary["series"].items():
        table.add_row(
            role,
            info["source_id"],
            f"{info['observations']:,}",
            f"{info['rows']:,}",
            info["first_date"],
            info["last_date"],
            info["newest_release"],
        )
    console.print(table)
    if summary["rows_quarantined"]:
        console.print(f"quarantined: {summary['rules']} (see {summary['paths']['macro_report']})")
    console.print(f"written: {summary['paths']['macro']}")


def _print_ingest(summary: dict[str, Any], report: Any) -> None:
    table = Table(title=f"Ingest — source: {summary['source']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("stock rows in", f"{summary['rows_in']:,}")
    table.add_row("clean", f"{summary['rows_clean']:,}")
    table.add_row("quarantined", f"{summary['rows_quarantined']:,}")
    table.add_row("symbols", f"{summary['symbols']:,} (universe {summary['universe_size']:,})")
    table.add_row("dates", f"{summary['first_date']} → {summary['last_date']}")
    table.add_row(
        "market series",
        f"{len(summary['market_symbols'])}: {', '.join(summary['market_symbols'])}",
    )
    table.add_row(
        "market rows",
        f"{summary['market_rows_clean']:,} clean, "
        f"{summary['market_rows_quarantined']:,} quarantined",
    )
    for part, counts in summary["rules"].items():
        for rule, n in sorted(counts.items()):
            table.add_row(f"  {part}: {rule}", f"{n:,}")
    if summary["skipped"]:
        shown = ", ".join(f"{s} ({r})" for s, r in list(summary["skipped"].items())[:10])
        table.add_row("skipped", shown)
    macro = summary.get("macro")
    if macro is not None:
        series = ", ".join(macro.get("series", {})) or "none"
        note = f"{macro['action']} ({macro['source']}): {series}"
        table.add_row("macro series", note + (f" — {macro['error']}" if "error" in macro else ""))
    table.add_row("seconds", f"{summary['seconds']:.2f}")
    table.add_row("clean store", str(Path(summary["paths"]["prices"]).parent))
    console.print(table)
    q = report.prices.quarantine
    if len(q):
        sample = Table(title="Quarantined rows (first 10)")
        for col in ("symbol", "date", "rule", "value"):
            sample.add_column(col)
        for row in q.head(10).itertuples(index=False):
            sample.add_row(str(row.symbol), str(row.date)[:10], str(row.rule), str(row.value)[:70])
        console.print(sample)
        console.print(f"full report: {summary['paths']['quarantine']}")


@universe_app.command("show")
@handles_errors
def universe_show(
    ctx: typer.Context,
    sector: Annotated[str | None, typer.Option("--sector", help="Only this GICS sector.")] = None,
    cap: Annotated[str | None, typer.Option("--cap", help="large, mid or small.")] = None,
    on: Annotated[str | None, typer.Option("--on", help="Members on this date only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Show the ingested universe: counts per sector and cap class, or a filtered list."""
    from turbomode.data.universe import Universe

    settings = settings_from(ctx)
    directory = settings.data.clean_dir
    if not (directory / "universe.parquet").exists():
        raise TurboModeError(f"no universe at {directory}: run `turbomode ingest` first")
    uni = Universe.read(directory, settings.universe)
    if sector is None and cap is None and on is None:
        summary = uni.summary()
        if as_json:
            print_json(summary.reset_index().to_dict(orient="records"))
            return
        table = Table(title=f"Universe: {len(uni)} symbols")
        table.add_column("sector")
        for col in summary.columns:
            table.add_column(str(col), justify="right")
        for name, row in summary.iterrows():
            table.add_row(str(name), *(str(v) for v in row))
        console.print(table)
        return
    chosen = set(uni.select(sector, cap))
    if on is not None:
        chosen &= set(uni.members_on(on))
    m = uni.members[uni.members["symbol"].isin(chosen)]
    if as_json:
        print_json(m[["symbol", "name", "sector", "cap_class", "tier"]].to_dict(orient="records"))
        return
    table = Table(title=f"{len(m)} symbols")
    for col in ("symbol", "name", "sector", "cap_class", "tier"):
        table.add_column(col)
    for rec in m[["symbol", "name", "sector", "cap_class", "tier"]].astype(str).values:
        table.add_row(*rec)
    console.print(table)


class ProfileName(StrEnum):
    local = "local"
    production = "production"


@features_app.command("build")
@handles_errors
def features_build(
    ctx: typer.Context,
    profile: Annotated[
        ProfileName | None, typer.Option("--profile", help="Feast profile (default: settings).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Recompute every date, not only the new ones.")
    ] = False,
) -> None:
    """Compute every registry feature from the clean store, write Feast's offline tables and
    apply the definitions. When the clean store only gained new dates since the last build,
    only those are computed (from the trailing features.incremental_lookback bars) and
    appended."""
    stage = stage_lines("features")
    stage("loading Feast")
    from turbomode.feature_store import build

    settings = settings_from(ctx)
    report, _store = build(settings, profile.value if profile else None, full=full, on_stage=stage)
    if report.mode == "current":
        console.print("features are current: no new dates in the clean store since the last build")
        return
    if report.mode == "incremental":
        console.print(f"incremental build: {report.n_dates} new date(s)")
    console.print(report.summary())


@features_app.command("materialize")
@handles_errors
def features_materialize(
    ctx: typer.Context,
    end: Annotated[
        str | None, typer.Option("--end", help="Load up to this date (default: newest).")
    ] = None,
    profile: Annotated[ProfileName | None, typer.Option("--profile")] = None,
) -> None:
    """Load the online store incrementally (idempotent: re-running changes nothing)."""
    import pandas as pd

    from turbomode.feature_store import materialize, open_store

    settings = settings_from(ctx)
    store = open_store(settings, profile.value if profile else None)
    start_dt, end_dt = materialize(store, settings, pd.Timestamp(end) if end else None)
    console.print(f"online store loaded from {start_dt:%Y-%m-%d} to {end_dt:%Y-%m-%d}")


@features_app.command("list")
@handles_errors
def features_list(
    group: Annotated[str | None, typer.Option("--group", help="Only this group.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the features as JSON.")] = False,
) -> None:
    """The feature registry: name, group, description and the market series each needs."""
    from turbomode.features.registry import REGISTRY, select_features

    select_features()
    frame = REGISTRY.to_frame()
    if group is not None:
        REGISTRY.names(group)  # validates the group name
        frame = frame[frame["group"] == group]
    if as_json:
        print_json(frame.to_dict(orient="records"))
        return
    table = Table(title=f"{len(frame)} features")
    for col in ("name", "group", "description", "needs"):
        table.add_column(col)
    for rec in frame.astype(str).values:
        table.add_row(*rec)
    console.print(table)


@config_app.command("show")
@handles_errors
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings as YAML (the same keys a config file takes), passwords,
    tokens and keys redacted."""
    settings = settings_from(ctx)
    sys.stdout.write(yaml.safe_dump(redact(settings.model_dump(mode="json")), sort_keys=False))
