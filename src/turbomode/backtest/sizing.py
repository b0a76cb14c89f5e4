"""Position sizing callbacks: the engine asks one for a fraction of equity per entry.

A sizer is any callable ``(SizingContext) -> float`` returning the fraction of equity (at the
previous close) to put in the position; 0 skips the entry. The engine turns the fraction into
shares at the expected fill price. Three are provided:

* :class:`FixedFraction` — the default, ``BacktestSettings.position_fraction`` of equity;
* :class:`SignalColumnSize` — a size the signal generator already computed (the Smart Scanner
  publishes Kelly sizes in ``SignalV2.size``);
* :class:`KellySizer` — :func:`turbomode.smart.sizing.position_size` on the signal's strength,
  tier and regime, for a measured win rate and payoff.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from turbomode.config import SmartSettings


@dataclass(frozen=True)
class SizingContext:
    """What a sizer may look at: the signal row, equity at the previous close, cash now, the
    expected fill price and how many positions are open."""

    row: Mapping[str, Any]
    equity: float
    cash: float
    price: float
    open_positions: int


Sizer = Callable[[SizingContext], float]


@dataclass(frozen=True)
class FixedFraction:
    """The same fraction of equity for every entry: simple, and it compounds."""

    fraction: float

    def __call__(self, ctx: SizingContext) -> float:
        return self.fraction


@dataclass(frozen=True)
class SignalColumnSize:
    """The signal's own size column (a missing or NaN value sizes to 0: skipped)."""

    column: str = "size"

    def __call__(self, ctx: SizingContext) -> float:
        value = ctx.row.get(self.column)
        if value is None:
            return 0.0
        f = float(value)
        return 0.0 if math.isnan(f) else f


@dataclass(frozen=True)
class KellySizer:
    """Fractional Kelly from the Smart Scanner (:func:`turbomode.smart.sizing.position_size`):
    the signal's ``strength`` (0–100), ``tier`` and ``regime`` columns (Average and CHOPPY when
    absent) with the given win rate and payoff."""

    win_rate: float
    payoff: float
    settings: SmartSettings | None = None

    def __call__(self, ctx: SizingContext) -> float:
        from turbomode.smart.sizing import position_size

        row = ctx.row
        strength = float(row.get("strength", 50.0))
        tier = str(row.get("tier") or "Average")
        regime = str(row.get("regime") or "CHOPPY")
        sized = position_size(self.win_rate, self.payoff, strength, regime, tier, self.settings)
        return sized.size
