"""Horizon labels: forward returns and the 3-class SELL/HOLD/BUY target.

A signal is computed from the close of bar t, so the earliest it can be traded is the open of
bar t+1: the forward return for horizon h is ``close[t+h] / open[t+1] − 1`` (for h = 1 that is
the next bar's open-to-close). Using close[t] as the entry would credit the model with the
overnight gap it could never have captured.

Thresholds, per horizon h:

* ``mode="atr"``: BUY when the forward return ≥ k_h × ATR%(14) at t, SELL when ≤ −k_h × ATR%;
  the threshold scales with each stock's own volatility, known at t.
* ``mode="fixed"`` (the legacy rule): ±``fixed_threshold[h]`` (10 %), which leaves almost every
  1-day row HOLD.

``relative_to="sector"`` (the default) applies the thresholds to the forward return minus the
equal-weighted mean forward return of the stock's sector on the same date: a model trained per
sector ranks stocks within it, and the raw 2- and 5-day returns are dominated by market and
sector moves no stock feature can call. ``fwd_ret_{h}`` stays the raw return (the daily rank IC
within a sector is the same either way).

Rows whose forward window runs past the data (the last h bars of a symbol) or whose ATR is
still warming up are unlabeled: NaN return, <NA> label. Labels are never inputs to features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from turbomode.config import LabelSettings
from turbomode.data.schema import PRICE_FIELDS
from turbomode.features import indicators as ind
from turbomode.features.engine import prepare_prices
from turbomode.features.layout import Layout

SELL, HOLD, BUY = 0, 1, 2
CLASS_NAMES: dict[int, str] = {SELL: "SELL", HOLD: "HOLD", BUY: "BUY"}
ATR_WINDOW = 14


def label_columns(horizons: list[int]) -> list[str]:
    """Column names :func:`make_labels` adds (so a feature list can be checked against them)."""
    return ["atr_pct_label", *(f"{k}_{h}" for h in horizons for k in ("fwd_ret", "label"))]


def make_labels(
    prices: pd.DataFrame,
    settings: LabelSettings | None = None,
    mode: Literal["atr", "fixed"] | None = None,
    sectors: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Forward returns and labels for every (symbol, date) row of ``prices``.

    Returns symbol, date, ``atr_pct_label`` (ATR%(14) at t, the threshold basis) and, per
    horizon h, ``fwd_ret_{h}`` (float64) and ``label_{h}`` (Int8: 0 SELL, 1 HOLD, 2 BUY).
    ``sectors`` (symbol → sector) is required when ``settings.relative_to == "sector"``.
    """
    settings = settings or LabelSettings()
    mode = mode or settings.mode
    if mode not in ("atr", "fixed"):
        raise ValueError(f"unknown label mode {mode!r}; use 'atr' or 'fixed'")
    table = settings.atr_multiple if mode == "atr" else settings.fixed_threshold
    missing = [h for h in settings.horizons if h not in table]
    if missing:
        raise ValueError(f"label mode {mode!r} has no threshold for horizon(s) {missing}")

    p = prepare_prices(prices)
    sector: pd.Series | None = None
    if settings.relative_to == "sector":
        if sectors is None:
            raise ValueError(
                "labels.relative_to='sector' needs the symbol → sector map (sectors=...)"
            )
        sector = p["symbol"].map(sectors)
        unknown = sorted(p.loc[sector.isna(), "symbol"].unique())
        if unknown:
            raise ValueError(f"no sector for symbol(s) {unknown[:10]} (labels.relative_to)")
    layout = Layout.from_frame(p)
    o, h, lo, c = (layout.to_bars(p[f].to_numpy()) for f in PRICE_FIELDS)
    with np.errstate(divide="ignore", invalid="ignore"):
        atr_pct = layout.from_bars(ind.atr(h, lo, c, ATR_WINDOW) / c)
        entry = ind.shift(o, -1)
        out = pd.DataFrame({"symbol": p["symbol"], "date": p["date"]})
        out["atr_pct_label"] = atr_pct
        for hz in settings.horizons:
            fwd = layout.from_bars(ind.shift(c, -hz) / entry - 1.0)
            basis = fwd
            if sector is not None:
                peer_mean = pd.Series(fwd).groupby([p["date"].to_numpy(), sector.to_numpy()])
                basis = fwd - peer_mean.transform("mean").to_numpy()
            thr = table[hz] * atr_pct if mode == "atr" else np.full_like(fwd, table[hz])
            known = ~(np.isnan(basis) | np.isnan(thr))
            lab = np.where(basis >= thr, BUY, np.where(basis <= -thr, SELL, HOLD))
            out[f"fwd_ret_{hz}"] = np.where(known, fwd, np.nan)
            coded = np.where(known, lab, np.nan)
            out[f"label_{hz}"] = pd.Series(coded, index=out.index).astype("Int8")
    return out


def class_balance(labels: pd.DataFrame, horizons: list[int] | None = None) -> pd.DataFrame:
    """Share of SELL/HOLD/BUY among labeled rows, per horizon (plus the labeled row count)."""
    hs = horizons or sorted(int(c.split("_")[1]) for c in labels.columns if c.startswith("label_"))
    rows = []
    for hz in hs:
        lab = labels[f"label_{hz}"].dropna().astype(int)
        n = len(lab)
        shares = {
            CLASS_NAMES[k]: float((lab == k).mean()) if n else np.nan for k in (SELL, HOLD, BUY)
        }
        rows.append({"horizon": hz, **shares, "n": n})
    return pd.DataFrame(rows).set_index("horizon")
