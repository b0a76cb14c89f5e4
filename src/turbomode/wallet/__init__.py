"""The paper wallet (issue #9): scan output in, positions opened and managed day by day with
either exit rule set, everything kept in the signals store, P&L out.

A wallet is the backtest engine run one live day at a time: the same policies, costs and
trade accounting (:mod:`turbomode.backtest`), with the state between days in the store rather
than in memory.
"""

from turbomode.wallet.day import (
    DayResult,
    LookaheadError,
    WalletError,
    run_day,
    wallet_policy,
    wallet_settings,
)
from turbomode.wallet.report import WalletReport, format_report, report
from turbomode.wallet.signals import previous_scan_date, scan_signals, smart_signals
from turbomode.wallet.state import StateCodecError, decode_state, encode_state

__all__ = [
    "DayResult",
    "LookaheadError",
    "StateCodecError",
    "WalletError",
    "WalletReport",
    "decode_state",
    "encode_state",
    "format_report",
    "previous_scan_date",
    "report",
    "run_day",
    "scan_signals",
    "smart_signals",
    "wallet_policy",
    "wallet_settings",
]
