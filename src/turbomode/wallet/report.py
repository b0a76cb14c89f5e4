"""A wallet's P&L from the store: realized and unrealized, the equity curve, open positions and
per-trade returns, and a console table of them.

Realized P&L is net of every cost paid so far: closed trades' ``net_pnl`` (the backtest
engine's trade accounting) plus, for a position still open after partial exits, what those
exits made over the entry fill minus the commission paid. Unrealized is the open shares marked
at their last close against the entry fill. So initial cash + realized + unrealized is the
last equity, to the cent; the tests hold the report to that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from turbomode.store import SignalStore, Wallet

OPEN_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "entry_date",
    "entry_fill",
    "shares_open",
    "last_close",
    "bars_held",
    "realized",
    "unrealized",
)
TRADE_COLUMNS = (
    "trade_id",
    "symbol",
    "side",
    "signal_date",
    "entry_date",
    "exit_date",
    "exit_reason",
    "bars_held",
    "net_pnl",
    "net_return",
)


@dataclass
class WalletReport:
    """P&L of one wallet (module docstring)."""

    wallet: Wallet
    equity: pd.DataFrame
    open_positions: pd.DataFrame
    trades: pd.DataFrame
    realized: float
    unrealized: float

    @property
    def final_equity(self) -> float:
        return (
            float(self.equity["equity"].iloc[-1]) if len(self.equity) else self.wallet.initial_cash
        )

    @property
    def total_return(self) -> float:
        return self.final_equity / self.wallet.initial_cash - 1.0


def report(store: SignalStore, wallet_name: str) -> WalletReport:
    """The wallet's P&L as of its last run."""
    wallet = store.wallet(wallet_name)
    curve = store.wallet_equity(wallet_name)[["date", "cash", "market_value", "equity"]].copy()
    prev = curve["equity"].shift(1).fillna(wallet.initial_cash)
    curve["day_return"] = curve["equity"] / prev - 1.0
    pos = store.wallet_positions(wallet_name)
    sign = np.where(pos["side"] == "long", 1.0, -1.0)
    exited = pos["shares"] - pos["shares_open"]
    partial = sign * (pos["exit_value"] - exited * pos["entry_fill"]) - pos["commission"]
    is_open = (pos["status"] == "open").to_numpy()
    pos["realized"] = np.where(is_open, partial, pos["net_pnl"])
    pos["unrealized"] = np.where(
        is_open, sign * pos["shares_open"] * (pos["last_close"] - pos["entry_fill"]), 0.0
    )
    open_positions = pos.loc[is_open, list(OPEN_COLUMNS)].reset_index(drop=True)
    trades = pos.loc[~is_open, list(TRADE_COLUMNS)].reset_index(drop=True)
    return WalletReport(
        wallet=wallet,
        equity=curve.reset_index(drop=True),
        open_positions=open_positions,
        trades=trades,
        realized=float(pos["realized"].sum()),
        unrealized=float(pos["unrealized"].sum()),
    )


def _money(x: Any) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):,.2f}"


def _pct(x: Any) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x) * 100:+.2f}%"


def _day(x: Any) -> str:
    return "-" if x is None or x is pd.NaT else str(pd.Timestamp(x).date())


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]


def format_report(rep: WalletReport, last_days: int = 10) -> str:
    """Fixed-width text: the headline, the open positions, the closed trades and the last
    ``last_days`` marks of the equity curve."""
    w = rep.wallet
    lines = [
        f"Wallet {w.name} ({w.rules} rules) — last run {w.last_date or 'never'}",
        f"  initial cash {_money(w.initial_cash)}   equity {_money(rep.final_equity)}   "
        f"return {_pct(rep.total_return)}",
        f"  realized P&L {_money(rep.realized)}   unrealized P&L {_money(rep.unrealized)}   "
        f"closed trades {len(rep.trades)}   open positions {len(rep.open_positions)}",
    ]
    if len(rep.trades):
        wins = int((rep.trades["net_pnl"] > 0).sum())
        lines.append(
            f"  win rate {wins / len(rep.trades):.1%}   "
            f"avg trade {_pct(float(rep.trades['net_return'].mean()))}"
        )
    lines += [
        "",
        "open positions:",
        f"  {'symbol':<8}{'side':<6}{'entry':>11}{'fill':>11}{'shares':>10}{'last':>11}"
        f"{'held':>6}{'realized':>13}{'unrealized':>13}",
    ]
    for r in _rows(rep.open_positions):
        lines.append(
            f"  {r['symbol']:<8}{r['side']:<6}{_day(r['entry_date']):>11}"
            f"{float(r['entry_fill']):>11.4f}{float(r['shares_open']):>10.4g}"
            f"{float(r['last_close']):>11.4f}{int(r['bars_held']):>6}"
            f"{_money(r['realized']):>13}{_money(r['unrealized']):>13}"
        )
    lines += [
        "",
        "closed trades:",
        f"  {'#':>4} {'symbol':<8}{'side':<6}{'entry':>11}{'exit':>11}  {'reason':<12}"
        f"{'held':>5}{'net P&L':>13}{'return':>9}",
    ]
    for r in _rows(rep.trades):
        lines.append(
            f"  {int(r['trade_id']):>4} {r['symbol']:<8}{r['side']:<6}{_day(r['entry_date']):>11}"
            f"{_day(r['exit_date']):>11}  {r['exit_reason'] or '-':<12}{int(r['bars_held']):>5}"
            f"{_money(r['net_pnl']):>13}{_pct(r['net_return']):>9}"
        )
    lines += [
        "",
        "equity curve:",
        f"  {'date':<11}{'cash':>15}{'market value':>15}{'equity':>15}{'day':>9}",
    ]
    for r in _rows(rep.equity.tail(last_days)):
        lines.append(
            f"  {_day(r['date']):<11}{_money(r['cash']):>15}{_money(r['market_value']):>15}"
            f"{_money(r['equity']):>15}{_pct(r['day_return']):>9}"
        )
    return "\n".join(lines)
