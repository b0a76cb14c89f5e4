"""Two 2-D views of one long (symbol, date)-sorted frame, so no code loops over symbols.

* **bar view** (bars × symbols, left-aligned, Fortran order): row i of column s is symbol s's
  i-th bar. Time series indicators run here: windows count a symbol's own bars, so a gap in one
  symbol's history never shifts another's, and every column's prefix is exactly its past. Each
  column is contiguous, so moving windows stream along it and gathering back to the long frame
  (sorted by symbol, then date) reads memory in order.
* **date view** (dates × symbols): row d holds every symbol's value on date d. Cross-sectional
  features run here: a rank on date d sees only the rows of date d.

Scatter (long → 2-D) and gather (2-D → long) are single fancy-indexing operations. A family
may hand back a :class:`Gather` instead of a long array: the engine then reads it straight into
its float32 output column, and no float64 long copy of the feature is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features.indicators import Array

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class Gather:
    """One value per long row, not yet read: ``source[index]`` (``source`` is 1-D).

    ``runs`` (optional) describes the same gather as contiguous blocks — (source start,
    output start, length) — which slice copies read faster than an index when they are few:
    a bar view's symbols with a full history are adjacent in both, so they merge into one."""

    source: npt.NDArray[Any]
    index: IntArray
    runs: npt.NDArray[np.intp] | None = None

    def into(self, out: npt.NDArray[Any]) -> None:
        """Read into ``out`` (any float dtype; the indices are valid by construction)."""
        if self.runs is not None:
            src = self.source
            for s, d, n in self.runs.tolist():
                out[d : d + n] = src[s : s + n]
        else:  # "wrap" skips the bounds check ("raise") and is faster than "clip"
            np.take(self.source, self.index, out=out, mode="wrap")

    def values(self) -> Array:
        return np.take(self.source, self.index, mode="wrap")


Column = Array | Gather
"""What a family returns per feature: a long array or a pending gather."""


def values(col: Column) -> Array:
    """A family's column as a long array."""
    return col.values() if isinstance(col, Gather) else col


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

    @cached_property
    def _bar_flat(self) -> IntArray:
        """Each long row's offset in a Fortran-order bar view: column-major, so increasing."""
        return self.sym_code * self.max_bars + self.pos

    @cached_property
    def _bar_runs(self) -> npt.NDArray[np.intp] | None:
        """:attr:`_bar_flat` as merged contiguous runs, or None when there would be many."""
        src = np.arange(self.n_symbols, dtype=np.intp) * self.max_bars
        dst = np.r_[0, np.cumsum(self.n_bars)[:-1]].astype(np.intp)
        joins = self.n_bars[:-1] == self.max_bars  # symbol s runs straight into s + 1
        first = np.r_[True, ~joins]
        starts = np.flatnonzero(first)
        ends = np.r_[starts[1:], self.n_symbols]
        lengths = dst[ends - 1] + self.n_bars[ends - 1] - dst[starts]
        if len(starts) > 256:
            return None
        return np.stack([src[starts], dst[starts], lengths], axis=1)

    @cached_property
    def _date_flat(self) -> IntArray:
        """Each long row's offset in a C-order date view."""
        return self.date_code * self.n_symbols + self.sym_code

    def to_bars(self, values: npt.ArrayLike) -> Array:
        """Long → bar view (NaN after each symbol's last bar), Fortran order."""
        out = np.full((self.max_bars, self.n_symbols), np.nan, order="F")
        out.T.reshape(-1)[self._bar_flat] = values  # .T of an F array is C: reshape is a view
        return out

    def from_bars(self, wide: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Bar view → long (a sequential gather when ``wide`` is in Fortran order)."""
        return self.bars_column(wide).values()

    def bars_column(self, wide: npt.NDArray[Any]) -> Gather:
        """Bar view → a pending long column."""
        return Gather(np.asfortranarray(wide).T.reshape(-1), self._bar_flat, self._bar_runs)

    def dates_column(self, wide: npt.NDArray[Any]) -> Gather:
        """Date view → a pending long column."""
        return Gather(np.ascontiguousarray(wide).reshape(-1), self._date_flat)

    def per_date(self, values: npt.NDArray[Any]) -> Gather:
        """One value per date (``self.dates``) → a pending long column."""
        return Gather(np.asarray(values), self.date_code)

    def to_dates(self, values: npt.ArrayLike) -> Array:
        """Long → date view (NaN where a symbol has no row on a date)."""
        out = np.full((len(self.dates), self.n_symbols), np.nan)
        out.reshape(-1)[self._date_flat] = values
        return out

    def from_dates(self, wide: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Date view → long."""
        return self.dates_column(wide).values()

    def row_dates(self) -> npt.NDArray[np.datetime64]:
        return self.dates[self.date_code]
