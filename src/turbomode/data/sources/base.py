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
    macro: pd.DataFrame | None = None
    """Macro series as vintages (turbomode.data.macro), when the source has them: the synthetic
    market does, real market files and Yahoo do not (FRED is a source of its own)."""


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


class MacroSource(ABC):
    """A place macro series come from. Implementations return the vintage table of
    :mod:`turbomode.data.macro` — every value dated by its first release — unvalidated;
    validation happens after, in one place."""

    name: str = "abstract"

    @abstractmethod
    def load(self, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
        """Vintage rows of every configured series, observations from ``start`` (None: the
        configured first date) to ``end`` (None: the newest)."""


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


def date_range(start: DateLike, end: DateLike) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """Parse an inclusive start..end (None: open). A start after the end is a mistake to name
    before anything is read, not an empty selection to discover after."""
    try:
        s = pd.Timestamp(start).normalize() if start is not None else None
        e = pd.Timestamp(end).normalize() if end is not None else None
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"start/end must be dates YYYY-MM-DD (got {start!r}, {end!r}): {exc}"
        ) from None
    if s is not None and e is not None and s > e:
        raise ValueError(f"start {s.date()} is after end {e.date()}")
    return s, e


def describe_selection(symbols: Sequence[str] | None, start: DateLike, end: DateLike) -> str:
    """' for AAA, BBB from 2024-01-01 to 2024-06-30': what was asked for, for an error that
    says why nothing came back."""
    text = ""
    if symbols is not None:
        shown = ", ".join(list(symbols)[:10]) + (" …" if len(symbols) > 10 else "")
        text += f" for {shown}"
    if start is not None:
        text += f" from {pd.Timestamp(start).date()}"
    if end is not None:
        text += f" to {pd.Timestamp(end).date()}"
    return text
