"""Position management: exact R arithmetic for each documented rule, hysteresis, replay."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turbomode.config import RiskSettings, SignalSettings
from turbomode.records.positions import Position, PositionEvent
from turbomode.records.signals import Side, Signal
from turbomode.risk.levels import RiskInputError, levels, stop_distance
from turbomode.risk.positions import (
    entry_skip_reason,
    manage_day,
    open_position,
    record_signal,
    record_signal_event,
    replay,
    should_exit_on_signal,
    signal_exit,
)

RISK = RiskSettings()
SIG = SignalSettings()
SIGNAL_DAY = date(2024, 1, 1)  # a Monday
D1, D2, D3, D4, D5 = (date(2024, 1, d) for d in (2, 3, 4, 5, 8))  # the next five trading days


def make_signal(side: Side = "BUY", horizon: int = 5, distance: float = 2.0) -> Signal:
    """A signal from a close of 100 with 1R = 2 (stop 98/102), entry range 97..103."""
    sign = 1.0 if side == "BUY" else -1.0
    return Signal(
        symbol="AAA",
        sector="Industrials",
        cap_class="large",
        horizon=horizon,
        side=side,
        signal_date=SIGNAL_DAY,
        p_buy=0.7 if side == "BUY" else 0.1,
        p_hold=0.2,
        p_sell=0.1 if side == "BUY" else 0.7,
        confidence=0.7,
        close=100.0,
        atr=2.0,
        entry_low=97.0,
        entry_high=103.0,
        stop=100.0 - sign * distance,
        target=100.0 + sign * distance * 2.5,
        stop_distance=distance,
        model_version="v1",
    )


def opened(
    side: Side = "BUY", horizon: int = 5, risk: RiskSettings = RISK
) -> tuple[Position, list[PositionEvent]]:
    pos, events = open_position(make_signal(side, horizon), D1, 100.0, risk)
    assert pos.state == ("long" if side == "BUY" else "short")
    return pos, events


def run_bars(
    pos: Position,
    bars: list[tuple[date, float, float, float, float]],
    risk: RiskSettings = RISK,
) -> tuple[Position, list[PositionEvent]]:
    events: list[PositionEvent] = []
    for day, o, h, lo, c in bars:
        pos, new = manage_day(pos, day, o, h, lo, c, risk)
        events += new
    return pos, events


# --- entry ---------------------------------------------------------------------------------


def test_open_long_at_the_next_open_with_levels_around_the_fill() -> None:
    pos, events = open_position(make_signal("BUY"), D1, 101.0, RISK)
    assert (pos.state, pos.size, pos.entry_price, pos.entry_date) == ("long", 1.0, 101.0, D1)
    assert (pos.stop, pos.target, pos.initial_stop_distance) == (99.0, 106.0, 2.0)
    assert [e.kind for e in events] == ["open"]
    assert (events[0].price, events[0].size_change, events[0].stop_after) == (101.0, 1.0, 99.0)


def test_open_short_for_sell() -> None:
    pos, _ = open_position(make_signal("SELL"), D1, 99.0, RISK)
    assert (pos.state, pos.stop, pos.target) == ("short", 101.0, 94.0)


def test_open_uses_the_same_distance_as_levels() -> None:
    d = stop_distance(2.0, "Energy", 0.8, 2, RISK)
    signal = replace(make_signal("BUY", horizon=2), sector="Energy", confidence=0.8)
    signal = replace(signal, stop_distance=d)
    pos, _ = open_position(signal, D1, 101.5, RISK)
    lv = levels("BUY", 101.5, 2.0, "Energy", 0.8, 2, RISK)
    assert (pos.stop, pos.target, pos.initial_stop_distance) == (lv.stop, lv.target, d)


@pytest.mark.parametrize(("day", "price", "words"), [(D1, 103.5, "outside"), (D1, 96.0, "outside")])
def test_open_outside_the_entry_range_is_skipped(day: date, price: float, words: str) -> None:
    signal = make_signal()
    pos, events = open_position(signal, day, price, RISK)
    assert pos == Position(symbol="AAA") and events == []
    assert words in (entry_skip_reason(signal, day, price) or "")


def test_open_on_the_signal_bar_is_skipped() -> None:
    signal = make_signal()
    assert open_position(signal, SIGNAL_DAY, 100.0, RISK) == (Position(symbol="AAA"), [])
    assert "next bar" in (entry_skip_reason(signal, SIGNAL_DAY, 100.0) or "")
    assert entry_skip_reason(signal, D1, 100.0) is None


# --- profit ladder -------------------------------------------------------------------------


def test_long_ladder_with_the_default_target_between_2r_and_3r() -> None:
    """reward_risk 2.5: 1R (half off, stop to breakeven), 2R (quarter off, stop to +1R),
    then the target at 2.5R closes the rest before 3R: 0.5·1 + 0.25·2 + 0.25·2.5."""
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 102.5, 99.0, 101.75, RISK)
    assert [e.kind for e in ev] == ["partial_1r"]
    assert (ev[0].price, ev[0].size_change, pos.size, pos.stop) == (102.0, -0.5, 0.5, 100.0)
    pos, ev = manage_day(pos, D2, 102.0, 104.25, 101.0, 103.75, RISK)
    assert [e.kind for e in ev] == ["partial_2r"]  # close − 1R = 101.75 is looser than +1R
    assert (ev[0].price, ev[0].size_after, ev[0].stop_after) == (104.0, 0.25, 102.0)
    pos, ev = manage_day(pos, D3, 104.0, 106.5, 103.5, 106.0, RISK)
    assert [e.kind for e in ev] == ["target"]
    assert (ev[0].price, ev[0].size_change, pos.size, pos.state) == (105.0, -0.25, 0.0, "flat")
    assert pos.realized_r == 0.5 * 1 + 0.25 * 2 + 0.25 * 2.5


def test_long_ladder_reaches_3r_when_the_target_is_beyond_it() -> None:
    risk = RiskSettings(reward_risk=3.5)  # target 107: 3R (106) comes first
    pos, _ = opened(risk=risk)
    pos, events = run_bars(
        pos,
        [
            (D1, 100.0, 102.5, 99.0, 101.75),
            (D2, 102.0, 104.25, 101.0, 103.75),
            (D3, 104.0, 106.5, 103.5, 106.0),
        ],
        risk,
    )
    kinds = [e.kind for e in events if e.kind != "trail"]
    assert kinds == ["partial_1r", "partial_2r", "partial_3r"]
    assert [e.price for e in events if e.kind != "trail"] == [102.0, 104.0, 106.0]
    assert (pos.size, pos.state, pos.partials_taken) == (0.0, "flat", 3)
    assert pos.realized_r == 0.5 * 1 + 0.25 * 2 + 0.25 * 3  # 1.75


def test_one_bar_through_several_levels_fires_them_in_order() -> None:
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 106.0, 99.5, 105.5, RISK)
    assert [(e.kind, e.price, e.size_after) for e in ev] == [
        ("partial_1r", 102.0, 0.5),
        ("partial_2r", 104.0, 0.25),
        ("target", 105.0, 0.0),
    ]
    assert pos.realized_r == 0.5 * 1 + 0.25 * 2 + 0.25 * 2.5


def test_short_ladder_mirrors_the_long() -> None:
    risk = RiskSettings(reward_risk=3.5)
    pos, _ = opened("SELL", risk=risk)
    assert (pos.stop, pos.target) == (102.0, 93.0)
    pos, ev = manage_day(pos, D1, 100.0, 101.0, 97.5, 98.25, risk)
    assert [e.kind for e in ev] == ["partial_1r"]
    assert (ev[0].price, pos.size, pos.stop) == (98.0, 0.5, 100.0)
    pos, ev = manage_day(pos, D2, 98.0, 99.0, 95.75, 96.25, risk)
    assert [e.kind for e in ev] == ["partial_2r"]
    assert (ev[0].price, ev[0].stop_after, pos.stop) == (96.0, 98.0, 98.0)
    pos, ev = manage_day(pos, D3, 96.0, 96.75, 95.5, 95.75, risk)
    assert [(e.kind, e.stop_after) for e in ev] == [("trail", 95.75 + 2.0)]
    pos, ev = manage_day(pos, D4, 95.75, 96.5, 93.5, 94.0, risk)
    assert [(e.kind, e.price) for e in ev] == [("partial_3r", 94.0)]
    assert pos.realized_r == 0.5 * 1 + 0.25 * 2 + 0.25 * 3


def test_short_target_at_the_default_reward_risk() -> None:
    pos, _ = opened("SELL")
    pos, ev = manage_day(pos, D1, 100.0, 100.5, 94.0, 94.5, RISK)
    assert [(e.kind, e.price) for e in ev] == [
        ("partial_1r", 98.0),
        ("partial_2r", 96.0),
        ("target", 95.0),
    ]
    assert pos.realized_r == 1.625


def test_a_level_the_open_gapped_through_fills_at_the_open() -> None:
    pos, _ = opened()
    pos, _ = manage_day(pos, D1, 100.0, 101.0, 99.0, 100.5, RISK)
    pos, ev = manage_day(pos, D2, 104.5, 104.75, 104.25, 104.5, RISK)
    assert [(e.kind, e.price) for e in ev][:2] == [("partial_1r", 104.5), ("partial_2r", 104.5)]
    assert pos.realized_r == 0.5 * 2.25 + 0.25 * 2.25


# --- stops ---------------------------------------------------------------------------------


def test_stop_before_any_partial_loses_one_r() -> None:
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 101.0, 97.5, 98.5, RISK)
    assert [(e.kind, e.price, e.size_change, e.size_after) for e in ev] == [
        ("stop", 98.0, -1.0, 0.0)
    ]
    assert (pos.state, pos.size, pos.realized_r) == ("flat", 0.0, -1.0)


def test_short_stop_loses_one_r() -> None:
    pos, _ = opened("SELL")
    pos, ev = manage_day(pos, D1, 100.0, 102.5, 99.0, 101.0, RISK)
    assert [(e.kind, e.price) for e in ev] == [("stop", 102.0)]
    assert pos.realized_r == -1.0


def test_gap_through_the_stop_exits_at_the_open() -> None:
    pos, _ = opened()
    pos, _ = manage_day(pos, D1, 100.0, 101.0, 99.0, 99.5, RISK)
    pos, ev = manage_day(pos, D2, 97.0, 99.0, 96.0, 98.5, RISK)
    assert [(e.kind, e.price) for e in ev] == [("stop", 97.0)]
    assert "gap" in ev[0].detail
    assert pos.realized_r == -1.5


def test_short_gap_through_the_stop() -> None:
    pos, _ = opened("SELL")
    pos, ev = manage_day(pos, D2, 103.0, 104.0, 101.5, 102.0, RISK)
    assert [(e.kind, e.price) for e in ev] == [("stop", 103.0)]
    assert pos.realized_r == -1.5


def test_a_bar_touching_stop_and_1r_takes_the_stop_first() -> None:
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 102.5, 97.75, 101.0, RISK)
    assert [(e.kind, e.price) for e in ev] == [("stop", 98.0)]
    assert (pos.partials_taken, pos.realized_r) == (0, -1.0)


def test_breakeven_stop_after_1r_then_stopped_out() -> None:
    pos, _ = opened()
    pos, _ = manage_day(pos, D1, 100.0, 102.5, 99.5, 101.5, RISK)
    pos, ev = manage_day(pos, D2, 101.0, 101.5, 99.5, 100.25, RISK)
    assert [(e.kind, e.price, e.size_change) for e in ev] == [("stop", 100.0, -0.5)]
    assert pos.realized_r == 0.5 * 1 + 0.5 * 0


def test_a_close_through_a_stop_moved_in_the_same_bar_closes_at_that_stop() -> None:
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 102.5, 98.5, 99.5, RISK)
    assert [(e.kind, e.price) for e in ev] == [("partial_1r", 102.0), ("stop", 100.0)]
    assert pos.realized_r == 0.5 * 1 + 0.5 * 0


def test_trailing_stop_follows_the_best_close_and_never_loosens() -> None:
    pos, _ = opened()
    pos, _ = manage_day(pos, D1, 100.0, 102.5, 99.5, 101.75, RISK)  # 1R: stop 100
    assert pos.stop == 100.0
    pos, ev = manage_day(pos, D2, 101.75, 103.75, 101.5, 103.25, RISK)
    assert [(e.kind, e.stop_after) for e in ev] == [("trail", 101.25)]
    pos, ev = manage_day(pos, D3, 103.0, 103.5, 101.5, 102.0, RISK)  # worse close: no move
    assert (ev, pos.stop) == ([], 101.25)
    pos, ev = manage_day(pos, D4, 102.0, 103.75, 101.75, 103.5, RISK)
    assert [(e.kind, e.stop_after) for e in ev] == [("trail", 101.5)]


def test_no_trail_before_1r() -> None:
    pos, _ = opened()
    pos, ev = manage_day(pos, D1, 100.0, 101.75, 99.5, 101.5, RISK)
    assert (ev, pos.stop) == ([], 98.0)


# --- expiry --------------------------------------------------------------------------------


def test_one_day_horizon_expires_at_the_entry_bars_close() -> None:
    pos, _ = opened(horizon=1)
    pos, ev = manage_day(pos, D1, 100.0, 101.0, 99.0, 100.5, RISK)
    assert [(e.kind, e.price, e.size_change) for e in ev] == [("expire", 100.5, -1.0)]
    assert pos.realized_r == 0.25


def test_five_day_horizon_expires_after_five_bars_over_a_weekend() -> None:
    pos, _ = opened(horizon=5)
    bars = [(d, 100.0, 101.0, 99.0, 100.0) for d in (D1, D2, D3, D4)]
    pos, events = run_bars(pos, bars)
    assert (events, pos.state) == ([], "long")
    pos, ev = manage_day(pos, D5, 100.0, 101.0, 99.0, 101.0, RISK)  # Monday: bar 5
    assert [(e.kind, e.price) for e in ev] == [("expire", 101.0)]
    assert pos.realized_r == 0.5


def test_bars_held_from_a_trading_calendar_overrides_the_weekday_count() -> None:
    pos, _ = opened(horizon=2)
    same, ev = manage_day(pos, D3, 100.0, 101.0, 99.0, 100.0, RISK, bars_held=1)
    assert ev == [] and same.state == "long"
    _, ev = manage_day(pos, D2, 100.0, 101.0, 99.0, 100.0, RISK)
    assert [e.kind for e in ev] == ["expire"]


def test_expiry_after_1r_keeps_the_partial_and_does_not_trail() -> None:
    pos, _ = opened(horizon=1)
    pos, ev = manage_day(pos, D1, 100.0, 102.5, 99.5, 102.5, RISK)
    assert [(e.kind, e.price) for e in ev] == [("partial_1r", 102.0), ("expire", 102.5)]
    assert pos.realized_r == 0.5 * 1 + 0.5 * 1.25


def test_bad_bars_raise() -> None:
    pos, _ = opened()
    with pytest.raises(RiskInputError, match="inconsistent bar"):
        manage_day(pos, D1, 100.0, 99.0, 98.5, 99.5, RISK)
    with pytest.raises(RiskInputError, match="before the entry"):
        manage_day(pos, SIGNAL_DAY, 100.0, 101.0, 99.0, 100.0, RISK)
    with pytest.raises(RiskInputError, match="low"):
        manage_day(pos, D1, 100.0, 101.0, float("nan"), 100.0, RISK)


def test_a_flat_position_passes_through() -> None:
    flat = Position(symbol="AAA")
    assert manage_day(flat, D1, 100.0, 101.0, 99.0, 100.0, RISK) == (flat, [])
    assert signal_exit(flat, D1, 100.0) == (flat, [])


# --- signal exit ---------------------------------------------------------------------------


def record(pos: Position, calls: list[str]) -> Position:
    for call in calls:
        pos = record_signal(pos, call, 0.1, 0.7, SIG)
    return pos


def test_record_signal_keeps_the_window_and_counts_the_streak() -> None:
    pos, _ = opened()
    pos = record(pos, ["BUY", "HOLD", "SELL", "SELL"])
    assert (pos.recent_signals, pos.persistence) == (["HOLD", "SELL", "SELL"], 2)
    pos = record(pos, ["SELL", "SELL"])
    assert (pos.recent_signals, pos.persistence) == (["SELL", "SELL", "SELL"], 4)
    pos = record(pos, ["BUY"])
    assert (pos.recent_signals, pos.persistence) == (["SELL", "SELL", "BUY"], 1)
    with pytest.raises(RiskInputError, match="unknown call"):
        record_signal(pos, "sell", 0.1, 0.7, SIG)


def test_hysteresis_and_persistence_for_a_long() -> None:
    pos, _ = opened()
    three = record(pos, ["SELL", "SELL", "SELL"])
    assert not should_exit_on_signal(three, 0.1, 0.69, SIG)
    two = record(pos, ["SELL", "HOLD", "SELL", "SELL"])
    assert not should_exit_on_signal(two, 0.1, 0.70, SIG)
    assert not should_exit_on_signal(record(pos, ["SELL", "SELL"]), 0.1, 0.70, SIG)
    assert should_exit_on_signal(three, 0.1, 0.70, SIG)
    assert not should_exit_on_signal(record(pos, ["BUY"] * 3), 0.1, 0.9, SIG)


def test_hysteresis_mirrors_for_a_short() -> None:
    pos, _ = opened("SELL")
    three = record(pos, ["BUY", "BUY", "BUY"])
    assert should_exit_on_signal(three, 0.70, 0.1, SIG)
    assert not should_exit_on_signal(three, 0.69, 0.1, SIG)
    assert not should_exit_on_signal(record(pos, ["SELL"] * 3), 0.1, 0.9, SIG)
    assert not should_exit_on_signal(Position(symbol="AAA"), 0.9, 0.9, SIG)


def test_signal_exit_closes_the_rest_at_the_price() -> None:
    pos, _ = opened()
    pos, _ = manage_day(pos, D1, 100.0, 102.5, 99.5, 101.0, RISK)
    pos, ev = signal_exit(pos, D2, 101.0)
    assert [(e.kind, e.price, e.size_change, e.size_after) for e in ev] == [
        ("signal_exit", 101.0, -0.5, 0.0)
    ]
    assert (pos.state, pos.realized_r) == ("flat", 0.5 * 1 + 0.5 * 0.5)


# --- replay --------------------------------------------------------------------------------


def test_replay_rebuilds_a_long_history() -> None:
    book: list[PositionEvent] = []
    day = D1

    def step(result: tuple[Position, list[PositionEvent]]) -> Position:
        book.extend(result[1])
        return result[0]

    pos = step(record_signal_event(Position(symbol="AAA"), SIGNAL_DAY, "BUY", 0.7, 0.1, SIG))
    pos = step(open_position(make_signal("BUY", horizon=5), day, 100.0, RISK))
    bars = [
        (100.0, 102.5, 99.5, 101.75),
        (101.75, 103.75, 101.5, 103.25),
        (103.0, 103.5, 101.5, 102.0),
    ]
    for o, h, lo, c in bars:
        pos = step(manage_day(pos, day, o, h, lo, c, RISK))
        pos = step(record_signal_event(pos, day, "SELL", 0.2, 0.75, SIG))
        day += timedelta(days=1)
    assert should_exit_on_signal(pos, 0.2, 0.75, SIG)
    pos = step(signal_exit(pos, day, 102.5))
    assert replay("AAA", book, SIG) == pos
    # a second trade, a short, on the same symbol
    day = date(2024, 1, 9)
    signal = replace(make_signal("SELL", horizon=2), signal_date=day - timedelta(days=1))
    pos = step(open_position(signal, day, 99.0, RISK))
    pos = step(manage_day(pos, day, 99.0, 99.5, 96.5, 96.75, RISK))
    pos = step(manage_day(pos, day + timedelta(days=1), 96.75, 97.0, 95.5, 96.0, RISK))
    assert pos.state == "flat"
    assert replay("AAA", book, SIG) == pos
    assert [e.kind for e in book] == [
        *("signal", "open", "partial_1r", "signal", "trail", "signal", "signal", "signal_exit"),
        *("open", "partial_1r", "trail", "expire"),
    ]
    assert pos.realized_r == 0.5 * 1 + 0.5 * 1.5


def test_replay_rejects_another_symbols_events() -> None:
    _, events = opened()
    with pytest.raises(RiskInputError, match="AAA"):
        replay("BBB", events)


# --- properties ----------------------------------------------------------------------------

price = st.floats(min_value=80.0, max_value=120.0, allow_nan=False)
spread = st.floats(min_value=0.0, max_value=6.0, allow_nan=False)
bar = st.tuples(price, price, spread, spread)


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from(["BUY", "SELL"]),
    entry=st.floats(min_value=97.0, max_value=103.0),
    reward_risk=st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0, 3.5]),
    fractions=st.sampled_from([(0.5, 0.25), (0.6, 0.5), (0.0, 0.0), (1.0, 0.0)]),
    bars=st.lists(bar, min_size=1, max_size=8),
)
def test_size_never_grows_stop_never_loosens_and_replay_matches(
    side: Side,
    entry: float,
    reward_risk: float,
    fractions: tuple[float, float],
    bars: list[tuple[float, float, float, float]],
) -> None:
    risk = RiskSettings(
        reward_risk=reward_risk, partial_1r_fraction=fractions[0], partial_2r_fraction=fractions[1]
    )
    pos, book = open_position(make_signal(side, horizon=5), D1, entry, risk)
    sign = 1.0 if side == "BUY" else -1.0
    day = D1
    for i, (o, c, up, down) in enumerate(bars):
        before = pos
        pos, events = manage_day(
            pos, day, o, max(o, c) + up, min(o, c) - down, c, risk, bars_held=i + 1
        )
        book += events
        assert 0.0 <= pos.size <= before.size
        if pos.state != "flat":
            assert before.stop is not None and pos.stop is not None
            assert sign * (pos.stop - before.stop) >= 0.0
        for e in events:
            assert e.size_change <= 0.0 and e.size_after >= 0.0
        day += timedelta(days=1)
    assert replay("AAA", book) == pos
