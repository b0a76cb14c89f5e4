"""The market history a replay and a walk-forward run on: prices, features computed once over
the whole clean store and labels, each as of any day.

Features are computed once on purpose: point-in-time correctness (row t uses data ≤ t) is what
keeps day d from seeing later rows, and the replay's and the walk-forward's look-ahead tests
check exactly that by deleting the rows after the window and getting identical results.
Labels are made per call from the prices known on the day, so a label at t is there only once
the close of t + h is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.labels import make_labels


class MarketHistory:
    """Prices, point-in-time features and labels as of any day of the history."""

    def __init__(
        self,
        settings: Settings,
        md: MarketData,
        sectors: Sequence[str] | None = None,
        train_days: int | None = None,
    ) -> None:
        from turbomode.feature_store import FeatureLayout
        from turbomode.features.engine import build_features

        # Features over the whole universe (cross-sectional ranks need every stock), then
        # the chosen sectors' rows.
        built = build_features(md.prices, md.market, md.universe.sector_map(), macro=md.macro)
        members = md.universe.members
        if sectors:
            unknown = sorted(set(sectors) - set(members["sector"]))
            if unknown:
                raise ValueError(f"no symbols in sector(s) {unknown}")
            members = members[members["sector"].isin(list(sectors))].reset_index(drop=True)
        keep = set(members["symbol"])
        self.md = MarketData(
            prices=md.prices[md.prices["symbol"].isin(keep)].reset_index(drop=True),
            market=md.market,
            universe=replace(md.universe, members=members),
            source=md.source,
            macro=md.macro,
        )
        self.sectors = list(sectors) if sectors else None
        self.sector_map = self.md.universe.sector_map()
        self.settings = settings
        self.train_days = train_days
        self.names = FeatureLayout.from_registry().all
        self.features = built.frame[built.frame["symbol"].isin(keep)].reset_index(drop=True)
        self.features["date"] = pd.to_datetime(self.features["date"])
        self.calendar = pd.DatetimeIndex(np.sort(self.md.prices["date"].unique()))

    def prices_until(self, day: pd.Timestamp) -> pd.DataFrame:
        return self.md.prices[self.md.prices["date"] <= day]

    def market_until(self, day: pd.Timestamp) -> MarketData:
        return replace(
            self.md,
            prices=self.prices_until(day),
            market=self.md.market[self.md.market["date"] <= day],
        )

    def training_rows(self, day: pd.Timestamp) -> pd.DataFrame:
        """Feature rows with the labels known on ``day`` (forward windows ending by then),
        over the last ``train_days`` trading days when set (a rolling window)."""
        prices = self.prices_until(day)
        if self.train_days is not None:
            past = self.calendar[self.calendar <= day]
            prices = prices[prices["date"] >= past[max(0, len(past) - self.train_days)]]
        labels = make_labels(prices, self.settings.labels, sectors=self.sector_map)
        keep = [c for c in labels.columns if c.startswith(("label_", "fwd_ret_"))]
        labels = labels[labels[[c for c in keep if c.startswith("label_")]].notna().any(axis=1)]
        labels["sector"] = labels["symbol"].map(self.sector_map)
        rows = labels[["symbol", "date", "sector", *keep]].merge(
            self.features, on=["symbol", "date"], how="inner"
        )
        return rows.sort_values(["date", "symbol"]).reset_index(drop=True)

    def vectors(self, day: pd.Timestamp) -> pd.DataFrame:
        """What the online store would serve after the close of ``day``."""
        rows = self.features[self.features["date"] == day]
        return rows[["symbol", *self.names]].reset_index(drop=True)
