"""Baseline scores every model is measured beside, and a feature read as a score.

Each returns a long frame (symbol, date, score) where the score at t uses closes dated ≤ t
only, so it is tradable at the next open like any model's score.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from turbomode.errors import SchemaError
from turbomode.research.factor import _floats, _lead, _require, _sorted_codes


def _past_return(prices: pd.DataFrame, days: int) -> pd.DataFrame:
    """close[t] / close[t−days] − 1 per symbol over its own bars (NaN while warming up)."""
    if days < 1:
        raise ValueError(f"days must be ≥ 1, got {days}")
    _require(prices, ["symbol", "date", "close"], "prices")
    order, codes = _sorted_codes(prices)
    close = _floats(prices["close"])[order]
    return pd.DataFrame(
        {
            "symbol": prices["symbol"].to_numpy()[order],
            "date": pd.to_datetime(prices["date"]).to_numpy()[order],
            "score": close / _lead(close, codes, -days) - 1.0,
        }
    )


def reversal(prices: pd.DataFrame, days: int = 5) -> pd.DataFrame:
    """Short-term reversal: −(close[t] / close[t−days] − 1). Losers of the last week tend to
    bounce; the platform's yardstick baseline (IC ≈ 0.012 from the next open on real data)."""
    out = _past_return(prices, days)
    out["score"] = -out["score"]
    return out


def momentum(prices: pd.DataFrame, days: int = 20) -> pd.DataFrame:
    """Price momentum close[t] / close[t−days] − 1, with no skipped recent days (so over a
    month it partly fights the reversal above — which is the point of showing both)."""
    return _past_return(prices, days)


def feature_score(features: pd.DataFrame, name: str) -> pd.DataFrame:
    """One feature column as the score (a single feature's tear sheet)."""
    if name not in features.columns:
        raise SchemaError(f"no feature {name!r} in the feature table")
    _require(features, ["symbol", "date"], "features")
    out = pd.DataFrame(
        {
            "symbol": features["symbol"].to_numpy(),
            "date": pd.to_datetime(features["date"]).to_numpy(),
            "score": _floats(features[name]),
        }
    )
    return out[np.isfinite(out["score"].to_numpy())].reset_index(drop=True)
