"""Parquet and CSV files in the canonical long shape (``../shared/data`` works as is).

A directory holds ``prices.{parquet,csv}``, optionally ``market.{parquet,csv}``, a
constituents file (``constituents.csv``) and membership intervals
(``sp500_membership_intervals.csv`` or ``membership.csv``). A single file is read as prices,
with the constituents taken from settings or from beside it.

Market files may carry ``adj_close`` with a ``close`` that is only split-adjusted (Yahoo's
convention for ETFs); they are rebased so open/high/low/close are all on the adjusted basis,
the same basis as stock prices.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq

from turbomode.config import Settings
from turbomode.data.schema import PRICE_COLUMNS, require_columns
from turbomode.data.sources.base import (
    DateLike,
    MarketData,
    MarketDataSource,
    describe_selection,
)
from turbomode.data.universe import Universe
from turbomode.errors import SourceError
from turbomode.io import read_table, reading

CONSTITUENT_NAMES = ("constituents.csv", "constituents.parquet", "universe.parquet")
MEMBERSHIP_NAMES = ("sp500_membership_intervals.csv", "membership.csv", "membership.parquet")


def _find(directory: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (directory / name).exists():
            return directory / name
    return None


def _iso(value: DateLike) -> str | None:
    return None if value is None else pd.Timestamp(value).strftime("%Y-%m-%d")


def read_long(
    path: Path,
    symbols: Sequence[str] | None = None,
    start: DateLike = None,
    end: DateLike = None,
    what: str = "price file",
) -> pd.DataFrame:
    """Read a long file, pushing symbol and date filters down to the reader where it can."""
    if path.suffix == ".parquet":
        with reading(path, what):
            schema = pq.read_schema(path)
            require_columns(pd.DataFrame(columns=schema.names), PRICE_COLUMNS, str(path))
            date_is_text = schema.field("date").type in ("string", "large_string")
            filters: list[tuple[str, str, object]] = []
            if symbols is not None:
                filters.append(("symbol", "in", list(symbols)))
            for op, value in ((">=", start), ("<=", end)):
                if value is not None:
                    day = _iso(value) if date_is_text else pd.Timestamp(value)
                    filters.append(("date", op, day))
            frame = (
                pq.read_table(path, filters=filters).to_pandas()
                if filters
                else pd.read_parquet(path)
            )
    else:
        frame = read_table(path, what)
        require_columns(frame, PRICE_COLUMNS, str(path))
        # Filter after reading: CSV has no pushdown. Dates compare as timestamps.
        if symbols is not None:
            frame = frame[frame["symbol"].isin(set(symbols))]
        if start is not None or end is not None:
            d = pd.to_datetime(frame["date"], errors="coerce")
            keep = pd.Series(True, index=frame.index)
            if start is not None:
                keep &= ~(d < pd.Timestamp(start))
            if end is not None:
                keep &= ~(d > pd.Timestamp(end))
            frame = frame[keep]
    return frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index(drop=True)


def rebase_adjusted(market: pd.DataFrame) -> pd.DataFrame:
    """Put OHLC on the split+dividend-adjusted basis when an ``adj_close`` column is given."""
    if "adj_close" not in market.columns:
        return market
    out = market.copy()
    factor = pd.to_numeric(out["adj_close"], errors="coerce") / pd.to_numeric(
        out["close"], errors="coerce"
    )
    for col in ("open", "high", "low"):
        out[col] = pd.to_numeric(out[col], errors="coerce") * factor
    out["close"] = pd.to_numeric(out["adj_close"], errors="coerce")
    return out.drop(columns=["adj_close"])


class FileSource(MarketDataSource):
    """Reads prices, market context and the universe from parquet or CSV files."""

    def __init__(
        self,
        path: Path | str,
        settings: Settings | None = None,
        kind: Literal["parquet", "csv"] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"data path not found: {self.path}")
        self.name = kind or ("csv" if self.path.suffix == ".csv" else "parquet")
        directory = self.path if self.path.is_dir() else self.path.parent
        if self.path.is_dir():
            prices = _find(directory, (f"prices.{self.name}", "prices.parquet", "prices.csv"))
            if prices is None:
                raise SourceError(f"no prices.parquet or prices.csv in {directory}")
            self.prices_path = prices
        else:
            self.prices_path = self.path
        self.market_path = _find(directory, ("market.parquet", "market.csv"))
        data = self.settings.data
        self.constituents_path = data.constituents_path or _find(directory, CONSTITUENT_NAMES)
        if self.constituents_path is None:
            raise SourceError(
                f"no constituents file for {self.path}: put constituents.csv beside the prices "
                "or set data.constituents_path (TURBOMODE_DATA__CONSTITUENTS_PATH)"
            )
        self.membership_path = data.membership_path or _find(directory, MEMBERSHIP_NAMES)

    def load(
        self,
        symbols: Sequence[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> MarketData:
        assert self.constituents_path is not None
        universe = Universe.load(
            self.constituents_path, self.membership_path, self.settings.universe
        )
        if symbols is not None:
            universe.require(symbols)
        prices = read_long(self.prices_path, symbols, start, end)
        if prices.empty:
            raise SourceError(
                f"no price rows in {self.prices_path}{describe_selection(symbols, start, end)}"
            )
        if self.market_path is not None:
            market = rebase_adjusted(read_long(self.market_path, None, start, end, "market file"))
        else:
            market = prices.iloc[0:0].copy()
        wanted = list(symbols) if symbols is not None else universe.symbols
        present = set(prices["symbol"].astype(str).unique())
        skipped = {s: "no price rows in the file" for s in wanted if s not in present}
        if symbols is None:
            # Constituents that have no price history are normal (recent additions); say so
            # only for symbols explicitly asked for.
            skipped = {}
        return MarketData(prices, market, universe, source=self.name, skipped=skipped)


def read_frames(
    directory: Path | str,
    start: DateLike,
    market_start: DateLike,
    symbols: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Prices from ``start``, adjusted market series from ``market_start`` (an earlier date
    gives market indicators their warm-up) and symbol → sector, from a data directory, with
    canonical dtypes and no validation: for benchmarks and reference tests that need raw rows.
    """
    directory = Path(directory)
    px = read_long(directory / "prices.parquet", symbols, start)
    mk = rebase_adjusted(read_long(directory / "market.parquet", None, market_start))
    for frame in (px, mk):
        frame["date"] = pd.to_datetime(frame["date"])
        frame["volume"] = frame["volume"].astype("float64")
    cons = pd.read_csv(directory / "constituents.csv")
    return px, mk, dict(zip(cons["symbol"], cons["sector"], strict=True))
