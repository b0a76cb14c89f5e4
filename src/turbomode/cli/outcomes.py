"""``turbomode outcomes track|samples``, ``turbomode retrain`` and ``turbomode replay``.

Thin adapters over :mod:`turbomode.outcomes`: the daily tracker, the weekly sample generator,
the monthly retrainer, and the replay that drives all of them over history.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import console, err, handles_errors, parse_day, settings_from
from turbomode.workspace import Workspace

outcomes_app = typer.Typer(
    help="The feedback loop: outcomes of issued signals and training samples.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@outcomes_app.command("track")
@handles_errors
def track(
    ctx: typer.Context,
    as_of: Annotated[
        str | None, typer.Option("--date", help="Track as of this day (default: newest bar).")
    ] = None,
) -> None:
    """Record the outcome of every signal whose hold period has ended (daily)."""
    from turbomode.outcomes.track import track_outcomes

    res = track_outcomes(settings_from(ctx), as_of=parse_day(as_of, "--date"))
    if res.n_resolved:
        resolved = f"{res.n_resolved} resolved (hit rate {res.resolved['correct'].mean():.3f})"
    else:
        resolved = "no outcomes resolved yet"
    console.print(
        f"[bold]Outcomes as of {res.as_of}[/]: {res.registered} newly issued signal(s) "
        f"registered, {resolved}, {len(res.pending)} pending"
    )
    for reason, n in sorted(res.reasons().items()):
        console.print(f"  pending — {escape(reason)}: {n}")
    window = settings_from(ctx).outcomes.hit_rate_window_days
    for row in res.rolling.itertuples():
        rate = "—" if not row.n else f"{row.hit_rate:.3f}"
        console.print(
            f"  {row.Index}d: hit rate {rate} over {row.n} resolved in the last {window} days"
        )


@outcomes_app.command("samples")
@handles_errors
def samples(ctx: typer.Context) -> None:
    """Turn resolved outcomes into training samples with their signal-time features (weekly)."""
    from turbomode.outcomes.samples import generate_samples

    res = generate_samples(settings_from(ctx))
    console.print(
        f"[bold]Training samples[/]: {res.added} added from {res.candidates} resolved "
        f"outcome(s); {len(res.without_features)} without features at signal time, "
        f"{res.without_label} without a label at their horizon"
    )
    for m in res.without_features[:10]:
        console.print(f"  no features: {escape(m)}")


@handles_errors
def retrain_command(
    ctx: typer.Context,
    min_samples: Annotated[
        int | None,
        typer.Option("--min-samples", help="New samples needed (default: settings)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain even with fewer new samples.")
    ] = False,
    no_ray: Annotated[bool, typer.Option("--no-ray", help="Train in this process.")] = False,
) -> None:
    """Retrain on history plus new samples, gate, then promote or keep (monthly)."""
    from turbomode.outcomes.retrain import retrain

    res = retrain(settings_from(ctx), min_samples=min_samples, use_ray=not no_ray, force=force)
    if res.recovered:
        console.print(f"restored production after interrupted retrain(s) {res.recovered}")
    if res.status == "skipped":
        console.print(f"[bold]Retrain skipped[/]: {escape(str(res.report['reason']))}")
        return
    console.print(
        f"[bold]Retrain {res.run_id}: {res.status}[/] — {res.n_new_samples} new samples; "
        f"promoted {len(res.promoted)}, kept production for {len(res.refused)}"
    )
    table = Table(title="Gate decisions")
    for col in ("model", "decision", "rule"):
        table.add_column(col)
    for key, d in res.report["decisions"].items():
        table.add_row(key, d["decision"], d["rule"])
    console.print(table)
    console.print(f"report: {res.report_path}")


@handles_errors
def replay_command(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--start", help="First simulated day (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--end", help="Last simulated day (YYYY-MM-DD).")],
    work: Annotated[
        Path | None,
        typer.Option("--work", help="Fresh directory for the replay's own stores."),
    ] = None,
    sector: Annotated[
        list[str] | None, typer.Option("--sector", help="Limit to a sector (repeatable).")
    ] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Train on Ray (default: in process).")] = False,
    train_days: Annotated[
        int | None,
        typer.Option("--train-days", help="Rolling training window in trading days (all)."),
    ] = None,
) -> None:
    """Drive scan → outcomes → weekly samples → monthly retrain day by day over history."""
    from turbomode.models import evaluation as mx
    from turbomode.outcomes.replay import run_replay

    settings = settings_from(ctx)
    s, e = parse_day(start, "--start"), parse_day(end, "--end")
    assert s is not None and e is not None
    if e < s:
        raise ValueError(f"--end {e} is before --start {s}")
    work_dir = work or Workspace.of(settings).replays_dir / f"{s}_{e}"
    month = {"m": ""}

    def on_day(d: date, stage: str) -> None:
        if stage != "scan" or d.strftime("%Y-%m") != month["m"]:
            month["m"] = d.strftime("%Y-%m")
            err.print(f"replay {d}: {stage}")

    res = run_replay(
        settings,
        s,
        e,
        work_dir,
        sectors=sector,
        use_ray=ray,
        on_day=on_day,
        train_days=train_days,
    )
    console.print(mx.to_markdown(res.months))
    console.print(f"written: {res.files['markdown']}, {res.files['json']}")
