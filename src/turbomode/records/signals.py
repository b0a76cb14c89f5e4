"""The signal a scan produces: shared by the signal rules, the risk rules, the store, the
backtester and the wallet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

Side = Literal["BUY", "SELL"]
SIDES: tuple[Side, ...] = ("BUY", "SELL")


@dataclass(frozen=True)
class Signal:
    """One BUY or SELL call for a symbol, made from the close of ``signal_date``.

    ``confidence`` is the model's probability of ``side`` (P(BUY) or P(SELL)); decay with age
    is applied by the rules when signals compete for capacity, never stored here. Prices are
    on the adjusted basis of the features; the trade acts on the next bar.
    """

    symbol: str
    sector: str
    cap_class: str
    horizon: int
    side: Side
    signal_date: date
    p_buy: float
    p_hold: float
    p_sell: float
    confidence: float
    close: float
    atr: float
    entry_low: float
    entry_high: float
    stop: float
    target: float
    stop_distance: float
    model_version: str

    @property
    def key(self) -> tuple[str, int]:
        """A symbol holds at most one active signal per horizon."""
        return (self.symbol, self.horizon)
