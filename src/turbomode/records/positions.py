"""Position state and position events: shared by position management and the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

PositionState = Literal["flat", "long", "short"]
EventKind = Literal[
    "open",  # entered at a price; size 1.0
    "stop",  # stop hit: the rest is closed
    "target",  # target hit: the rest is closed
    "partial_1r",  # +1R reached: 50 % taken, stop to breakeven
    "partial_2r",  # +2R reached: 25 % taken, stop trails to +1R
    "partial_3r",  # +3R reached: the rest is closed
    "trail",  # the trailing stop moved
    "signal_exit",  # the opposite signal passed hysteresis and persistence: closed
    "expire",  # held past its horizon's hold period: closed
    "signal",  # a scan's signal for this symbol was recorded (persistence bookkeeping)
]


@dataclass
class Position:
    """The book's state for one symbol. ``size`` is the fraction of the initial position still
    held (1.0 at entry); ``initial_stop_distance`` is 1R in price units; ``version`` increases
    with every saved change so concurrent writers can detect each other."""

    symbol: str
    state: PositionState = "flat"
    sector: str | None = None
    horizon: int | None = None
    entry_date: date | None = None
    entry_price: float | None = None
    stop: float | None = None
    target: float | None = None
    initial_stop_distance: float | None = None
    size: float = 0.0
    confidence: float | None = None
    atr_at_entry: float | None = None
    recent_signals: list[str] = field(default_factory=list)
    persistence: int = 0
    partials_taken: int = 0
    realized_r: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class PositionEvent:
    """One change to a position; replaying a symbol's events rebuilds its history."""

    symbol: str
    date: date
    kind: EventKind
    price: float | None
    size_change: float
    size_after: float
    stop_after: float | None
    detail: str = ""
