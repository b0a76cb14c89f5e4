"""Tiered exits for Smart Scanner positions, evaluated once a day at the close.

The plan (:func:`exit_plan`) is fixed at entry from the symbol's tier: a first target (50 % of
the position sold), a second target (the rest), a stop below the entry and a maximum hold —
Elite +2.0 %/+3.5 %, stop −3 %, 5 days; Strong +2.0/+3.0, −3 %, 4; Average +2.0/+2.5, −2.5 %,
3; Weak +1.5/+2.0, −2 %, 2. Avoid is never entered, so it has no plan. A later re-ranking does
not change an open position's plan.

Entry (:func:`open_smart_position`): a signal from the close of day t acts on bar t+1 at its
open; the plan's percentages are applied to the actual fill, so the risk taken is the risk the
scanner published. The entry bar is then managed like any other (its close follows the fill).

One bar (:func:`manage_smart_day`), all at the **close** and filled at the close, in order:

a. **Stop**: close ≤ stop → the rest is sold (``stop``). Intraday lows do not trigger it, so a
   close-based stop can fill below the stop price; that is the documented cost of not being
   shaken out by intraday noise.
b. **First target**: not yet taken and close ≥ target 1 → ``first_target_fraction`` of the
   initial position is sold (``target_1``).
c. **Second target**: first target taken and close ≥ target 2 → the rest is sold
   (``target_2``); a close through both sells both in this bar.
d. **Trail** (only with ``trailing_stop_pct`` set, after the first target): the stop moves up
   to best close since entry × (1 − pct) when that is higher; it never loosens and acts from
   the next bar. Without trailing the stop stays where it was.
e. **Max hold**: once ``max_hold_days`` bars have been held (the entry bar is bar 1) the rest
   is sold (``expire``); an expiring bar does not trail first.

``realized_return`` adds, per exit, the share of the initial position sold × (fill / entry − 1).
:func:`manage_smart_day` mirrors :func:`turbomode.risk.positions.manage_day` (position, date,
open, high, low, close, keyword ``bars_held``) so a backtester can drive either rule set
through :class:`DailyBarManager` and :func:`run_bars`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Literal, Protocol

from turbomode.config import SmartSettings, Tier
from turbomode.smart.types import Holding, SignalV2, SmartInputError, to_tier

SmartState = Literal["flat", "long"]
SmartEventKind = Literal[
    "open",  # entered at the open after the signal; size 1.0
    "stop",  # the close was at or below the stop: the rest sold
    "target_1",  # the close reached the first target: first_target_fraction sold
    "target_2",  # the close reached the second target: the rest sold
    "trail",  # the trailing stop moved up
    "expire",  # held max_hold_days bars: the rest sold at the close
]
CLOSING_KINDS: frozenset[str] = frozenset({"stop", "target_2", "expire"})


@dataclass(frozen=True)
class ExitPlan:
    """Prices of one position's exits; ``stop_distance`` is (entry − stop) / entry."""

    tier: Tier
    entry: float
    stop: float
    target_1: float
    target_2: float
    stop_distance: float
    first_fraction: float
    max_hold_days: int
    trailing_pct: float | None


def exit_plan(
    tier: Tier | str, entry_price: float, settings: SmartSettings | None = None
) -> ExitPlan:
    """The tier's targets, stop and max hold around ``entry_price``; Avoid raises."""
    s = settings or SmartSettings()
    t = to_tier(tier)
    if t not in s.stops:
        raise SmartInputError(f"tier {t.value} is never traded: it has no exit plan")
    entry = float(entry_price)
    if not (math.isfinite(entry) and entry > 0.0):
        raise SmartInputError(f"entry price must be > 0, got {entry_price!r}")
    t1, t2 = s.targets[t]
    stop = s.stops[t]
    return ExitPlan(
        tier=t,
        entry=entry,
        stop=entry * (1.0 - stop),
        target_1=entry * (1.0 + t1),
        target_2=entry * (1.0 + t2),
        stop_distance=stop,
        first_fraction=s.first_target_fraction,
        max_hold_days=s.max_hold_days[t],
        trailing_pct=s.trailing_stop_pct,
    )


@dataclass(frozen=True)
class SmartPosition:
    """The state of one Smart Scanner position. ``size`` is the fraction of the initial
    position still held (1.0 at entry); ``equity_size`` the fraction of equity it was opened
    with. A closed position keeps its trade's fields for the record."""

    symbol: str
    sector: str = ""
    tier: Tier = Tier.AVERAGE
    state: SmartState = "flat"
    entry_date: date | None = None
    entry_price: float | None = None
    stop: float | None = None
    target_1: float | None = None
    target_2: float | None = None
    first_fraction: float = 0.5
    max_hold_days: int = 0
    trailing_pct: float | None = None
    size: float = 0.0
    equity_size: float = 0.0
    first_target_hit: bool = False
    best_close: float | None = None
    bars_held: int = 0
    last_date: date | None = None
    realized_return: float = 0.0

    def as_holding(self) -> Holding:
        """What the portfolio constraints need: remaining size of equity and stop distance."""
        entry, stop = self._levels()[:2]
        return Holding(
            ticker=self.symbol,
            sector=self.sector,
            size=self.equity_size * self.size,
            stop_distance=max((entry - stop) / entry, 0.0),
        )

    def _levels(self) -> tuple[float, float, float, float]:
        if self.state != "long":
            raise SmartInputError(f"{self.symbol}: position is flat")
        if (
            self.entry_price is None
            or self.stop is None
            or self.target_1 is None
            or self.target_2 is None
        ):
            raise SmartInputError(f"{self.symbol}: open position lacks entry, stop or targets")
        return self.entry_price, self.stop, self.target_1, self.target_2


@dataclass(frozen=True)
class SmartEvent:
    """One change to a position, with the same fields as :class:`turbomode.records.positions.
    PositionEvent` so one event log can hold both rule sets."""

    symbol: str
    date: date
    kind: SmartEventKind
    price: float | None
    size_change: float
    size_after: float
    stop_after: float | None
    detail: str = ""


def _event(
    pos: SmartPosition, day: date, kind: SmartEventKind, price: float, change: float, detail: str
) -> SmartEvent:
    return SmartEvent(pos.symbol, day, kind, price, change, pos.size, pos.stop, detail)


def open_smart_position(
    signal: SignalV2, bar_date: date, open_price: float, settings: SmartSettings | None = None
) -> tuple[SmartPosition, list[SmartEvent]]:
    """Enter a taken signal at the open of the bar after it, with the tier's plan around the
    fill. A skipped signal gives the flat position and no event."""
    if not signal.taken or signal.size <= 0.0:
        return SmartPosition(symbol=signal.symbol, sector=signal.sector, tier=signal.tier), []
    if bar_date <= signal.signal_date:
        raise SmartInputError(
            f"{signal.symbol}: a signal from {signal.signal_date} acts on a later bar, "
            f"not {bar_date}"
        )
    plan = exit_plan(signal.tier, open_price, settings)
    pos = SmartPosition(
        symbol=signal.symbol,
        sector=signal.sector,
        tier=plan.tier,
        state="long",
        entry_date=bar_date,
        entry_price=plan.entry,
        stop=plan.stop,
        target_1=plan.target_1,
        target_2=plan.target_2,
        first_fraction=plan.first_fraction,
        max_hold_days=plan.max_hold_days,
        trailing_pct=plan.trailing_pct,
        size=1.0,
        equity_size=signal.size,
    )
    detail = json.dumps(
        {
            "tier": plan.tier.value,
            "sector": signal.sector,
            "target_1": plan.target_1,
            "target_2": plan.target_2,
            "max_hold_days": plan.max_hold_days,
            "equity_size": signal.size,
            "signal_date": signal.signal_date.isoformat(),
        }
    )
    return pos, [_event(pos, bar_date, "open", plan.entry, 1.0, detail)]


def _check_bar(pos: SmartPosition, day: date, o: float, h: float, lo: float, c: float) -> None:
    for name, value in (("open", o), ("high", h), ("low", lo), ("close", c)):
        if not (math.isfinite(value) and value > 0.0):
            raise SmartInputError(f"{pos.symbol} {day}: {name} must be > 0, got {value!r}")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise SmartInputError(
            f"{pos.symbol} {day}: inconsistent bar open={o} high={h} low={lo} close={c}"
        )
    if pos.entry_date is not None and day < pos.entry_date:
        raise SmartInputError(f"{pos.symbol}: bar {day} is before the entry {pos.entry_date}")
    if pos.last_date is not None and day <= pos.last_date:
        raise SmartInputError(f"{pos.symbol}: bar {day} is not after the last bar {pos.last_date}")


def _sell(
    pos: SmartPosition, day: date, kind: SmartEventKind, price: float, fraction: float, why: str
) -> tuple[SmartPosition, SmartEvent]:
    entry = pos._levels()[0]
    sold = min(fraction, pos.size)
    left = pos.size - sold
    closes = kind in CLOSING_KINDS or left <= 1e-12
    if closes:
        sold, left = pos.size, 0.0
    new = replace(
        pos,
        size=left,
        state="flat" if closes else "long",
        realized_return=pos.realized_return + sold * (price / entry - 1.0),
    )
    return new, _event(new, day, kind, price, -sold, why)


def manage_smart_day(
    position: SmartPosition,
    bar_date: date,
    open: float,
    high: float,
    low: float,
    close: float,
    *,
    bars_held: int | None = None,
) -> tuple[SmartPosition, list[SmartEvent]]:
    """Apply one daily bar at its close: stop, first target, second target, trail, max hold,
    in the order the module docstring documents. A flat position passes through unchanged.

    ``bars_held`` counts this bar (the entry bar is 1); by default it is one more than the
    bars this position has seen, so pass every trading day's bar exactly once.
    """
    if position.state == "flat":
        return position, []
    _, stop, t1, t2 = position._levels()
    _check_bar(position, bar_date, open, high, low, close)
    held = bars_held if bars_held is not None else position.bars_held + 1
    best = close if position.best_close is None else max(position.best_close, close)
    pos = replace(position, bars_held=held, last_date=bar_date, best_close=best)
    events: list[SmartEvent] = []

    # (a) stop at the close
    if close <= stop:
        pos, ev = _sell(
            pos, bar_date, "stop", close, 1.0, f"close {close:g} at or below stop {stop:g}"
        )
        return pos, [ev]
    # (b) first target
    if not pos.first_target_hit and close >= t1:
        pos, ev = _sell(
            pos,
            bar_date,
            "target_1",
            close,
            pos.first_fraction,
            f"close {close:g} ≥ target 1 {t1:g}",
        )
        pos = replace(pos, first_target_hit=True)
        events.append(ev)
        if pos.state == "flat":
            return pos, events
    # (c) second target
    if pos.first_target_hit and close >= t2:
        pos, ev = _sell(pos, bar_date, "target_2", close, 1.0, f"close {close:g} ≥ target 2 {t2:g}")
        return pos, [*events, ev]
    expires = held >= pos.max_hold_days
    # (d) trailing stop after the first target; never loosens
    if pos.first_target_hit and pos.trailing_pct is not None and not expires:
        candidate = best * (1.0 - pos.trailing_pct)
        if candidate > stop:
            pos = replace(pos, stop=candidate)
            detail = f"stop trails best close {best:g} − {pos.trailing_pct:.2%}: {candidate:g}"
            events.append(_event(pos, bar_date, "trail", close, 0.0, detail))
    # (e) max hold at the close
    if expires:
        pos, ev = _sell(
            pos, bar_date, "expire", close, 1.0, f"held {held} bar(s): sold at the close"
        )
        events.append(ev)
    return pos, events


# --- one interface for both rule sets ------------------------------------------------------


class DailyBarManager(Protocol):
    """What a backtester or paper wallet calls once per bar: :func:`manage_smart_day`, or
    ``functools.partial(turbomode.risk.positions.manage_day, settings=RiskSettings())``."""

    def __call__(
        self,
        position: Any,
        bar_date: date,
        open: float,
        high: float,
        low: float,
        close: float,
        *,
        bars_held: int | None = None,
    ) -> tuple[Any, Sequence[Any]]: ...


Bar = tuple[date, float, float, float, float]


def run_bars(manager: DailyBarManager, position: Any, bars: Iterable[Bar]) -> tuple[Any, list[Any]]:
    """Feed (date, open, high, low, close) bars to ``manager`` until the position is flat;
    returns the final position and every event, in order."""
    events: list[Any] = []
    for bar_date, o, h, lo, c in bars:
        if position.state == "flat":
            break
        position, new = manager(position, bar_date, o, h, lo, c)
        events.extend(new)
    return position, events
