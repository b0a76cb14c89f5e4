"""Position management over daily bars: pure, deterministic, no database.

Every function takes a :class:`Position` and returns a new one plus the
:class:`PositionEvent` records of what changed; the input is never mutated and ``version`` is
left to the store. Replaying a symbol's events with :func:`replay` rebuilds the position.

Entry (:func:`open_position`)
    A signal made from the close of bar t acts on bar t+1: the entry is that bar's open. If the
    open lies outside the signal's ``entry_low..entry_high`` the entry is skipped: the flat
    position comes back with no event, and :func:`entry_skip_reason` says why. Stop and target
    are recomputed around the actual fill with the signal's own ``stop_distance`` (1R), so the
    risk the scan published is the risk taken. The entry bar itself is then managed with
    :func:`manage_day` like any other bar (its high, low and close happen after the fill).

One bar (:func:`manage_day`), in this order; ``s`` is +1 for a long and −1 for a short, E the
entry, R the initial stop distance, and "through" means at or beyond in the adverse (stop) or
favourable (levels) direction:

a. **Gap**: the open is through the stop → the rest is closed at the open (event ``stop``).
b. **Stop**: the bar's adverse extreme (low for a long, high for a short) reaches the stop →
   the rest is closed at the stop. Conservative rule: a bar that touches both the stop and a
   profit level is assumed to have hit the stop first; no level fires.
c. **Levels**, by price, nearest first; a bar that reaches several fires them all in order.
   The ladder is 1R → ``partial_1r`` (``partial_1r_fraction`` of the *initial* size off, stop to
   breakeven E), 2R → ``partial_2r`` (``partial_2r_fraction`` off, stop to E + s·R), then
   whichever of the target (E + s·``reward_risk``·R, event ``target``) and 3R (``partial_3r``)
   comes first closes the rest. A partial at or beyond the target's price never fires: the
   target is the order for the rest (with the default ``reward_risk`` 2.5 the ladder is 1R,
   2R, target; 3R fires only when ``reward_risk`` > 3). A level fills at its price, or at the
   open when the bar opened already through it. A stop moved by a level in this bar is hit
   when the close is through it (the close comes after the high, so this is certain) and the
   rest is closed at that stop; otherwise moved stops act from the next bar.
d. **Trail** (after the bar, once 1R has been reached): candidate = close − s·R; the stop moves
   to it only when that is tighter (s·(candidate − stop) > 0), so it never loosens. Applied
   every bar this equals (best close since entry − 1R) for a long and (lowest close + 1R) for
   a short: closes before 1R was reached lie below E + R, so their candidates are below the
   breakeven stop anyway.
e. **Expiry**: once ``hold_days[horizon]`` bars have been held (the entry bar counts as bar 1,
   matching the labels' ``close[t+h] / open[t+1]``), the rest is closed at the close (event
   ``expire``); a bar that expires the position does not trail it first.

Every exit adds ``closed size × R-multiple`` to ``realized_r`` (R-multiple = s·(price − E)/R).
A closed position keeps its last trade's fields for the record; ``state`` "flat" and ``size``
0 say it is closed.

Signal exit: the scan records each night's call with :func:`record_signal` (or
:func:`record_signal_event` to persist it) *before* asking :func:`should_exit_on_signal`; a long
exits only when P(SELL) ≥ ``exit_probability`` and the last ``persistence`` recorded calls are
all SELL (mirror for shorts), so one noisy night cannot flip the book.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from typing import Any, Literal

import numpy as np

from turbomode.config import RiskSettings, SignalSettings
from turbomode.records.positions import EventKind, Position, PositionEvent
from turbomode.records.signals import Signal
from turbomode.risk.levels import RiskInputError, check_price, levels_at

SIGNAL_CALLS = ("BUY", "SELL", "HOLD")
CLOSING_KINDS: frozenset[str] = frozenset({"stop", "target", "partial_3r", "signal_exit", "expire"})
PARTIAL_KINDS: dict[str, int] = {"partial_1r": 1, "partial_2r": 2, "partial_3r": 3}


def _sign(position: Position) -> float:
    if position.state == "long":
        return 1.0
    if position.state == "short":
        return -1.0
    raise RiskInputError(f"{position.symbol}: position is flat")


def _require_open(position: Position) -> tuple[float, float, float, float]:
    """(sign, entry, R, stop) of an open position; a half-filled record is an error."""
    s = _sign(position)
    if (
        position.entry_price is None
        or position.initial_stop_distance is None
        or position.stop is None
        or position.target is None
        or position.horizon is None
    ):
        raise RiskInputError(f"{position.symbol}: open position lacks entry, stop, target or R")
    return s, position.entry_price, position.initial_stop_distance, position.stop


def r_multiple(position: Position, price: float) -> float:
    """How many R an exit at ``price`` made (negative for a loss)."""
    s, entry, r, _ = _require_open(position)
    return s * (price - entry) / r


def _event(
    position: Position,
    bar_date: date,
    kind: EventKind,
    price: float | None,
    size_change: float,
    detail: str,
) -> PositionEvent:
    return PositionEvent(
        symbol=position.symbol,
        date=bar_date,
        kind=kind,
        price=price,
        size_change=size_change,
        size_after=position.size,
        stop_after=position.stop,
        detail=detail,
    )


def _exit(position: Position, price: float, fraction: float, closes: bool) -> Position:
    """Take ``fraction`` of the initial size off at ``price`` (all of the rest if ``closes``),
    crediting size × R-multiple. Replay uses this same function, so sums match bit for bit."""
    closed = position.size if closes else min(fraction, position.size)
    realized = position.realized_r + closed * r_multiple(position, price)
    size = position.size - closed
    if closes or size <= 0.0:
        return replace(position, size=0.0, state="flat", realized_r=realized)
    return replace(position, size=size, realized_r=realized)


def _close(
    position: Position, bar_date: date, kind: EventKind, price: float, detail: str
) -> tuple[Position, PositionEvent]:
    before = position.size
    after = _exit(position, price, before, closes=True)
    return after, _event(after, bar_date, kind, price, -before, detail)


# --- entry ---------------------------------------------------------------------------------


def entry_skip_reason(signal: Signal, bar_date: date, open_price: float) -> str | None:
    """Why a signal cannot be entered at this bar's open, or None when it can."""
    if bar_date <= signal.signal_date:
        return (
            f"{signal.symbol}: bar {bar_date} is not after the signal date {signal.signal_date}; "
            "a signal made from a close acts on the next bar"
        )
    if not signal.entry_low <= open_price <= signal.entry_high:
        return (
            f"{signal.symbol}: open {open_price:g} outside the entry range "
            f"{signal.entry_low:g}..{signal.entry_high:g}; entry skipped"
        )
    return None


def open_position(
    signal: Signal, bar_date: date, open_price: float, settings: RiskSettings
) -> tuple[Position, list[PositionEvent]]:
    """Enter at the open of the bar after the signal: long for BUY, short for SELL, size 1.0.

    Returns the flat position and no event when :func:`entry_skip_reason` gives a reason (an
    open outside the entry range means the move already happened or failed; chasing it would
    change the trade's risk). Stop and target sit around the actual fill at the signal's
    ``stop_distance`` (1R).
    """
    price = check_price(open_price, "open price")
    if entry_skip_reason(signal, bar_date, price) is not None:
        return Position(symbol=signal.symbol), []
    lv = levels_at(signal.side, price, signal.stop_distance, settings.reward_risk)
    position = Position(
        symbol=signal.symbol,
        state="long" if signal.side == "BUY" else "short",
        sector=signal.sector,
        horizon=signal.horizon,
        entry_date=bar_date,
        entry_price=price,
        stop=lv.stop,
        target=lv.target,
        initial_stop_distance=lv.stop_distance,
        size=1.0,
        confidence=signal.confidence,
        atr_at_entry=signal.atr,
    )
    detail = json.dumps(
        {
            "side": signal.side,
            "sector": signal.sector,
            "horizon": signal.horizon,
            "target": lv.target,
            "initial_stop_distance": lv.stop_distance,
            "confidence": signal.confidence,
            "atr_at_entry": signal.atr,
            "signal_date": signal.signal_date.isoformat(),
        }
    )
    return position, [_event(position, bar_date, "open", price, 1.0, detail)]


# --- one daily bar -------------------------------------------------------------------------


def _check_bar(position: Position, bar_date: date, o: float, h: float, lo: float, c: float) -> None:
    for name, value in (("open", o), ("high", h), ("low", lo), ("close", c)):
        check_price(value, f"{position.symbol} {bar_date} {name}")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise RiskInputError(
            f"{position.symbol} {bar_date}: inconsistent bar open={o} high={h} low={lo} close={c}"
        )
    if position.entry_date is not None and bar_date < position.entry_date:
        raise RiskInputError(
            f"{position.symbol}: bar {bar_date} is before the entry date {position.entry_date}"
        )


def bars_held_on(entry_date: date, bar_date: date) -> int:
    """Bars held at ``bar_date`` counting the entry bar as 1, on the weekday calendar (exchange
    holidays count as bars; pass ``bars_held`` to :func:`manage_day` from a trading calendar
    to be exact)."""
    return int(np.busday_count(entry_date, bar_date)) + 1


def _hold_days(position: Position, settings: RiskSettings) -> int:
    days = settings.hold_days.get(position.horizon) if position.horizon is not None else None
    if days is None:
        raise RiskInputError(
            f"{position.symbol}: no hold_days for horizon {position.horizon!r}; "
            f"known: {sorted(settings.hold_days)}"
        )
    return int(days)


def _ladder(position: Position, settings: RiskSettings) -> list[tuple[float, EventKind, int]]:
    """The profit levels still to fire, nearest first: (R level, event kind, partial number)."""
    rr = float(settings.reward_risk)
    partials: tuple[tuple[int, EventKind], ...] = (
        (1, "partial_1r"),
        (2, "partial_2r"),
        (3, "partial_3r"),
    )
    ladder = [(float(k), kind, k) for k, kind in partials if position.partials_taken < k < rr]
    ladder.append((rr, "target", 0))
    return ladder


def manage_day(
    position: Position,
    bar_date: date,
    open: float,
    high: float,
    low: float,
    close: float,
    settings: RiskSettings,
    *,
    bars_held: int | None = None,
) -> tuple[Position, list[PositionEvent]]:
    """Apply one daily bar: gap, stop, levels, trail, expiry, in the order the module
    docstring documents. A flat position passes through unchanged.

    ``bars_held`` counts this bar (the entry bar is 1); by default it is the weekday count from
    ``entry_date`` (:func:`bars_held_on`).
    """
    if position.state == "flat":
        return position, []
    s, entry, r, stop = _require_open(position)
    _check_bar(position, bar_date, open, high, low, close)
    events: list[PositionEvent] = []
    pos = replace(position, recent_signals=list(position.recent_signals))

    # (a) gap through the stop at the open
    if s * (open - stop) <= 0.0:
        pos, ev = _close(pos, bar_date, "stop", open, f"gap through the stop {stop:g} at the open")
        return pos, [ev]
    # (b) the stop inside the bar; taken before any profit level (conservative)
    adverse = low if s > 0 else high
    if s * (adverse - stop) <= 0.0:
        pos, ev = _close(pos, bar_date, "stop", stop, f"stop {stop:g} hit")
        return pos, [ev]

    # (c) profit levels by price, nearest first
    favourable = high if s > 0 else low
    for k, kind, number in _ladder(pos, settings):
        level = entry + s * (r * k)
        if s * (favourable - level) < 0.0:
            break
        fill = open if s * (open - level) > 0.0 else level
        if kind == "target":
            pos, ev = _close(pos, bar_date, "target", fill, f"target {level:g} reached")
            return pos, [*events, ev]
        if kind == "partial_3r":
            pos = replace(pos, partials_taken=3)
            pos, ev = _close(pos, bar_date, kind, fill, f"+3R {level:g} reached: rest closed")
            return pos, [*events, ev]
        fraction = settings.partial_1r_fraction if number == 1 else settings.partial_2r_fraction
        new_stop = entry if number == 1 else entry + s * r
        before = pos.size
        pos = _exit(pos, fill, fraction, closes=False)
        if pos.state != "flat" and s * (new_stop - stop) > 0.0:
            stop = new_stop
            pos = replace(pos, stop=stop)
        pos = replace(pos, partials_taken=number)
        what = "breakeven" if number == 1 else "+1R"
        events.append(
            _event(
                pos,
                bar_date,
                kind,
                fill,
                pos.size - before,
                f"+{number}R {level:g} reached: {before - pos.size:g} of the initial size "
                f"taken, stop to {what} {stop:g}",
            )
        )
        if pos.state == "flat":
            return pos, events
    if pos.partials_taken and s * (close - stop) <= 0.0:
        pos, ev = _close(pos, bar_date, "stop", stop, f"moved stop {stop:g} hit by the close")
        return pos, [*events, ev]

    start = pos.entry_date if pos.entry_date is not None else bar_date
    held = bars_held if bars_held is not None else bars_held_on(start, bar_date)
    expires = held >= _hold_days(pos, settings)
    # (d) trailing stop after the bar, once 1R has been reached; never loosens
    if pos.partials_taken and not expires:
        candidate = close - s * r
        if s * (candidate - stop) > 0.0:
            pos = replace(pos, stop=candidate)
            detail = f"stop trails to close − 1R: {candidate:g}"
            events.append(_event(pos, bar_date, "trail", close, 0.0, detail))
    # (e) expiry at the close
    if expires:
        pos, ev = _close(pos, bar_date, "expire", close, f"held {held} bar(s): closed at the close")
        events.append(ev)
    return pos, events


# --- signal exit ---------------------------------------------------------------------------


def _check_probability(p: float, name: str) -> float:
    v = float(p)
    if not (np.isfinite(v) and 0.0 <= v <= 1.0):
        raise RiskInputError(f"{name} must be a probability in [0, 1], got {p!r}")
    return v


def record_signal(
    position: Position, side_or_hold: str, p_buy: float, p_sell: float, settings: SignalSettings
) -> Position:
    """Append tonight's call (BUY, SELL or HOLD) to ``recent_signals`` (the last
    ``settings.persistence`` kept) and update ``persistence``: how many consecutive calls,
    ending with this one, are the same. The probabilities are checked, not stored (the exit
    test takes tonight's)."""
    if side_or_hold not in SIGNAL_CALLS:
        raise RiskInputError(f"unknown call {side_or_hold!r}; expected one of {SIGNAL_CALLS}")
    _check_probability(p_buy, "p_buy")
    _check_probability(p_sell, "p_sell")
    previous = position.recent_signals[-1] if position.recent_signals else None
    streak = position.persistence + 1 if previous == side_or_hold else 1
    recent = [*position.recent_signals, side_or_hold][-settings.persistence :]
    return replace(position, recent_signals=recent, persistence=streak)


def record_signal_event(
    position: Position,
    bar_date: date,
    side_or_hold: str,
    p_buy: float,
    p_sell: float,
    settings: SignalSettings,
) -> tuple[Position, list[PositionEvent]]:
    """:func:`record_signal` plus the ``signal`` event that lets :func:`replay` rebuild it."""
    pos = record_signal(position, side_or_hold, p_buy, p_sell, settings)
    detail = json.dumps({"call": side_or_hold, "p_buy": float(p_buy), "p_sell": float(p_sell)})
    return pos, [_event(pos, bar_date, "signal", None, 0.0, detail)]


def should_exit_on_signal(
    position: Position, p_buy: float, p_sell: float, settings: SignalSettings
) -> bool:
    """Hysteresis and persistence: a long exits only when P(SELL) ≥ ``exit_probability`` and
    the last ``persistence`` recorded calls are all SELL; a short mirrors with P(BUY) and BUY.
    Record tonight's call first. A flat position never exits."""
    if position.state == "flat":
        return False
    against, p = ("SELL", p_sell) if position.state == "long" else ("BUY", p_buy)
    if _check_probability(p, f"P({against})") < settings.exit_probability:
        return False
    last = position.recent_signals[-settings.persistence :]
    return len(last) == settings.persistence and all(x == against for x in last)


def signal_exit(
    position: Position, bar_date: date, price: float
) -> tuple[Position, list[PositionEvent]]:
    """Close the rest at ``price`` (the next bar's open) after :func:`should_exit_on_signal`;
    a flat position passes through unchanged."""
    if position.state == "flat":
        return position, []
    _require_open(position)
    fill = check_price(price, "exit price")
    pos, ev = _close(position, bar_date, "signal_exit", fill, "opposite signal persisted")
    return pos, [ev]


# --- replay --------------------------------------------------------------------------------


def replay(
    symbol: str,
    events: Iterable[PositionEvent],
    signal_settings: SignalSettings | None = None,
) -> Position:
    """Rebuild a symbol's position from its events, in order: ``open`` starts a new trade from
    its JSON detail, partial and closing events take size off at their price with the same
    arithmetic as :func:`manage_day`, ``trail`` moves the stop and ``signal`` re-records the
    call (``signal_settings`` gives the persistence window)."""
    sig_settings = signal_settings or SignalSettings()
    pos = Position(symbol=symbol)
    for ev in events:
        if ev.symbol != symbol:
            raise RiskInputError(f"event for {ev.symbol!r} in the history of {symbol!r}")
        if ev.kind == "open":
            info: dict[str, Any] = json.loads(ev.detail)
            state: Literal["long", "short"] = "long" if info["side"] == "BUY" else "short"
            pos = Position(
                symbol=symbol,
                state=state,
                sector=info["sector"],
                horizon=info["horizon"],
                entry_date=ev.date,
                entry_price=ev.price,
                stop=ev.stop_after,
                target=info["target"],
                initial_stop_distance=info["initial_stop_distance"],
                size=ev.size_after,
                confidence=info["confidence"],
                atr_at_entry=info["atr_at_entry"],
            )
        elif ev.kind == "signal":
            info = json.loads(ev.detail)
            pos = record_signal(pos, info["call"], info["p_buy"], info["p_sell"], sig_settings)
        elif ev.kind == "trail":
            pos = replace(pos, stop=ev.stop_after)
        else:
            if ev.price is None:
                raise RiskInputError(f"{symbol} {ev.date}: {ev.kind} event without a price")
            closes = ev.kind in CLOSING_KINDS
            pos = _exit(pos, ev.price, -ev.size_change, closes=closes)
            if ev.kind in PARTIAL_KINDS:
                pos = replace(pos, partials_taken=PARTIAL_KINDS[ev.kind])
            pos = replace(pos, stop=ev.stop_after)
            if not closes and pos.size != ev.size_after:
                raise RiskInputError(
                    f"{symbol} {ev.date}: replayed size {pos.size} != recorded {ev.size_after}"
                )
    return pos
