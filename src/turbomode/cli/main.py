"""The ``turbomode`` command: a thin adapter over the library, one sub-command per job."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from turbomode import __version__, logs
from turbomode.cli.backtest import backtest_command, regime_command
from turbomode.cli.common import EXPECTED, fail
from turbomode.cli.models import models_app
from turbomode.cli.outcomes import outcomes_app, replay_command, retrain_command
from turbomode.cli.pipelines import pipelines_app
from turbomode.cli.research import research_command
from turbomode.cli.serve import serve_command
from turbomode.cli.smart import curate_command, ranking_app, smart_scan_command
from turbomode.cli.tune import tune_command
from turbomode.cli.wallet import wallet_app
from turbomode.config import Settings, load_settings
from turbomode.errors import TurboModeError
from turbomode.redaction import redact
from turbomode.workspace import Workspace, with_data_dir

app = typer.Typer(
    name="turbomode",
    help="TurboMode: nightly ML signals for S&P 500 stocks — ingest, features, train, scan.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
universe_app = typer.Typer(help="Inspect the universe: sectors, cap classes, membership.")
features_app = typer.Typer(help="Compute features into Feast, materialize, list the registry.")
config_app = typer.Typer(help="Show the effective configuration.")
app.add_typer(universe_app, name="universe")
app.add_typer(config_app, name="config")
app.add_typer(features_app, name="features")
app.add_typer(models_app, name="models")
app.command("tune")(tune_command)
app.add_typer(outcomes_app, name="outcomes")
app.command("retrain")(retrain_command)
app.command("replay")(replay_command)
app.add_typer(pipelines_app, name="pipelines")
app.command("serve")(serve_command)
app.command("backtest")(backtest_command)
app.command("regime")(regime_command)
app.command("smart-scan")(smart_scan_command)
app.add_typer(ranking_app, name="ranking")
universe_app.command("curate")(curate_command)
app.add_typer(wallet_app, name="wallet")
app.command("research")(research_command)

console = Console()
err = Console(stderr=True)


# `turbomode scan` without --date when no bar newer than the last scan's arrived: nothing was
# scanned (the CronWorkflow's step fails visibly, and TurboModeScanNoNewData fires).
NO_NEW_BAR_EXIT = 3


class SourceName(StrEnum):
    synthetic = "synthetic"
    parquet = "parquet"
    csv = "csv"
    yfinance = "yfinance"
    fred = "fred"


class _State:
    config: Path | None = None
    data_dir: Path | None = None


def _settings(**overrides: Any) -> Settings:
    return with_data_dir(load_settings(_State.config, **overrides), _State.data_dir)


def _progress(transient: bool) -> Progress:
    """A progress bar on stderr (stdout stays for tables and JSON); off when not a terminal."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="YAML settings file (overrides defaults).",
            envvar="TURBOMODE_CONFIG",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Root of the local stores (default: ./data).")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning.")
    ] = "warning",
) -> None:
    """Settings come from defaults < YAML file < TURBOMODE_* environment variables."""
    _State.config = config
    _State.data_dir = data_dir
    logs.configure(log_level)


@app.command()
def version() -> None:
    """Print the TurboMode version."""
    console.print(__version__)


@app.command()
def ingest(
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
        _ingest_macro(path, symbols, start, end, as_json)
        return
    try:
        settings = _settings()
        name = source.value if source else (settings.data.source if path is None else "parquet")
        src = get_source(settings, name, path)
        wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
        with _progress(transient=True) as progress:
            task = progress.add_task(f"ingest ({name})", total=len(STEPS))

            def step(label: str) -> None:
                progress.update(task, advance=1, description=f"ingest ({name}): {label}")

            report = run_ingest(settings, src, wanted, start, end, on_step=step)
    except EXPECTED as exc:
        fail(exc)
        return
    summary = report.summary()
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    _print_ingest(summary, report)


def _ingest_macro(
    path: Path | None, symbols: str | None, start: str | None, end: str | None, as_json: bool
) -> None:
    """`turbomode ingest --source fred`: the macro series' vintages into the clean store."""
    from turbomode.data.ingest import ingest_macro
    from turbomode.data.sources.fred import FredSource

    try:
        if path is not None or symbols:
            raise TurboModeError("--source fred takes no PATH and no --symbols")
        settings = _settings()
        roles = list(settings.macro.series)
        with _progress(transient=True) as progress:
            task = progress.add_task("ingest (fred)", total=len(roles))

            def done(role: str) -> None:
                progress.update(task, advance=1, description=f"ingest (fred): {role}")

            report = ingest_macro(settings, FredSource(settings, on_series=done), start, end)
    except EXPECTED as exc:
        fail(exc)
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
def universe_show(
    sector: Annotated[str | None, typer.Option("--sector", help="Only this GICS sector.")] = None,
    cap: Annotated[str | None, typer.Option("--cap", help="large, mid or small.")] = None,
    on: Annotated[str | None, typer.Option("--on", help="Members on this date only.")] = None,
) -> None:
    """Show the ingested universe: counts per sector and cap class, or a filtered list."""
    from turbomode.data.universe import Universe

    try:
        settings = _settings()
        directory = settings.data.clean_dir
        if not (directory / "universe.parquet").exists():
            raise TurboModeError(f"no universe at {directory}: run `turbomode ingest` first")
        uni = Universe.read(directory, settings.universe)
        if sector is None and cap is None and on is None:
            summary = uni.summary()
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
        table = Table(title=f"{len(m)} symbols")
        for col in ("symbol", "name", "sector", "cap_class", "tier"):
            table.add_column(col)
        for rec in m[["symbol", "name", "sector", "cap_class", "tier"]].astype(str).values:
            table.add_row(*rec)
        console.print(table)
    except EXPECTED as exc:
        fail(exc)


class ProfileName(StrEnum):
    local = "local"
    production = "production"


@features_app.command("build")
def features_build(
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
    from turbomode.feature_store import build

    try:
        settings = _settings()
        with err.status("building features"):
            report, _store = build(settings, profile.value if profile else None, full=full)
    except EXPECTED as exc:
        fail(exc)
        return
    if report.mode == "current":
        console.print("features are current: no new dates in the clean store since the last build")
        return
    if report.mode == "incremental":
        console.print(f"incremental build: {report.n_dates} new date(s)")
    console.print(report.summary())


@features_app.command("materialize")
def features_materialize(
    end: Annotated[
        str | None, typer.Option("--end", help="Load up to this date (default: newest).")
    ] = None,
    profile: Annotated[ProfileName | None, typer.Option("--profile")] = None,
) -> None:
    """Load the online store incrementally (idempotent: re-running changes nothing)."""
    import pandas as pd

    from turbomode.feature_store import materialize, open_store

    try:
        settings = _settings()
        store = open_store(settings, profile.value if profile else None)
        start_dt, end_dt = materialize(store, settings, pd.Timestamp(end) if end else None)
    except EXPECTED as exc:
        fail(exc)
        return
    console.print(f"online store loaded from {start_dt:%Y-%m-%d} to {end_dt:%Y-%m-%d}")


@features_app.command("list")
def features_list(
    group: Annotated[str | None, typer.Option("--group", help="Only this group.")] = None,
) -> None:
    """The feature registry: name, group, description and the market series each needs."""
    from turbomode.features.registry import REGISTRY, select_features

    try:
        select_features()
        frame = REGISTRY.to_frame()
        if group is not None:
            REGISTRY.names(group)  # validates the group name
            frame = frame[frame["group"] == group]
    except EXPECTED as exc:
        fail(exc)
        return
    table = Table(title=f"{len(frame)} features")
    for col in ("name", "group", "description", "needs"):
        table.add_column(col)
    for rec in frame.astype(str).values:
        table.add_row(*rec)
    console.print(table)


@app.command()
def train(
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

    try:
        settings = _settings()
        total = len(all_tasks(settings, sector))
        with _progress(transient=False) as progress:
            bar = progress.add_task("training", total=total)

            def done(r: Any) -> None:
                mark = "[green]ok[/]" if r.ok else f"[red]failed[/] {escape(str(r.error))[:80]}"
                progress.console.print(f"{r.key}: {mark} ({r.seconds:.0f} s)")
                progress.update(bar, advance=1, description=f"training: {r.key}")

            run = run_training(settings, sector, use_ray=not no_ray, on_done=done)
    except EXPECTED as exc:
        fail(exc)
        return
    _print_frame(run.summary(), f"Training run {run.run_id}")
    console.print(f"report: {run.report_paths['markdown']}")


@app.command()
def evaluate(
    run_id: Annotated[str, typer.Option("--run", help="Run id, or 'latest'.")] = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
) -> None:
    """Show a training run's out-of-time evaluation: every (sector, horizon) beside the
    majority, prior and momentum baselines (also written as JSON and Markdown)."""
    import pandas as pd

    try:
        settings = _settings()
        path = Workspace.of(settings).reports_dir / f"train_{run_id}.json"
        if not path.exists():
            raise TurboModeError(f"no training report {path}: run `turbomode train` first")
        payload = json.loads(path.read_text())
    except EXPECTED as exc:
        fail(exc)
        return
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    table = pd.DataFrame(payload["evaluation"])
    _print_frame(
        table.drop(columns=[c for c in ("error",) if c in table]), f"Run {payload['run_id']}"
    )
    console.print(f"markdown: {path.with_suffix('.md')}")


@app.command()
def scan(
    date: Annotated[
        str | None, typer.Option("--date", help="Scan date, YYYY-MM-DD (default: newest bar).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Signals shown per cap class and side.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print latest_scan.json.")] = False,
) -> None:
    """Tonight's signals: online features → production ensembles → signal rules, stop and
    target → positions → the signals store, latest_scan.json and a CSV."""
    import pandas as pd

    from turbomode.signals.scan import NoNewBarError, run_scan

    try:
        settings = _settings()
        day = pd.Timestamp(date).date() if date else None
        with _progress(transient=True) as progress:
            task = progress.add_task("scan", total=None)
            result = run_scan(
                settings,
                scan_date=day,
                on_stage=lambda s: progress.update(task, description=f"scan: {s}"),
            )
    except NoNewBarError as exc:
        err.print(f"[bold yellow]no new data:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(code=NO_NEW_BAR_EXIT) from None
    except EXPECTED as exc:
        fail(exc)
        return
    if as_json:
        print(Path(result.files["json"]).read_text())
        return
    _print_scan(result, settings, top)


def _print_scan(result: Any, settings: Settings, top: int) -> None:
    """Tonight's run in one line, then the signal tables."""
    console.print(
        f"[bold]Scan {result.scan_date}[/]: {result.n_scored}/{result.n_symbols} symbols "
        f"scored, {len(result.failures)} skipped, {len(result.fresh)} fresh signals, "
        f"{len(result.active)} active, {len(result.events)} position events "
        f"(entry thresholds BUY ≥ {result.thresholds['buy']:.3f}, "
        f"SELL ≥ {result.thresholds['sell']:.3f}; {result.seconds:.1f} s)"
    )
    if result.stale_features:
        console.print(
            f"[yellow]{result.stale_features} symbol(s) not scored: their newest features are "
            f"older than {result.scan_date}[/] (run `turbomode features materialize`?)"
        )
    if result.feature_source == "offline":
        console.print(f"features: point-in-time vectors of {result.scan_date} (offline store)")
    from turbomode.signals.scan import scan_document

    _print_signals(scan_document(result, settings), top)
    console.print(f"written: {result.files['json']}, {result.files['csv']}")


def _print_signals(doc: dict[str, Any], top: int) -> None:
    """Top signals per cap class and side with stop, target and age; the sector overview —
    from a scan document (``latest_scan.json``)."""
    import pandas as pd

    for key in doc["missing_models"]:
        console.print(f"[yellow]no production model[/] for {escape(key)}: no signals from it")
    frame = pd.DataFrame(doc["signals"])
    if frame.empty:
        console.print("No active signals tonight.")
    else:
        frame = frame.sort_values("effective_confidence", ascending=False)
        for (cap, side), rows in frame.groupby(["cap_class", "side"], sort=True):
            table = Table(title=f"{side} — {cap} cap (top {min(top, len(rows))} of {len(rows)})")
            for col in ("symbol", "sector", "h", "conf", "eff", "age", "close", "stop", "target"):
                table.add_column(col)
            for r in rows.head(top).itertuples():
                table.add_row(
                    str(r.symbol),
                    str(r.sector),
                    f"{r.horizon}d",
                    f"{r.confidence:.3f}",
                    f"{r.effective_confidence:.3f}",
                    f"{r.age_days}d {r.age_bucket}",
                    f"{r.close:.2f}",
                    f"{r.stop:.2f}",
                    f"{r.target:.2f}",
                )
            console.print(table)
    if doc["sectors"]:
        _print_frame(pd.DataFrame(doc["sectors"]), "Sectors")


@app.command()
def signals(
    top: Annotated[int, typer.Option("--top", help="Signals shown per cap class and side.")] = 5,
) -> None:
    """Print the latest scan's signals (``latest_scan.json``) without scanning again."""

    from turbomode.signals.scan import latest_document

    try:
        doc = latest_document(_settings())
    except EXPECTED as exc:
        fail(exc)
        return
    console.print(
        f"[bold]Scan {doc['scan_date']}[/]: {doc['n_scored']}/{doc['n_symbols']} symbols "
        f"scored, {doc['n_failed']} skipped, {len(doc['signals'])} active signals "
        f"(entry thresholds BUY ≥ {doc['thresholds']['buy']:.3f}, "
        f"SELL ≥ {doc['thresholds']['sell']:.3f})"
    )
    _print_signals(doc, top)


def _print_frame(frame: Any, title: str) -> None:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col))
    for rec in frame.itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rec))
    console.print(table)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as YAML (the same keys a config file takes), passwords,
    tokens and keys redacted."""
    try:
        settings = _settings()
    except EXPECTED as exc:
        fail(exc)
        return
    sys.stdout.write(yaml.safe_dump(redact(settings.model_dump(mode="json")), sort_keys=False))


if __name__ == "__main__":  # pragma: no cover
    app()
