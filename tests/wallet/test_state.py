"""A wallet trade's exit-policy state (ATR ``Position`` or ``SmartPosition``) round-trips
through the JSON the store keeps, and what cannot be stored is refused."""

from __future__ import annotations

import dataclasses
import json
from datetime import date

import pytest

from turbomode.config import Tier
from turbomode.records.positions import Position
from turbomode.smart.exits import SmartPosition
from turbomode.wallet import StateCodecError, decode_state, encode_state


def test_policy_states_round_trip_through_json_exactly() -> None:
    atr = Position(
        symbol="AAA",
        state="short",
        sector="Energy",
        horizon=5,
        entry_date=date(2024, 3, 5),
        entry_price=100.0,
        stop=102.0,
        target=95.0,
        initial_stop_distance=2.0,
        size=0.25,
        confidence=0.61,
        atr_at_entry=1.7,
        recent_signals=["SELL", "HOLD"],
        persistence=2,
        partials_taken=2,
        realized_r=1.25,
        version=3,
    )
    smart = SmartPosition(
        symbol="CCC",
        sector="Utilities",
        tier=Tier.ELITE,
        state="long",
        entry_date=date(2024, 3, 5),
        entry_price=50.0,
        stop=48.5,
        target_1=51.0,
        target_2=51.75,
        max_hold_days=5,
        trailing_pct=0.01,
        size=0.5,
        equity_size=0.15,
        first_target_hit=True,
        best_close=51.2,
        bars_held=2,
        last_date=date(2024, 3, 6),
        realized_return=0.012,
    )
    for state in (atr, smart, Position(symbol="FLAT"), SmartPosition(symbol="F")):
        stored = json.loads(json.dumps(encode_state(state)))
        back = decode_state(stored)
        assert back == state and type(back) is type(state)
        assert dataclasses.asdict(back) == dataclasses.asdict(state)
    assert decode_state(json.loads(json.dumps(encode_state(smart)))).tier is Tier.ELITE


def test_unstorable_states_are_refused() -> None:
    with pytest.raises(StateCodecError, match="cannot be stored"):
        encode_state(Position(symbol="A", state="long", stop=float("inf")))
    with pytest.raises(StateCodecError, match="unknown policy state"):
        encode_state(date(2024, 1, 1))
    with pytest.raises(StateCodecError, match="unknown stored field"):
        decode_state({"type": "Position", "fields": {"symbol": "A", "colour": "red"}})
