"""Tiered exits at the close: each tier's plan, stops, targets, max hold and trailing."""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial

import pytest

from turbomode.config import RiskSettings, SmartSettings, Tier
from turbomode.records.signals import Signal
from turbomode.risk.positions import manage_day, open_position
from turbomode.smart.exits import (
    DailyBarManager,
    SmartPosition,
    exit_plan,
    manage_smart_day,
    open_smart_position,
    run_bars,
)
from turbomode.smart.types import SignalV2, SmartInputError

S = SmartSettings()
SIGNAL_DAY = date(2024, 1, 1)
DAYS = [SIGNAL_DAY + timedelta(days=i) for i in range(1, 12)]


def signal(tier: Tier = Tier.AVERAGE, skip: str | None = None) -> SignalV2:
    plan = exit_plan(tier, 100.0, S)
    return SignalV2(
        symbol="AAA",
        sector="Energy",
        signal_date=SIGNAL_DAY,
        price=100.0,
        strength_raw=70.0,
        strength_adjusted=70.0,
        tier=tier,
        regime="CHOPPY",
        size=0.0 if skip else 0.05,
        shares=0 if skip else 50,
        risk=0.0,
        heat=0.0,
        target_1=plan.target_1,
        target_2=plan.target_2,
        stop=plan.stop,
        max_hold_days=plan.max_hold_days,
        skip_reason=skip,
    )


def entered(tier: Tier, settings: SmartSettings = S) -> SmartPosition:
    pos, events = open_smart_position(signal(tier), DAYS[0], 100.0, settings)
    assert pos.state == "long"
    assert [e.kind for e in events] == ["open"]
    return pos


def flat_bar(day: date, close: float) -> tuple[date, float, float, float, float]:
    return (day, close, close, close, close)


def closes(pos: SmartPosition, values: list[float]) -> tuple[SmartPosition, list]:
    return run_bars(
        manage_smart_day, pos, [flat_bar(d, c) for d, c in zip(DAYS, values, strict=False)]
    )


# --- the plan per tier ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "t1", "t2", "stop", "hold"),
    [
        (Tier.ELITE, 102.0, 103.5, 97.0, 5),
        (Tier.STRONG, 102.0, 103.0, 97.0, 4),
        (Tier.AVERAGE, 102.0, 102.5, 97.5, 3),
        (Tier.WEAK, 101.5, 102.0, 98.0, 2),
    ],
)
def test_exit_plan_per_tier(tier: Tier, t1: float, t2: float, stop: float, hold: int) -> None:
    plan = exit_plan(tier, 100.0, S)
    assert plan.target_1 == pytest.approx(t1, abs=1e-12)
    assert plan.target_2 == pytest.approx(t2, abs=1e-12)
    assert plan.stop == pytest.approx(stop, abs=1e-12)
    assert plan.max_hold_days == hold
    assert plan.first_fraction == 0.5


def test_avoid_has_no_plan() -> None:
    with pytest.raises(SmartInputError, match="never traded"):
        exit_plan(Tier.AVOID, 100.0, S)


def test_plan_is_centred_on_the_fill() -> None:
    pos, _ = open_smart_position(signal(Tier.STRONG), DAYS[0], 50.0, S)
    assert (pos.entry_price, pos.stop, pos.target_1, pos.target_2) == pytest.approx(
        (50.0, 48.5, 51.0, 51.5), abs=1e-12
    )
    assert pos.equity_size == 0.05
    assert pos.as_holding().heat == pytest.approx(0.05 * 0.03, abs=1e-15)


def test_skipped_signal_is_not_entered_and_no_same_day_entry() -> None:
    pos, events = open_smart_position(signal(skip="already held"), DAYS[0], 100.0, S)
    assert pos.state == "flat"
    assert events == []
    with pytest.raises(SmartInputError, match="later bar"):
        open_smart_position(signal(), SIGNAL_DAY, 100.0, S)


# --- stops at the close --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "stop_close", "above"),
    [
        (Tier.ELITE, 96.9, 97.1),
        (Tier.STRONG, 96.9, 97.1),
        (Tier.AVERAGE, 97.4, 97.6),
        (Tier.WEAK, 97.9, 98.1),
    ],
)
def test_stop_is_checked_at_the_close(tier: Tier, stop_close: float, above: float) -> None:
    pos = entered(tier)
    # An intraday low far below the stop does not stop the position out: the close decides.
    pos, events = manage_smart_day(pos, DAYS[0], 100.0, 100.5, 90.0, above)
    assert pos.state == "long"
    assert events == []
    pos, events = manage_smart_day(pos, DAYS[1], above, above, stop_close, stop_close)
    assert [e.kind for e in events] == ["stop"]
    assert events[0].price == stop_close  # filled at the close, below the stop
    assert pos.state == "flat"
    assert pos.size == 0.0
    assert pos.realized_return == pytest.approx(stop_close / 100.0 - 1.0, abs=1e-12)


def test_stop_at_exactly_the_stop_price() -> None:
    pos, events = closes(entered(Tier.WEAK), [98.0])
    assert [e.kind for e in events] == ["stop"]
    assert pos.realized_return == pytest.approx(-0.02, abs=1e-12)


# --- targets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "first", "second"),
    [
        (Tier.ELITE, 102.2, 103.6),
        (Tier.STRONG, 102.5, 103.2),
        (Tier.AVERAGE, 102.1, 102.6),
        (Tier.WEAK, 101.6, 102.3),
    ],
)
def test_first_then_second_target(tier: Tier, first: float, second: float) -> None:
    pos, events = closes(entered(tier), [first, second])
    assert [(e.kind, e.price, e.size_change, e.size_after) for e in events] == [
        ("target_1", first, -0.5, 0.5),
        ("target_2", second, -0.5, 0.0),
    ]
    expected = 0.5 * (first / 100 - 1) + 0.5 * (second / 100 - 1)
    assert pos.realized_return == pytest.approx(expected, abs=1e-12)
    assert pos.state == "flat"


def test_a_close_through_both_targets_sells_both() -> None:
    pos, events = closes(entered(Tier.ELITE), [104.0])
    assert [e.kind for e in events] == ["target_1", "target_2"]
    assert pos.realized_return == pytest.approx(0.04, abs=1e-12)


def test_intraday_high_does_not_reach_a_target() -> None:
    pos, events = manage_smart_day(entered(Tier.AVERAGE), DAYS[0], 100.0, 105.0, 99.5, 101.0)
    assert events == []
    assert pos.size == 1.0


def test_without_trailing_the_stop_stays_after_the_first_target() -> None:
    pos, events = closes(entered(Tier.ELITE), [102.5, 98.0, 96.5])
    assert [e.kind for e in events] == ["target_1", "stop"]
    assert events[-1].price == 96.5
    assert pos.realized_return == pytest.approx(0.5 * 0.025 + 0.5 * (-0.035), abs=1e-12)


# --- max hold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "hold"), [(Tier.ELITE, 5), (Tier.STRONG, 4), (Tier.AVERAGE, 3), (Tier.WEAK, 2)]
)
def test_max_hold_days(tier: Tier, hold: int) -> None:
    pos, events = closes(entered(tier), [100.5] * 10)
    assert [e.kind for e in events] == ["expire"]
    assert events[0].date == DAYS[hold - 1]  # the entry bar is bar 1
    assert pos.bars_held == hold
    assert pos.realized_return == pytest.approx(0.005, abs=1e-12)


def test_expiry_after_the_first_target_sells_the_rest() -> None:
    pos, events = closes(entered(Tier.WEAK), [101.6, 101.8])
    assert [(e.kind, e.size_change) for e in events] == [("target_1", -0.5), ("expire", -0.5)]
    assert pos.realized_return == pytest.approx(0.5 * 0.016 + 0.5 * 0.018, abs=1e-12)


def test_bars_held_can_come_from_a_trading_calendar() -> None:
    pos, events = manage_smart_day(entered(Tier.STRONG), DAYS[0], 100, 100, 100, 100, bars_held=4)
    assert [e.kind for e in events] == ["expire"]
    assert pos.bars_held == 4


# --- trailing stop -------------------------------------------------------------------------


def test_trailing_stop_after_the_first_target() -> None:
    s = SmartSettings(trailing_stop_pct=0.01)
    pos = entered(Tier.ELITE, s)
    assert pos.trailing_pct == 0.01
    pos, events = closes(pos, [101.0, 102.5, 103.0, 101.9])
    # 101.0: below target 1, no trail yet; 102.5: half sold, stop → 102.5 × 0.99 = 101.475;
    # 103.0: stop → 101.97; 101.9 ≤ 101.97: the rest sold at the close.
    assert [(e.kind, e.price) for e in events] == [
        ("target_1", 102.5),
        ("trail", 102.5),
        ("trail", 103.0),
        ("stop", 101.9),
    ]
    assert events[1].stop_after == pytest.approx(101.475, abs=1e-12)
    assert events[2].stop_after == pytest.approx(101.97, abs=1e-12)
    assert pos.realized_return == pytest.approx(0.5 * 0.025 + 0.5 * 0.019, abs=1e-12)


def test_trailing_stop_never_loosens_and_uses_the_best_close() -> None:
    s = SmartSettings(trailing_stop_pct=0.02)
    pos, events = closes(entered(Tier.ELITE, s), [102.5, 102.0, 103.0])
    trails = [e.stop_after for e in events if e.kind == "trail"]
    assert trails == pytest.approx([100.45, 100.94], abs=1e-12)  # 102.5 × .98, 103 × .98
    assert pos.stop == pytest.approx(100.94, abs=1e-12)


def test_trailing_stop_before_the_first_target_does_nothing() -> None:
    s = SmartSettings(trailing_stop_pct=0.01)
    pos, events = closes(entered(Tier.ELITE, s), [101.9, 101.5])
    assert events == []
    assert pos.stop == pytest.approx(97.0, abs=1e-12)


def test_trailed_position_has_no_heat() -> None:
    s = SmartSettings(trailing_stop_pct=0.01)
    pos, _ = closes(entered(Tier.ELITE, s), [102.5])
    h = pos.as_holding()
    assert h.stop_distance == 0.0
    assert h.size == pytest.approx(0.025, abs=1e-15)


# --- bars ----------------------------------------------------------------------------------


def test_bad_bars_raise() -> None:
    pos = entered(Tier.AVERAGE)
    with pytest.raises(SmartInputError, match="inconsistent"):
        manage_smart_day(pos, DAYS[0], 100.0, 99.0, 98.0, 100.0)
    with pytest.raises(SmartInputError, match="before the entry"):
        manage_smart_day(pos, SIGNAL_DAY, 100.0, 100.0, 100.0, 100.0)
    pos, _ = manage_smart_day(pos, DAYS[0], 100.0, 100.0, 100.0, 100.0)
    with pytest.raises(SmartInputError, match="not after the last bar"):
        manage_smart_day(pos, DAYS[0], 100.0, 100.0, 100.0, 100.0)


def test_flat_position_passes_through() -> None:
    flat = SmartPosition(symbol="AAA")
    assert manage_smart_day(flat, DAYS[0], 1.0, 1.0, 1.0, 1.0) == (flat, [])


# --- one interface for both rule sets ------------------------------------------------------


def test_both_rule_sets_run_behind_one_interface() -> None:
    atr_signal = Signal(
        symbol="AAA",
        sector="Industrials",
        cap_class="large",
        horizon=5,
        side="BUY",
        signal_date=date(2024, 1, 1),
        p_buy=0.7,
        p_hold=0.2,
        p_sell=0.1,
        confidence=0.7,
        close=100.0,
        atr=2.0,
        entry_low=97.0,
        entry_high=103.0,
        stop=98.0,
        target=105.0,
        stop_distance=2.0,
        model_version="v1",
    )
    risk = RiskSettings()
    atr_pos, _ = open_position(atr_signal, date(2024, 1, 2), 100.0, risk)
    managers: list[tuple[DailyBarManager, object]] = [
        (partial(manage_day, settings=risk), atr_pos),
        (manage_smart_day, entered(Tier.AVERAGE)),
    ]
    bars = [
        (date(2024, 1, 2), 100.0, 100.5, 99.5, 100.0),
        (date(2024, 1, 3), 98.0, 98.0, 97.0, 97.2),
    ]
    kinds = []
    for manager, start in managers:
        final, events = run_bars(manager, start, bars)
        assert final.state == "flat"
        kinds.append([e.kind for e in events])
    # The ATR rules stop at 98 intraday; the Smart rules stop at the close of 97.2 (≤ 97.5).
    assert kinds == [["stop"], ["stop"]]


def test_run_bars_stops_feeding_a_closed_position() -> None:
    pos, events = closes(entered(Tier.WEAK), [97.0, 120.0, 130.0])
    assert [e.kind for e in events] == ["stop"]
    assert pos.realized_return == pytest.approx(-0.03, abs=1e-12)
