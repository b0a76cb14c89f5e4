"""``turbomode wallet``: paper wallets over the nightly scan — a thin adapter over
:mod:`turbomode.wallet` (prices from the clean store, signals from the signals store)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from turbomode.cli.common import (
    console,
    err,
    handles_errors,
    parse_day,
    print_json,
    settings_from,
)
from turbomode.config import Settings
from turbomode.errors import TurboModeError
from turbomode.store import SignalStore

# Price history handed to a day: enough for the Smart rules' trailing correlations.
_HISTORY_DAYS = 400

wallet_app = typer.Typer(
    help="Paper wallets: trade each night's scan at the next open with the ATR or Smart rules.",
    no_args_is_help=True,
)


def _store(settings: Settings) -> SignalStore:
    store = SignalStore(settings.stores.signals_url)
    store.migrate()
    return store


@wallet_app.command("create")
@handles_errors
def create_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Wallet name (letters, digits, _ . -).")],
    rules: Annotated[str, typer.Option("--rules", help="Exit rule set: atr or smart.")],
    cash: Annotated[
        float | None, typer.Option("--cash", help="Starting cash (default: backtest.initial_cash).")
    ] = None,
) -> None:
    """Create a paper wallet that trades with one rule set."""
    settings = settings_from(ctx)
    if rules not in ("atr", "smart"):
        raise ValueError(f"--rules must be atr or smart, got {rules!r}")
    wallet = _store(settings).create_wallet(
        name, rules, settings.backtest.initial_cash if cash is None else cash
    )
    console.print(
        f"created wallet [bold]{wallet.name}[/] ({wallet.rules} rules, "
        f"cash {wallet.initial_cash:,.2f})"
    )


def _days_to_run(calendar: list[date], last: date | None, day: date) -> list[date]:
    """``day``, preceded by every market day the wallet missed since its last run: a wallet
    that skipped a day must still have seen that day's bar before it may act on later ones."""
    if day not in calendar:
        raise TurboModeError(f"no bars on {day} in the clean store")
    if last is not None and day < last:
        raise TurboModeError(
            f"{day} is before the wallet's last run on {last}: a wallet only moves forward"
        )
    if last is None or day == last:
        return [day]
    return [d for d in calendar if last < d <= day]


@wallet_app.command("run")
@handles_errors
def run_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Wallet name.")],
    on: Annotated[
        str | None, typer.Option("--date", help="Market day to run (default: the newest bar).")
    ] = None,
    manage_only: Annotated[
        bool,
        typer.Option(
            "--manage-only", help="Without a scan of the previous night: manage exits, no entries."
        ),
    ] = False,
) -> None:
    """Run the wallet for a market day (and any it missed since its last run): exits on the
    day's bar, entries at its open from the previous night's scan, marks at the close."""
    from turbomode.data.ingest import load_clean
    from turbomode.wallet import previous_scan_date, run_day, scan_signals, smart_signals

    settings = settings_from(ctx)
    store = _store(settings)
    wallet = store.wallet(name)
    md = load_clean(settings)
    stamps = pd.to_datetime(md.prices["date"]).dt.normalize()
    calendar = sorted(d.date() for d in stamps.unique())
    day = parse_day(on, "--date") if on else calendar[-1]
    for d in _days_to_run(calendar, wallet.last_date, day):
        earlier = [c for c in calendar if c < d]
        if not earlier:
            raise TurboModeError(f"no market day before {d}: nothing could have signalled")
        night = earlier[-1]
        scan = previous_scan_date(store, d)
        signals = None
        if scan != night:
            if not manage_only:
                raise TurboModeError(
                    f"no scan for the night before {d} ({night}); the latest scan before "
                    f"it is {scan or 'none'}. Run `turbomode scan --date {night}` first, or "
                    "pass --manage-only to manage open positions without entries"
                )
        else:
            signals = scan_signals(store, night)
            if wallet.rules == "smart":
                signals = smart_signals(signals, md.market, settings)
        since = pd.Timestamp(d) - pd.Timedelta(days=_HISTORY_DAYS)
        prices = md.prices[(stamps >= since) & (stamps <= pd.Timestamp(d))]
        result = run_day(store, name, d, prices, signals, settings)
        again = " (re-run)" if result.rerun else ""
        console.print(
            f"{d}{again}: opened {len(result.opened)} {result.opened or ''}, closed "
            f"{len(result.closed)} {result.closed or ''}, holding {len(result.held)}; "
            f"cash {result.cash:,.2f}, equity {result.equity:,.2f}"
        )
        for sym, why in result.skipped:
            err.print(f"  skipped {sym}: {why}", highlight=False)


@wallet_app.command("report")
@handles_errors
def report_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Wallet name.")],
    days: Annotated[int, typer.Option("--days", help="Equity-curve rows shown.")] = 10,
) -> None:
    """P&L: realized, unrealized, open positions, closed trades and the equity curve."""
    from turbomode.wallet import format_report, report

    text = format_report(report(_store(settings_from(ctx)), name), last_days=days)
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@wallet_app.command("list")
@handles_errors
def list_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """Every wallet with its rule set, last run and equity."""
    store = _store(settings_from(ctx))
    rows: list[dict[str, Any]] = []
    for w in store.wallets():
        eq = store.wallet_equity(w.name)
        equity = float(eq["equity"].iloc[-1]) if len(eq) else w.initial_cash
        rows.append(
            {
                "name": w.name,
                "rules": w.rules,
                "initial_cash": w.initial_cash,
                "last_date": w.last_date,
                "equity": equity,
                "return": equity / w.initial_cash - 1,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no wallets: create one with `turbomode wallet create NAME --rules atr`")
        return
    table = Table(title="Paper wallets")
    for col, just in (
        ("name", "left"),
        ("rules", "left"),
        ("initial cash", "right"),
        ("last run", "left"),
        ("equity", "right"),
        ("return", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r["name"],
            r["rules"],
            f"{r['initial_cash']:,.2f}",
            str(r["last_date"] or "never"),
            f"{r['equity']:,.2f}",
            f"{r['return']:+.2%}",
        )
    console.print(table)
