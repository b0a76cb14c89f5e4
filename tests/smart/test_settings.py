"""SmartSettings: the issue's defaults, and errors that name the bad field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from turbomode.config import SmartSettings, Tier


def test_defaults_from_the_issue() -> None:
    s = SmartSettings()
    assert [s.tier_multiplier[t] for t in Tier] == [1.1, 1.05, 1.0, 0.9, 0.8]
    assert [s.tier_cap[t] for t in Tier] == [0.15, 0.12, 0.075, 0.04, 0.0]
    assert s.regime_multiplier == {"VOLATILE": 1.3, "BEAR": 1.2, "CHOPPY": 1.0, "BULL": 0.8}
    assert (s.kelly_fraction, s.min_size, s.max_size) == (0.5, 0.02, 0.15)
    assert (s.max_positions, s.max_per_sector, s.max_correlated) == (6, 2, 3)
    assert (s.correlation_threshold, s.max_heat) == (0.7, 0.15)
    assert [s.max_hold_days[t] for t in list(Tier)[:4]] == [5, 4, 3, 2]


def test_loads_from_plain_names() -> None:
    s = SmartSettings.model_validate(
        {"tier_cap": {"Elite": 0.1, "Strong": 0.1, "Average": 0.05, "Weak": 0.03, "Avoid": 0.0}}
    )
    assert s.tier_cap[Tier.ELITE] == 0.1
    dumped = SmartSettings.model_validate(s.model_dump(mode="json"))
    assert dumped == s


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"regime_multiplier": {"BULL": 1.0}}, "regime_multiplier lacks"),
        (
            {"regime_multiplier": {"BULL": 1, "BEAR": 1, "CHOPPY": 1, "VOLATILE": 1, "X": 1}},
            "unknown regimes",
        ),
        ({"tier_cap": {"Elite": 0.1}}, "tier_cap lacks"),
        ({"min_size": 0.2, "max_size": 0.1}, "exceeds max_size"),
        (
            {
                "targets": {
                    "Elite": (0.03, 0.02),
                    "Strong": (0.02, 0.03),
                    "Average": (0.02, 0.025),
                    "Weak": (0.015, 0.02),
                }
            },
            "first ≤ second",
        ),
        ({"stops": {"Elite": 0.03, "Strong": 0.03, "Average": 0.025}}, "stops lacks"),
        (
            {"tier_cutoffs": [{"tier": "Avoid", "min_win_rate": 0.1, "min_expectancy": 0}]},
            "never Avoid",
        ),
    ],
)
def test_bad_settings_name_the_field(override: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SmartSettings.model_validate(override)
