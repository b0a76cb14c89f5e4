"""Two 2-D views of one long (symbol, date)-sorted frame, so no code loops over symbols.

* **bar view** (bars × symbols, left-aligned): row i of column s is symbol s's i-th bar. Time
  series indicators run here: windows count a symbol's own bars, so a gap in one symbol's
  history never shifts another's, and every column's prefix is exactly its past.
* **date view** (dates × symbols): row d holds every symbol's value on date d. Cross-sectional
  features run here: a rank on date d sees only the rows of date d.

Scatter (long → 2-D) and gather (2-D → long) are single fancy-indexing operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features.indicators import Array

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Layout:
    """Index maps of a frame sorted by (symbol, date) with unique keys."""

    symbols: npt.NDArray[np.object_]
    dates: npt.NDArray[np.datetime64]
    sym_code: IntArray
    date_code: IntArray
    pos: IntArray
    n_bars: IntArray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Layout:
        """Build from a frame already sorted by (symbol, date)."""
        sym_code, symbols = pd.factorize(frame["symbol"], sort=False)
        date_values = frame["date"].to_numpy(dtype="datetime64[ns]")
        date_code, dates = pd.factorize(date_values, sort=True)
        n = len(frame)
        starts = (
            np.flatnonzero(np.r_[True, sym_code[1:] != sym_code[:-1]]) if n else np.array([], int)
        )
        counts = np.diff(np.r_[starts, n]).astype(np.intp)
        pos = np.arange(n, dtype=np.intp) - np.repeat(starts, counts)
        return cls(
            symbols=np.asarray(symbols, dtype=object),
            dates=np.asarray(dates, dtype="datetime64[ns]"),
            sym_code=sym_code.astype(np.intp),
            date_code=date_code.astype(np.intp),
            pos=pos,
            n_bars=counts,
        )

    @property
    def n_rows(self) -> int:
        return len(self.sym_code)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def max_bars(self) -> int:
        return int(self.n_bars.max()) if len(self.n_bars) else 0

    def to_bars(self, values: npt.ArrayLike) -> Array:
        """Long → bar view (NaN after each symbol's last bar)."""
        out = np.full((self.max_bars, self.n_symbols), np.nan)
        out[self.pos, self.sym_code] = values
        return out

    def from_bars(self, wide: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Bar view → long."""
        return wide[self.pos, self.sym_code]

    def to_dates(self, values: npt.ArrayLike) -> Array:
        """Long → date view (NaN where a symbol has no row on a date)."""
        out = np.full((len(self.dates), self.n_symbols), np.nan)
        out[self.date_code, self.sym_code] = values
        return out

    def from_dates(self, wide: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Date view → long."""
        return wide[self.date_code, self.sym_code]

    def row_dates(self) -> npt.NDArray[np.datetime64]:
        return self.dates[self.date_code]
