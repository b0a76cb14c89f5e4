"""Tiny hand-made price frames for the backtest tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

OHLC = tuple[float, float, float, float]


def prices(dates: Sequence[str], bars: dict[str, Sequence[OHLC | None]]) -> pd.DataFrame:
    """A long price frame; a None bar means the symbol has no row that day."""
    rows = []
    for symbol, seq in bars.items():
        for day, bar in zip(dates, seq, strict=False):
            if bar is None:
                continue
            o, h, lo, c = bar
            rows.append(
                {"symbol": symbol, "date": day, "open": o, "high": h, "low": lo, "close": c}
            )
    return pd.DataFrame(rows)


def flat(price: float, n: int) -> list[OHLC | None]:
    """n quiet bars around ``price`` (±0.1 %): no ATR level or Smart target is reached."""
    return [(price, price * 1.001, price * 0.999, price)] * n


def random_walk(symbols: Sequence[str], n: int, seed: int = 0) -> pd.DataFrame:
    """Geometric random-walk OHLC bars on a business-day calendar."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n)
    frames = []
    for k, symbol in enumerate(symbols):
        close = 50.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        open_ = close * np.exp(rng.normal(0, 0.01, n))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.01, n)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.01, n)))
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "date": dates,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
