"""Small synthetic markets and a real-data loader for the feature tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.data.sources.files import read_frames

SECTORS3 = ("Information Technology", "Financials", "Energy")
ETF3 = {"Information Technology": "XLK", "Financials": "XLF", "Energy": "XLE"}


def _ohlcv(rng: np.random.Generator, n: int, start: float, vol: float) -> dict[str, np.ndarray]:
    close = start * np.exp(np.cumsum(rng.normal(0.0003, vol, n)))
    open_ = close * np.exp(rng.normal(0, vol / 3, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol / 2, n)))
    volume = rng.lognormal(13, 0.4, n).round()
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def synthetic_market(
    n_symbols: int = 12, n_days: int = 320, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Prices with staggered starts (one symbol short), market series and a sector map."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    frames, sectors = [], {}
    for i in range(n_symbols):
        sym = f"S{i:02d}"
        start = 0 if i % 4 else int(rng.integers(20, 120))
        if i == n_symbols - 1:
            start = n_days - 30  # a symbol with too little history
        n = n_days - start
        f = pd.DataFrame(
            {"symbol": sym, "date": dates[start:], **_ohlcv(rng, n, 50 + 10 * i, 0.02)}
        )
        frames.append(f)
        sectors[sym] = SECTORS3[i % 3]
    prices = pd.concat(frames, ignore_index=True)
    mk = []
    for sym, lvl in (
        ("SPY", 300.0),
        ("^VIX", 18.0),
        ("QQQ", 250.0),
        ("IWM", 150.0),
        *((e, 60.0) for e in ETF3.values()),
    ):
        f = pd.DataFrame({"symbol": sym, "date": dates, **_ohlcv(rng, n_days, lvl, 0.012)})
        mk.append(f)
    market = pd.concat(mk, ignore_index=True)
    # VIX skips a day (holiday in its calendar): features must take the previous value.
    market = market[~((market["symbol"] == "^VIX") & (market["date"] == dates[200]))]
    return prices, market.reset_index(drop=True), sectors


@pytest.fixture(scope="session")
def synth() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    return synthetic_market()


def synthetic_macro(market: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Macro vintages (published late, revised) for a market frame's SPY calendar, from the
    platform's generator with SPY's returns as the market factor."""
    from turbomode.data.sources.synthetic import macro_series

    spy = market[market["symbol"] == "SPY"].sort_values("date")
    ret = np.log(spy["close"]).diff().fillna(0.0).to_numpy()
    return macro_series(seed, pd.DatetimeIndex(spy["date"]), ret, np.abs(ret) > 0.02)


@pytest.fixture(scope="session")
def synth_macro(synth: tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]) -> pd.DataFrame:
    return synthetic_macro(synth[1])


def load_real(
    data_dir: Path, symbols: list[str] | None = None, start: str = "2017-06-28"
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Prices, adjusted market frame and sectors from ../shared/data (read in place)."""
    return read_frames(data_dir, start, "2015-01-01", symbols)
