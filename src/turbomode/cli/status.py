"""``turbomode status``: the platform's state at a glance, for an operator and for a script —
a thin adapter over :func:`turbomode.status.platform_status` (the dashboard's overview shows
the same)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from turbomode.cli.common import console, handles_errors, settings_from
from turbomode.status import PlatformStatus, platform_status

# The exit code when a part is missing, stale or failing (2 stays for a command that failed).
PROBLEM_EXIT = 1

_STYLE = {"ok": "green", "missing": "yellow", "stale": "yellow", "failing": "red"}


@handles_errors
def status_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """The platform at a glance: the newest bar in each store, the last scan, production
    models, the feedback loop, the next run of each job, and what is missing, stale or
    failing. Exits 1 when anything is (0 when all is well)."""
    status = platform_status(settings_from(ctx))
    if as_json:
        sys.stdout.write(json.dumps(status.to_dict(), indent=2) + "\n")
    else:
        _print(status)
    if not status.ok:
        raise typer.Exit(code=PROBLEM_EXIT)


def _print(status: PlatformStatus) -> None:
    verdict = "[green]all well[/]" if status.ok else f"[red]{len(status.problems)} problem(s)[/]"
    console.print(
        f"[bold]TurboMode status[/] of {escape(status.data_dir)} at {status.checked_at}: {verdict}",
        highlight=False,
    )
    parts = Table(title="stores and jobs")
    for col in ("part", "state", "detail", "to fix"):
        parts.add_column(col, overflow="fold")
    for check in status.checks:
        style = _STYLE[check.state]
        parts.add_row(
            check.part,
            f"[{style}]{check.state}[/]",
            escape(check.detail),
            escape(check.fix or "") if check.state != "ok" else "",
        )
    console.print(parts)
    if status.models:
        models = Table(title="production models")
        for col in ("key", "version", "age (days)", "out-of-time rank IC", "gate"):
            models.add_column(col, overflow="fold")
        for m in status.models:
            models.add_row(
                escape(m.key),
                m.version or "— (none)",
                "" if m.age_days is None else f"{m.age_days:.1f}",
                "" if m.oot_rank_ic is None else f"{m.oot_rank_ic:.3f}",
                m.gate or "",
            )
        console.print(models)
    retrain = status.last_retrain
    if retrain is not None:
        console.print(
            f"last retrain: run {retrain['id']}, {retrain['status']}, finished "
            f"{retrain['finished_at'] or '—'}",
            highlight=False,
        )
    if status.last_scan is not None:
        pending = "—" if status.pending_outcomes is None else status.pending_outcomes
        console.print(
            f"last scan: {status.last_scan}, {status.last_scan_signals} active signal(s); "
            f"pending outcomes: {pending}",
            highlight=False,
        )
    schedules = Table(title="next runs")
    for col in ("job", "cron", "next run"):
        schedules.add_column(col, overflow="fold")
    for s in status.schedules:
        schedules.add_row(s.job, s.cron, s.next_run or "never")
    console.print(schedules)
