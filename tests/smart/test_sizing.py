"""Sizing: hand-computed Kelly, each step of the size arithmetic, caps, shares and risk."""

from __future__ import annotations

import pytest

from turbomode.config import SmartSettings, Tier
from turbomode.smart.sizing import (
    heat,
    kelly_fraction,
    position_size,
    risk_amount,
    shares_for,
)
from turbomode.smart.types import SmartInputError

S = SmartSettings()


@pytest.mark.parametrize(
    ("p", "b", "expected"),
    [
        (0.6, 1.5, 0.6 - 0.4 / 1.5),  # 1/3
        (0.55, 2.0, 0.325),  # 0.55 − 0.45/2
        (0.5, 1.0, 0.0),  # a coin flip at even money has no edge
        (0.4, 1.0, 0.0),  # −0.2 clipped at 0: no bet, never a short
        (1.0, 1.0, 1.0),
        (0.3, 4.0, 0.125),  # 0.3 − 0.7/4: a rare win that pays a lot
    ],
)
def test_kelly_fraction_by_hand(p: float, b: float, expected: float) -> None:
    assert kelly_fraction(p, b) == pytest.approx(expected, abs=1e-15)


def test_kelly_third_is_one_third() -> None:
    assert kelly_fraction(0.6, 1.5) == pytest.approx(1.0 / 3.0, abs=1e-15)


@pytest.mark.parametrize(("p", "b"), [(1.2, 1.0), (-0.1, 1.0), (0.5, 0.0), (0.5, -1.0)])
def test_kelly_rejects_impossible_inputs(p: float, b: float) -> None:
    with pytest.raises(SmartInputError):
        kelly_fraction(p, b)


def test_kelly_rejects_nan_payoff() -> None:
    with pytest.raises(SmartInputError, match="payoff"):
        kelly_fraction(0.6, float("nan"))


def test_each_step_of_the_size() -> None:
    # p 0.6, b 1.5: full 1/3 → half 1/6 → × 80/100 = 0.13333 → × BEAR 1.2 = 0.16 → Strong cap 12 %
    z = position_size(0.6, 1.5, 80.0, "BEAR", Tier.STRONG, S)
    assert z.kelly == pytest.approx(1 / 3, abs=1e-15)
    assert z.fractional == pytest.approx(1 / 6, abs=1e-15)
    assert z.strength_scaled == pytest.approx(2 / 15, abs=1e-15)
    assert z.regime_scaled == pytest.approx(0.16, abs=1e-15)
    assert z.cap == 0.12
    assert z.size == 0.12
    assert z.capped


@pytest.mark.parametrize(
    ("regime", "expected"),
    # p 0.55, b 2: full 0.325 → half 0.1625 → × 50/100 = 0.08125 → × regime (Elite cap 15 %)
    [("VOLATILE", 0.105625), ("BEAR", 0.0975), ("CHOPPY", 0.08125), ("BULL", 0.065)],
)
def test_regime_multipliers(regime: str, expected: float) -> None:
    z = position_size(0.55, 2.0, 50.0, regime, Tier.ELITE, S)
    assert z.size == pytest.approx(expected, abs=1e-15)
    assert not z.capped


@pytest.mark.parametrize(
    ("tier", "cap"),
    [
        (Tier.ELITE, 0.15),
        (Tier.STRONG, 0.12),
        (Tier.AVERAGE, 0.075),
        (Tier.WEAK, 0.04),
        (Tier.AVOID, 0.0),
    ],
)
def test_tier_caps(tier: Tier, cap: float) -> None:
    # p 0.9, b 3: full 0.8667 → half 0.4333 × 1.0 × 1.3 = 0.5633: above every cap
    z = position_size(0.9, 3.0, 100.0, "VOLATILE", tier, S)
    assert z.regime_scaled == pytest.approx((0.9 - 0.1 / 3) * 0.5 * 1.3, abs=1e-15)
    assert z.size == cap


def test_max_size_caps_below_the_tier_cap() -> None:
    z = position_size(0.9, 3.0, 100.0, "VOLATILE", Tier.ELITE, SmartSettings(max_size=0.1))
    assert z.size == 0.1


def test_no_edge_no_size() -> None:
    assert position_size(0.4, 1.0, 100.0, "VOLATILE", Tier.ELITE, S).size == 0.0


def test_kelly_multiplier_is_configurable() -> None:
    z = position_size(0.55, 2.0, 50.0, "CHOPPY", Tier.ELITE, SmartSettings(kelly_fraction=0.25))
    assert z.size == pytest.approx(0.325 * 0.25 * 0.5, abs=1e-15)


def test_unknown_regime_or_tier_or_strength_raises() -> None:
    with pytest.raises(SmartInputError, match="regime"):
        position_size(0.6, 1.5, 80.0, "SIDEWAYS", Tier.STRONG, S)
    with pytest.raises(SmartInputError, match="tier"):
        position_size(0.6, 1.5, 80.0, "BULL", "Superb", S)
    with pytest.raises(SmartInputError, match="strength"):
        position_size(0.6, 1.5, 120.0, "BULL", Tier.STRONG, S)


def test_tier_by_value_or_name() -> None:
    a = position_size(0.6, 1.5, 80.0, "BEAR", "Average", S)
    b = position_size(0.6, 1.5, 80.0, "BEAR", "AVERAGE", S)
    assert a == b
    assert a.size == 0.075


@pytest.mark.parametrize(
    ("equity", "size", "price", "expected"),
    [
        (100_000.0, 0.12, 40.0, 300),  # 12 000 / 40 exactly, despite 0.12 × 1e5 in floats
        (100_000.0, 0.075, 33.0, 227),  # 7 500 / 33 = 227.27 → rounded down
        (10_000.0, 0.02, 250.0, 0),  # 200 buys no share of 250
        (50_000.0, 0.0, 10.0, 0),
    ],
)
def test_shares_round_down(equity: float, size: float, price: float, expected: int) -> None:
    assert shares_for(equity, size, price) == expected


def test_shares_reject_bad_inputs() -> None:
    for args in ((0.0, 0.1, 10.0), (1e5, 1.5, 10.0), (1e5, 0.1, 0.0)):
        with pytest.raises(SmartInputError):
            shares_for(*args)


def test_risk_and_heat() -> None:
    # 300 shares at 40 with a 3 % stop at 38.80: 300 × 1.20 = 360 at risk
    assert risk_amount(300, 40.0, 38.8) == pytest.approx(360.0, abs=1e-9)
    assert heat(0.12, 0.03) == pytest.approx(0.0036, abs=1e-15)
    with pytest.raises(SmartInputError, match="below its entry"):
        risk_amount(10, 40.0, 41.0)
