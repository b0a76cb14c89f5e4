"""Portfolio backtesting (issue #9): a daily event-driven engine over a signals table, exit rule
sets behind one protocol (TurboMode ATR rules, Smart Scanner tiers), pluggable sizing, metrics
beside SPY buy-and-hold, and a self-contained HTML report.

Signals act on the next bar's open, never on the bar whose close made them.
"""

from turbomode.backtest.engine import (
    FILL_COLUMNS,
    SIGNAL_COLUMNS,
    TRADE_COLUMNS,
    BacktestResult,
    normalize_signals,
    run_backtest,
)
from turbomode.backtest.performance import (
    buy_and_hold,
    by_group,
    daily_returns,
    drawdown,
    equity_metrics,
    exposure_metrics,
    max_drawdown,
    profit_factor,
    regime_days,
    sharpe,
    sortino,
    summarize,
    trade_metrics,
)
from turbomode.backtest.policies import (
    AtrExitPolicy,
    Bar,
    EntryOrder,
    ExitEvent,
    ExitPolicy,
    SmartExitPolicy,
    make_policy,
)
from turbomode.backtest.report import ReportPaths, render_html, write_report
from turbomode.backtest.settings import BacktestSettings
from turbomode.backtest.sizing import (
    FixedFraction,
    KellySizer,
    SignalColumnSize,
    Sizer,
    SizingContext,
)

__all__ = [
    "FILL_COLUMNS",
    "SIGNAL_COLUMNS",
    "TRADE_COLUMNS",
    "AtrExitPolicy",
    "BacktestResult",
    "BacktestSettings",
    "Bar",
    "EntryOrder",
    "ExitEvent",
    "ExitPolicy",
    "FixedFraction",
    "KellySizer",
    "ReportPaths",
    "SignalColumnSize",
    "Sizer",
    "SizingContext",
    "SmartExitPolicy",
    "buy_and_hold",
    "by_group",
    "daily_returns",
    "drawdown",
    "equity_metrics",
    "exposure_metrics",
    "make_policy",
    "max_drawdown",
    "normalize_signals",
    "profit_factor",
    "regime_days",
    "render_html",
    "run_backtest",
    "sharpe",
    "sortino",
    "summarize",
    "trade_metrics",
    "write_report",
]
