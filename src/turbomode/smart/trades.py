"""The table of measured trades that tiers and modifier evidence are computed from.

One row per historical signal the backtester (or the paper wallet) took and closed:
``symbol``, ``signal_date`` (the close whose features made the call), ``exit_date`` (when the
outcome became known) and ``return`` (the trade's fractional return, net of costs). A ``win``
column of booleans may give the outcome explicitly; otherwise a win is a return above zero.
Feature columns, named as in the feature registry, ride along for the modifier rules.

Evidence is measured here, never typed in: a number a person writes into a rule file cannot be
checked, a number computed from this table can.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from turbomode.errors import SchemaError

TRADE_COLUMNS: tuple[str, ...] = ("symbol", "signal_date", "exit_date", "return")


def normalize_trades(trades: pd.DataFrame, extra: Iterable[str] = ()) -> pd.DataFrame:
    """A copy with the dates as Timestamps, ``return`` as float and a boolean ``win`` column.

    Missing columns (of :data:`TRADE_COLUMNS` and ``extra``) raise :class:`SchemaError`; so do
    a non-finite return, a missing date or an exit before its signal — each would corrupt
    every rate computed from the table.
    """
    wanted = [*TRADE_COLUMNS, *extra]
    missing = [c for c in wanted if c not in trades.columns]
    if missing:
        raise SchemaError(f"trades table needs columns {wanted}; missing {missing}")
    out = trades.copy()
    for col in ("signal_date", "exit_date"):
        out[col] = pd.to_datetime(out[col])
        if out[col].isna().any():
            raise SchemaError(f"trades table: {int(out[col].isna().sum())} missing {col}(s)")
    out["return"] = out["return"].astype(float)
    bad = ~np.isfinite(out["return"].to_numpy())
    if bad.any():
        raise SchemaError(f"trades table: {int(bad.sum())} non-finite return(s)")
    backwards = out["exit_date"] < out["signal_date"]
    if backwards.any():
        raise SchemaError(f"trades table: {int(backwards.sum())} trade(s) exit before the signal")
    if "win" in out.columns:
        if out["win"].isna().any():
            raise SchemaError("trades table: missing values in 'win'")
        out["win"] = out["win"].astype(bool)
    else:
        out["win"] = out["return"] > 0.0
    return out
