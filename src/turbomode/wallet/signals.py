"""The signals a wallet acts on: one scan's fresh calls from the store, as the engine's table.

The nightly scan records its whole active set in ``signal_history`` under its scan date; the
calls *made* that night are the rows whose ``signal_date`` is the scan date (older ones are
still active but their entry open has passed — the nightly position manager enters the same
ones). A symbol may have a call per horizon; the wallet holds one position per symbol, so the
most confident call is kept (the shorter horizon on a tie).
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from turbomode.config import Settings
from turbomode.store import SignalStore

WALLET_SIGNAL_COLUMNS: tuple[str, ...] = (
    "date",
    "symbol",
    "side",
    "sector",
    "cap_class",
    "horizon",
    "confidence",
    "strength",
    "close",
    "atr",
    "stop_distance",
    "entry_low",
    "entry_high",
    "model_version",
)


def previous_scan_date(store: SignalStore, day: date) -> date | None:
    """The latest complete scan strictly before ``day``, or None."""
    runs = store.runs()
    if runs.empty:
        return None
    done = runs[runs["status"] == "complete"]
    dates = sorted(d for d in pd.to_datetime(done["scan_date"]).dt.date if d < day)
    return dates[-1] if dates else None


def scan_signals(store: SignalStore, scan_date: date) -> pd.DataFrame:
    """The calls the scan of ``scan_date`` made, one per symbol, in the engine's signal table
    (``strength`` = 100 × confidence, the Smart Scanner's 0–100 scale)."""
    hist = store.signal_history(since=scan_date)
    if hist.empty:
        return pd.DataFrame(columns=list(WALLET_SIGNAL_COLUMNS))
    day = pd.Timestamp(scan_date)
    fresh = hist[(hist["scan_date"] == day) & (hist["signal_date"] == day)].copy()
    fresh = fresh.sort_values(["symbol", "confidence", "horizon"], ascending=[True, False, True])
    fresh = fresh.drop_duplicates("symbol", keep="first")
    fresh["date"] = fresh["signal_date"]
    fresh["strength"] = 100.0 * fresh["confidence"]
    return fresh[list(WALLET_SIGNAL_COLUMNS)].reset_index(drop=True)


def smart_signals(signals: pd.DataFrame, market: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The Smart rules' candidates among ``signals``: BUYs whose strength reaches the entry
    threshold of the market regime on their date, ranked Average — the backtest's selection
    (:func:`turbomode.smart.candidates.smart_candidates`), with the regime read as of that date."""
    from turbomode.risk.regime import regime_on
    from turbomode.smart.candidates import smart_candidates

    if signals.empty:
        return signals.assign(regime=pd.Series(dtype=object), tier=pd.Series(dtype=object))
    dates = sorted(pd.to_datetime(signals["date"]).unique())
    regimes = pd.DataFrame(
        {"regime": [regime_on(market, settings.regime, as_of=d).regime for d in dates]},
        index=pd.DatetimeIndex(dates),
    )
    regimes["regime"] = [None if r is None else str(r) for r in regimes["regime"]]
    out = smart_candidates(signals, regimes, settings)
    out["regime"] = out["regime"].fillna("CHOPPY")
    return out
