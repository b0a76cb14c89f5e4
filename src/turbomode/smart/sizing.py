"""Position size: fractional Kelly, scaled by strength and regime, capped by the tier.

In this order, each step a field of :class:`Sizing`:

1. full Kelly ``f = p − (1 − p) / b`` from the win rate p and payoff b (mean win / mean loss),
   clipped at 0 — a negative edge means no bet, never a short;
2. × ``kelly_fraction`` (0.5): half Kelly gives up a little growth for much less variance, and
   p and b are estimates;
3. × strength / 100 (the adjusted strength, 0–100): a weaker call gets less of the edge;
4. × the regime multiplier (VOLATILE 1.3, BEAR 1.2, CHOPPY 1.0, BULL 0.8): the short-term
   reversal the scanner trades pays most when markets are stressed;
5. capped at min(tier cap, ``max_size``) — Elite 15 %, Strong 12 %, Average 7.5 %, Weak 4 %,
   Avoid 0 %.

A size under ``min_size`` (2 %) is not raised to it: the portfolio skips it with a reason
(:mod:`turbomode.smart.portfolio`), since a position too small to matter still costs a slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from turbomode.config import SmartSettings, Tier
from turbomode.smart.types import SmartInputError, check_regime, to_tier

# Tolerance for floating products such as 100000 × 0.12 / 40 landing at 299.99999999999994.
_SHARE_EPS = 1e-9


def kelly_fraction(win_rate: float, payoff: float) -> float:
    """Full Kelly ``p − (1 − p) / b``, clipped at 0; p in [0, 1] and b > 0 or it raises."""
    p = float(win_rate)
    b = float(payoff)
    if not (math.isfinite(p) and 0.0 <= p <= 1.0):
        raise SmartInputError(f"win rate must lie in [0, 1], got {win_rate!r}")
    if not (math.isfinite(b) and b > 0.0):
        raise SmartInputError(f"payoff (mean win / mean loss) must be > 0, got {payoff!r}")
    return max(p - (1.0 - p) / b, 0.0)


@dataclass(frozen=True)
class Sizing:
    """Each step of the size arithmetic (module docstring), as fractions of equity."""

    kelly: float
    fractional: float
    strength_scaled: float
    regime_scaled: float
    cap: float
    size: float
    capped: bool


def position_size(
    win_rate: float,
    payoff: float,
    strength: float,
    regime: str,
    tier: Tier | str,
    settings: SmartSettings | None = None,
) -> Sizing:
    """The size of one position before portfolio constraints (module docstring)."""
    s = settings or SmartSettings()
    strength_f = float(strength)
    if not (math.isfinite(strength_f) and 0.0 <= strength_f <= 100.0):
        raise SmartInputError(f"strength must lie in [0, 100], got {strength!r}")
    t = to_tier(tier)
    full = kelly_fraction(win_rate, payoff)
    fractional = full * s.kelly_fraction
    scaled = fractional * (strength_f / 100.0)
    regime_scaled = scaled * s.regime_multiplier[check_regime(regime)]
    cap = min(s.tier_cap[t], s.max_size)
    size = min(regime_scaled, cap)
    return Sizing(full, fractional, scaled, regime_scaled, cap, size, regime_scaled > cap)


def shares_for(equity: float, size: float, price: float) -> int:
    """Whole shares that ``size`` of ``equity`` buys at ``price`` (rounded down: never more
    money than the size allows)."""
    e, z, p = float(equity), float(size), float(price)
    if not (math.isfinite(e) and e > 0.0):
        raise SmartInputError(f"equity must be > 0, got {equity!r}")
    if not (math.isfinite(z) and 0.0 <= z <= 1.0):
        raise SmartInputError(f"size must lie in [0, 1], got {size!r}")
    if not (math.isfinite(p) and p > 0.0):
        raise SmartInputError(f"price must be > 0, got {price!r}")
    return math.floor(e * z / p + _SHARE_EPS)


def risk_amount(shares: int, entry: float, stop: float) -> float:
    """Currency lost if the stop is hit: shares × (entry − stop) for a long."""
    if stop >= entry:
        raise SmartInputError(f"a long's stop {stop} must lie below its entry {entry}")
    return shares * (entry - stop)


def heat(size: float, stop_distance: float) -> float:
    """A position's share of portfolio heat: size × stop distance (both fractions)."""
    return size * stop_distance
