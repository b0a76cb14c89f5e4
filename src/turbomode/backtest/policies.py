"""Exit rule sets behind one small protocol, so the engine drives either without knowing which.

An :class:`ExitPolicy` opens a position at the fill bar's open and manages it one bar at a
time, reporting exits as :class:`ExitEvent` records: the *market* price of the exit and the
share of the initial position sold. The engine turns those into fills (slippage against the
trade, commission, whole shares); the policies never see costs, so the rule arithmetic stays
that of the modules they wrap:

* :class:`AtrExitPolicy` — the TurboMode rules of :mod:`turbomode.risk.positions`
  (:func:`~turbomode.risk.positions.open_position`, :func:`~turbomode.risk.positions.manage_day`):
  stop 1R away, partials at 1R and 2R, target at ``reward_risk`` R, trailing stop, expiry.
* :class:`SmartExitPolicy` — the Smart Scanner tiers of :mod:`turbomode.smart.exits`
  (:func:`~turbomode.smart.exits.open_smart_position`,
  :func:`~turbomode.smart.exits.manage_smart_day`): targets and stop at the close, max hold.

Both are given the bar count from the trading calendar (the entry bar is 1), not a weekday
count, so exchange holidays do not shorten a hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Protocol

from turbomode.config import BacktestSettings, RiskSettings
from turbomode.records.positions import Position
from turbomode.records.signals import Signal
from turbomode.risk import positions as atr_rules
from turbomode.risk.levels import RiskInputError, stop_distance

if TYPE_CHECKING:
    from turbomode.config import SmartSettings


@dataclass(frozen=True)
class Bar:
    """One daily bar of one symbol."""

    date: date
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class EntryOrder:
    """A signal the engine is about to fill at the next bar's open.

    ``row`` is the whole signal row (extra columns such as ``stop_distance``, ``atr``,
    ``horizon``, ``tier``, ``confidence`` ride along for the policy); ``size`` is the fraction of
    equity the sizer gave it.
    """

    symbol: str
    side: str
    signal_date: date
    sector: str
    strength: float
    size: float
    row: Mapping[str, Any]


@dataclass(frozen=True)
class ExitEvent:
    """An exit the rules took: ``fraction`` of the *initial* position at market ``price``;
    ``closes`` when it leaves the position flat (the engine then sells every share left)."""

    date: date
    kind: str
    price: float
    fraction: float
    closes: bool


class ExitPolicy(Protocol):
    """What the engine needs of a rule set. ``open`` returns the policy's position state, or
    None and the reason the entry is skipped; ``on_bar`` returns the new state and the exits
    the bar caused (``bars_held`` counts this bar, the entry bar being 1)."""

    name: str
    long_only: bool

    def open(self, order: EntryOrder, bar: Bar) -> tuple[Any | None, str | None]: ...

    def on_bar(self, state: Any, bar: Bar, bars_held: int) -> tuple[Any, list[ExitEvent]]: ...


def _events(raw: Sequence[Any]) -> list[ExitEvent]:
    """Position events with a size change → exit events; trailing-stop moves and zero-size
    partials (a partial fraction of 0) carry no fill and are dropped."""
    out = []
    for ev in raw:
        if ev.size_change >= 0.0 or ev.price is None:
            continue
        out.append(
            ExitEvent(
                date=ev.date,
                kind=str(ev.kind),
                price=float(ev.price),
                fraction=-float(ev.size_change),
                closes=ev.size_after <= 0.0,
            )
        )
    return out


def _opt_float(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


class AtrExitPolicy:
    """The TurboMode ATR rules, by wrapping :mod:`turbomode.risk.positions` (never
    reimplemented: the backtest trades exactly what the nightly position manager does).

    1R comes from the signal's ``stop_distance`` column when present, otherwise from
    :func:`turbomode.risk.levels.stop_distance` over its ``atr``, ``sector``, ``confidence``
    and ``horizon``. ``entry_low``/``entry_high`` columns, when given, skip an entry whose open
    lies outside them (as the live manager does); without them any open is accepted.
    """

    name = "atr"
    long_only = False

    def __init__(
        self, settings: RiskSettings | None = None, default_horizon: int | None = None
    ) -> None:
        self.settings = settings or RiskSettings()
        if default_horizon is None:  # the settings' default, as a backtest passes it
            default_horizon = BacktestSettings().default_horizon
        self.default_horizon = default_horizon

    def _signal(self, order: EntryOrder, bar: Bar) -> Signal:
        row = order.row
        horizon_value = _opt_float(row, "horizon")
        horizon = int(horizon_value) if horizon_value is not None else self.default_horizon
        confidence = _opt_float(row, "confidence")
        conf = 0.5 if confidence is None else confidence
        distance = _opt_float(row, "stop_distance")
        atr = _opt_float(row, "atr")
        if distance is None:
            if atr is None:
                raise RiskInputError(
                    f"{order.symbol} {order.signal_date}: the ATR rules need a 'stop_distance' "
                    "or an 'atr' column"
                )
            distance = stop_distance(atr, order.sector, conf, horizon, self.settings)
        close = _opt_float(row, "close") or bar.open
        low = _opt_float(row, "entry_low")
        high = _opt_float(row, "entry_high")
        sign = 1.0 if order.side == "BUY" else -1.0
        return Signal(
            symbol=order.symbol,
            sector=order.sector,
            cap_class=str(row.get("cap_class") or "unknown"),
            horizon=horizon,
            side="BUY" if order.side == "BUY" else "SELL",
            signal_date=order.signal_date,
            p_buy=conf if sign > 0 else 0.0,
            p_hold=1.0 - conf,
            p_sell=conf if sign < 0 else 0.0,
            confidence=conf,
            close=close,
            atr=atr if atr is not None else distance,
            entry_low=0.0 if low is None else low,
            entry_high=math.inf if high is None else high,
            stop=close - sign * distance,
            target=close + sign * distance * self.settings.reward_risk,
            stop_distance=distance,
            model_version=str(row.get("model_version") or "backtest"),
        )

    def open(self, order: EntryOrder, bar: Bar) -> tuple[Position | None, str | None]:
        if _opt_float(order.row, "stop_distance") is None:
            atr = _opt_float(order.row, "atr")
            if atr is not None and not atr > 0:  # flat bars: refuse this entry, not the run
                return None, f"ATR {atr:g} gives no stop distance"
        signal = self._signal(order, bar)
        position, _ = atr_rules.open_position(signal, bar.date, bar.open, self.settings)
        if position.state == "flat":
            reason = atr_rules.entry_skip_reason(signal, bar.date, bar.open)
            return None, reason or "entry refused by the ATR rules"
        return position, None

    def on_bar(self, state: Position, bar: Bar, bars_held: int) -> tuple[Position, list[ExitEvent]]:
        new, raw = atr_rules.manage_day(
            state,
            bar.date,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            self.settings,
            bars_held=bars_held,
        )
        return new, _events(raw)


class SmartExitPolicy:
    """The Smart Scanner tiered exits, by wrapping :mod:`turbomode.smart.exits`.

    The signal's ``tier`` column picks the plan (Elite/Strong/Average/Weak; Avoid is never
    entered). Long-only: a SELL signal is skipped with a reason. The Smart modules are
    imported on first use, so the ATR path does not depend on them.
    """

    name = "smart"
    long_only = True

    def __init__(self, settings: SmartSettings | None = None) -> None:
        from turbomode.config import SmartSettings

        self.settings = settings or SmartSettings()

    def open(self, order: EntryOrder, bar: Bar) -> tuple[Any | None, str | None]:
        from turbomode.smart.exits import exit_plan, open_smart_position
        from turbomode.smart.types import SignalV2, SmartInputError, to_tier

        if order.side != "BUY":
            return None, "the Smart Scanner rules are long-only"
        row = order.row
        try:
            tier = to_tier(row.get("tier") or "Average")
            plan = exit_plan(tier, bar.open, self.settings)
        except SmartInputError as exc:
            return None, str(exc)
        strength = float(order.strength)
        signal = SignalV2(
            symbol=order.symbol,
            sector=order.sector,
            signal_date=order.signal_date,
            price=_opt_float(row, "close") or bar.open,
            strength_raw=strength,
            strength_adjusted=strength,
            tier=tier,
            regime=str(row.get("regime") or "CHOPPY"),
            size=order.size,
            shares=0,
            risk=0.0,
            heat=order.size * plan.stop_distance,
            target_1=plan.target_1,
            target_2=plan.target_2,
            stop=plan.stop,
            max_hold_days=plan.max_hold_days,
        )
        position, _ = open_smart_position(signal, bar.date, bar.open, self.settings)
        if position.state == "flat":
            return None, "entry refused by the Smart Scanner rules"
        return position, None

    def on_bar(self, state: Any, bar: Bar, bars_held: int) -> tuple[Any, list[ExitEvent]]:
        from turbomode.smart.exits import manage_smart_day

        new, raw = manage_smart_day(
            state, bar.date, bar.open, bar.high, bar.low, bar.close, bars_held=bars_held
        )
        return new, _events(raw)


def make_policy(
    rules: str,
    risk: RiskSettings | None = None,
    smart: SmartSettings | None = None,
    default_horizon: int | None = None,
) -> ExitPolicy:
    """The policy for a rule-set name ('atr' or 'smart'), with its own settings."""
    if rules == "atr":
        return AtrExitPolicy(risk, default_horizon=default_horizon)
    if rules == "smart":
        return SmartExitPolicy(smart)
    raise ValueError(f"unknown rule set {rules!r}; expected 'atr' or 'smart'")
