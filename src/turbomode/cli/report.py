"""``turbomode report daily|weekly|retrain``: a thin adapter over :mod:`turbomode.reports` —
the report on stdout (text) and under the data directory, and with ``--send`` by email and to
the webhook the ``notify`` settings configure (the report CronWorkflows run it so)."""

from __future__ import annotations

from typing import Annotated

import typer

from turbomode.cli.common import console, err, handles_errors, parse_day, settings_from
from turbomode.reports import build_report, deliver


@handles_errors
def report_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="daily, weekly or retrain.")],
    day: Annotated[
        str | None,
        typer.Option("--date", help="The scan date reported on (default: the newest scan)."),
    ] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Send it by email and to the webhook (notify.*).")
    ] = False,
) -> None:
    """The morning's (daily), the week's (weekly) or the last retrain's report: signals by cap
    class and side, resolved outcomes, the rolling hit rate, the paper wallets, model state and
    what needs attention. Written under <data dir>/reports/<kind>/."""
    settings = settings_from(ctx)
    report = build_report(settings, kind, parse_day(day))
    delivery = deliver(report, settings, send=send)
    console.out(report.text(), end="", highlight=False)
    err.print(f"written: {', '.join(str(f) for f in delivery.files)}", highlight=False)
    if send:
        sent = ", ".join(delivery.sent) or "nowhere: no notify.smtp_host or notify.webhook_url"
        err.print(f"sent: {sent}", highlight=False)
