"""Every default of the Smart Scanner in one typed object.

The numbers come from issue #9: tier multipliers, regime multipliers, tier caps, the portfolio
constraints and the tiered exits. The lead wires :class:`SmartSettings` into the platform's
settings; until then ``SmartSettings()`` gives the defaults and ``SmartSettings(**yaml)``
overrides them, with a validation error that names the field.
"""

from __future__ import annotations

from collections.abc import Container

from pydantic import BaseModel, Field, field_validator, model_validator

from turbomode.smart.types import REGIMES, TIER_ORDER, Tier

TRADED_TIERS: tuple[Tier, ...] = (Tier.ELITE, Tier.STRONG, Tier.AVERAGE, Tier.WEAK)


class TierCutoff(BaseModel):
    """A symbol earns ``tier`` when its measured win rate and expectancy (mean return per
    trade) both reach these floors; cut-offs are tried best tier first."""

    tier: Tier
    min_win_rate: float = Field(ge=0, le=1)
    min_expectancy: float


def _need_all(name: str, keys: Container[object], wanted: tuple[object, ...]) -> None:
    missing = [str(k) for k in wanted if k not in keys]
    if missing:
        raise ValueError(f"{name} lacks {missing}")


class SmartSettings(BaseModel):
    """Signal modifiers, tiers, sizing, portfolio constraints and exits of the Smart Scanner.

    Fractions are of equity or of price (0.02 = 2 %); strengths are on a 0–100 scale.
    """

    # --- signal modifiers and tiers ------------------------------------------------------
    tier_multiplier: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 1.1,
            Tier.STRONG: 1.05,
            Tier.AVERAGE: 1.0,
            Tier.WEAK: 0.9,
            Tier.AVOID: 0.8,
        },
        description="Adjusted strength = raw × modifiers × this.",
    )
    penalties_only: bool = Field(
        default=False, description="Apply penalty rules only; boosts are measured but ignored."
    )
    modifier_min_samples: int = Field(
        default=30, ge=1, description="Matching trades a rule needs in the training span."
    )
    modifier_min_edge: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="How far (absolute) a rule's win rate must sit from the base rate, in its "
        "own direction, for the rule to be active.",
    )
    tier_lookback_days: int = Field(
        default=365, ge=1, description="Calendar days of closed trades each ranking uses."
    )
    tier_min_trades: int = Field(
        default=10, ge=1, description="Fewer closed trades than this → Average (no evidence)."
    )
    tier_cutoffs: list[TierCutoff] = Field(
        default_factory=lambda: [
            TierCutoff(tier=Tier.ELITE, min_win_rate=0.60, min_expectancy=0.010),
            TierCutoff(tier=Tier.STRONG, min_win_rate=0.55, min_expectancy=0.005),
            TierCutoff(tier=Tier.AVERAGE, min_win_rate=0.45, min_expectancy=0.0),
            TierCutoff(tier=Tier.WEAK, min_win_rate=0.40, min_expectancy=-0.005),
        ],
        description="Tried in order; a symbol that meets none is Avoid.",
    )
    curation_quarters: int = Field(
        default=2,
        ge=1,
        description="Consecutive quarterly rankings at Avoid that drop a symbol from the universe.",
    )

    # --- sizing --------------------------------------------------------------------------
    kelly_fraction: float = Field(default=0.5, gt=0, le=1, description="Fractional Kelly.")
    regime_multiplier: dict[str, float] = Field(
        default_factory=lambda: {"VOLATILE": 1.3, "BEAR": 1.2, "CHOPPY": 1.0, "BULL": 0.8}
    )
    tier_cap: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 0.15,
            Tier.STRONG: 0.12,
            Tier.AVERAGE: 0.075,
            Tier.WEAK: 0.04,
            Tier.AVOID: 0.0,
        },
        description="Largest fraction of equity one position of the tier may take.",
    )
    min_size: float = Field(default=0.02, ge=0, le=1)
    max_size: float = Field(default=0.15, gt=0, le=1)

    # --- portfolio constraints -----------------------------------------------------------
    max_positions: int = Field(default=6, ge=1)
    max_per_sector: int = Field(default=2, ge=1)
    correlation_threshold: float = Field(default=0.7, gt=-1, lt=1)
    max_correlated: int = Field(
        default=3,
        ge=1,
        description="Most positions in one correlated group: a candidate together with the "
        "positions it correlates with above the threshold.",
    )
    correlation_lookback: int = Field(default=60, ge=2, description="Daily returns used.")
    correlation_min_periods: int = Field(default=20, ge=2)
    max_heat: float = Field(default=0.15, gt=0, le=1, description="Σ size × stop distance.")
    skip_earnings: bool = Field(default=True, description="Skip signals near earnings.")
    earnings_window_days: int = Field(
        default=3, ge=0, description="Business days ahead that count as 'near earnings'."
    )

    # --- exits ---------------------------------------------------------------------------
    targets: dict[Tier, tuple[float, float]] = Field(
        default_factory=lambda: {
            Tier.ELITE: (0.02, 0.035),
            Tier.STRONG: (0.02, 0.03),
            Tier.AVERAGE: (0.02, 0.025),
            Tier.WEAK: (0.015, 0.02),
        },
        description="First and second target above the entry, per traded tier.",
    )
    first_target_fraction: float = Field(
        default=0.5, gt=0, lt=1, description="Share of the position sold at the first target."
    )
    stops: dict[Tier, float] = Field(
        default_factory=lambda: {
            Tier.ELITE: 0.03,
            Tier.STRONG: 0.03,
            Tier.AVERAGE: 0.025,
            Tier.WEAK: 0.02,
        },
        description="Stop distance below the entry, checked at the close.",
    )
    max_hold_days: dict[Tier, int] = Field(
        default_factory=lambda: {Tier.ELITE: 5, Tier.STRONG: 4, Tier.AVERAGE: 3, Tier.WEAK: 2}
    )
    trailing_stop_pct: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="After the first target, trail the stop this far below the best close; "
        "None turns trailing off.",
    )

    @field_validator("regime_multiplier")
    @classmethod
    def _regimes(cls, v: dict[str, float]) -> dict[str, float]:
        _need_all("regime_multiplier", v, REGIMES)
        unknown = sorted(set(v) - set(REGIMES))
        if unknown:
            raise ValueError(f"regime_multiplier has unknown regimes {unknown}; use {REGIMES}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SmartSettings:
        _need_all("tier_multiplier", self.tier_multiplier, TIER_ORDER)
        _need_all("tier_cap", self.tier_cap, TIER_ORDER)
        for name in ("targets", "stops", "max_hold_days"):
            _need_all(name, getattr(self, name), TRADED_TIERS)
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} exceeds max_size {self.max_size}")
        for tier, (t1, t2) in self.targets.items():
            if not 0 < t1 <= t2:
                raise ValueError(f"targets[{tier.value}] must satisfy 0 < first ≤ second")
        for tier, stop in self.stops.items():
            if not 0 < stop < 1:
                raise ValueError(f"stops[{tier.value}] must lie in (0, 1), got {stop}")
        for tier, days in self.max_hold_days.items():
            if days < 1:
                raise ValueError(f"max_hold_days[{tier.value}] must be ≥ 1, got {days}")
        cut_tiers = [c.tier for c in self.tier_cutoffs]
        if Tier.AVOID in cut_tiers or len(set(cut_tiers)) != len(cut_tiers):
            raise ValueError("tier_cutoffs: each traded tier at most once, never Avoid")
        return self
