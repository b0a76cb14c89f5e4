"""The one interface every market data source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import pandas as pd

from turbomode.data.schema import KEY
from turbomode.data.universe import Universe

DateLike = str | date | pd.Timestamp | None


@dataclass
class MarketData:
    """What a source delivers: stock prices, market context and the universe, all in the long
    shape (symbol, date, open, high, low, close, volume) on an adjusted basis."""

    prices: pd.DataFrame
    market: pd.DataFrame
    universe: Universe
    source: str
    skipped: dict[str, str] = field(default_factory=dict)
    """Symbols asked for but not delivered, with the reason (unknown, delisted, no data)."""


class MarketDataSource(ABC):
    """A place market data comes from. Implementations return raw rows; validation happens
    after, in one place, for every source alike."""

    name: str = "abstract"

    @abstractmethod
    def load(
        self,
        symbols: Sequence[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> MarketData:
        """Load prices for ``symbols`` (None: the whole universe) between start and end."""


def filter_frame(
    frame: pd.DataFrame,
    symbols: Sequence[str] | None = None,
    start: DateLike = None,
    end: DateLike = None,
) -> pd.DataFrame:
    """Restrict a long frame to symbols and an inclusive date range."""
    mask = pd.Series(True, index=frame.index)
    if symbols is not None:
        mask &= frame["symbol"].isin(set(symbols))
    if start is not None:
        mask &= frame["date"] >= pd.Timestamp(start)
    if end is not None:
        mask &= frame["date"] <= pd.Timestamp(end)
    out = frame[mask] if not bool(mask.all()) else frame
    return out.sort_values(KEY, kind="stable").reset_index(drop=True)
