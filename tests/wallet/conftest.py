"""Wallet test fixtures: a migrated store on SQLite and (integration) on the machine's
PostgreSQL in a schema of its own, hand-made bars and settings with a simple cost model."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from turbomode.config import Settings
from turbomode.store import SignalStore

D0, D1, D2, D3, D4 = (date(2024, 3, d) for d in (4, 5, 6, 7, 8))
OHLC = tuple[float, float, float, float]


def make_settings(**backtest: Any) -> Settings:
    """10 bps slippage, 0.01/share commission with a 1.00 floor, 10 % per ATR entry."""
    values: dict[str, Any] = {
        "slippage_bps": 10.0,
        "commission_per_share": 0.01,
        "commission_bps": 0.0,
        "min_commission": 1.0,
        "position_fraction": 0.10,
        "initial_cash": 100_000.0,
    }
    values.update(backtest)
    return Settings(backtest=values, stores={"pushgateway_url": None})


def bars(rows: dict[tuple[str, date], OHLC]) -> pd.DataFrame:
    """A long price frame from {(symbol, day): (open, high, low, close)}."""
    return pd.DataFrame(
        [
            {"symbol": s, "date": pd.Timestamp(d), "open": o, "high": h, "low": lo, "close": c}
            for (s, d), (o, h, lo, c) in rows.items()
        ]
    )


def signal(symbol: str, day: date, side: str = "BUY", **kw: Any) -> dict[str, Any]:
    """One signal row of the engine's table (ATR: 1R = stop_distance)."""
    row: dict[str, Any] = {
        "date": pd.Timestamp(day),
        "symbol": symbol,
        "side": side,
        "sector": "Information Technology",
        "horizon": 5,
        "confidence": 0.6,
        "strength": 60.0,
        "stop_distance": 2.0,
        "close": 100.0,
    }
    row.update(kw)
    return row


def state_of(store: SignalStore, name: str) -> dict[str, Any]:
    """Everything a reader sees of a wallet, to compare runs."""
    w = store.wallet(name)

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:  # NaN/NaT as None: comparable
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    return {
        "wallet": (w.last_date, w.version),
        "positions": records(store.wallet_positions(name)),
        "fills": records(store.wallet_fills(name)),
        "equity": records(store.wallet_equity(name)),
    }
