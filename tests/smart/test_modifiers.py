"""Signal modifiers: evidence measured from a hand-built trades table, activity, application,
penalties-only mode, and rule files with bad rules."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import SmartSettings
from turbomode.errors import SchemaError
from turbomode.smart.modifiers import (
    AllOf,
    AnyOf,
    Condition,
    ModifierRule,
    apply_modifiers,
    calibrate_rules,
    load_rules,
    match_frame,
    matches,
    measure_evidence,
    parse_pattern,
)
from turbomode.smart.types import SmartInputError

START, END = date(2023, 1, 1), date(2023, 12, 31)
S20 = SmartSettings(modifier_min_samples=20)
OVERBOUGHT = ModifierRule("overbought", "penalty", Condition("rsi_14", ">", 70.0), 0.8)
OVERSOLD = ModifierRule("oversold", "boost", Condition("rsi_14", "<", 30.0), 1.2)
HIGH_VOLUME = ModifierRule("high_volume", "boost", Condition("volume_ratio_20", ">", 2.0), 1.1)


def trade_rows(n: int, wins: int, rsi: float, vol: float, day: str, exit_day: str) -> list:
    return [
        {
            "symbol": f"S{i % 4}",
            "signal_date": day,
            "exit_date": exit_day,
            "return": 0.01 if i < wins else -0.01,
            "rsi_14": rsi,
            "volume_ratio_20": vol,
        }
        for i in range(n)
    ]


def trades() -> pd.DataFrame:
    """In 2023: 20 overbought trades (6 wins, 30 %), 10 oversold (8 wins, 80 %) and
    10 neutral (6 wins): 40 trades, 20 wins, base rate 50 %. Outside the span: 10 overbought
    winners signalled in 2022 and 10 that closed in 2024 — they must not count."""
    rows = (
        trade_rows(20, 6, 75.0, 1.0, "2023-03-01", "2023-03-06")
        + trade_rows(10, 8, 25.0, 3.0, "2023-05-01", "2023-05-04")
        + trade_rows(10, 6, 50.0, 1.0, "2023-07-03", "2023-07-06")
        + trade_rows(10, 10, 75.0, 1.0, "2022-12-20", "2023-01-03")
        + trade_rows(10, 10, 75.0, 1.0, "2023-12-29", "2024-01-03")
    )
    return pd.DataFrame(rows)


def test_evidence_is_measured_on_the_training_span() -> None:
    ev = measure_evidence(OVERBOUGHT, trades(), START, END, S20)
    assert (ev.n, ev.wins, ev.base_n) == (20, 6, 40)
    assert ev.win_rate == pytest.approx(0.3, abs=1e-15)
    assert ev.base_win_rate == pytest.approx(0.5, abs=1e-15)
    assert (ev.start, ev.end) == (START, END)
    assert ev.active
    assert ev.reason is None


def test_too_few_samples_is_inactive_and_says_why() -> None:
    ev = measure_evidence(OVERBOUGHT, trades(), START, END)  # default minimum 30
    assert not ev.active
    assert ev.reason == "too few samples: 20 < 30 in 2023-01-01..2023-12-31"


def test_a_boost_that_does_not_beat_the_base_rate_is_inactive() -> None:
    # volume_ratio_20 > 2 matches the 10 oversold trades: 80 % vs 50 % → active with n ≥ 10
    s10 = SmartSettings(modifier_min_samples=10)
    assert measure_evidence(HIGH_VOLUME, trades(), START, END, s10).active
    # rsi_14 > 40 matches overbought + neutral: 12 of 30 = 40 % — below the base, not above.
    weak = ModifierRule("not_oversold", "boost", Condition("rsi_14", ">", 40.0), 1.1)
    ev = measure_evidence(weak, trades(), START, END, s10)
    assert not ev.active
    assert ev.reason == "win rate 0.400 is not 0.050 above the base rate 0.500 (n=30)"


def test_edge_must_reach_the_minimum() -> None:
    s = SmartSettings(modifier_min_samples=20, modifier_min_edge=0.25)
    ev = measure_evidence(OVERBOUGHT, trades(), START, END, s)  # edge 0.20 < 0.25
    assert not ev.active
    assert "not 0.250 below the base rate 0.500" in (ev.reason or "")


def test_a_later_span_sees_the_later_trades() -> None:
    ev = measure_evidence(OVERBOUGHT, trades(), date(2022, 1, 1), date(2024, 12, 31), S20)
    assert (ev.n, ev.wins, ev.base_n) == (40, 26, 60)


def test_an_explicit_win_column_overrides_the_return_sign() -> None:
    t = trades()
    t["win"] = True
    ev = measure_evidence(OVERBOUGHT, t, START, END, S20)
    assert ev.win_rate == 1.0
    assert not ev.active


def test_trades_table_schema_errors() -> None:
    with pytest.raises(SchemaError, match="exit_date"):
        measure_evidence(OVERBOUGHT, trades().drop(columns="exit_date"), START, END)
    bad = trades()
    bad.loc[0, "exit_date"] = "2023-02-01"  # before its signal
    with pytest.raises(SchemaError, match="exit before the signal"):
        measure_evidence(OVERBOUGHT, bad, START, END)
    with pytest.raises(SmartInputError, match="after its end"):
        measure_evidence(OVERBOUGHT, trades(), END, START)


# --- applying ------------------------------------------------------------------------------


def calibrated() -> list[ModifierRule]:
    rules = calibrate_rules(
        [OVERBOUGHT, OVERSOLD, HIGH_VOLUME],
        trades(),
        START,
        END,
        SmartSettings(modifier_min_samples=10),
    )
    assert [r.active for r in rules] == [True, True, True]
    return rules


def test_apply_penalty_and_boosts() -> None:
    rules = calibrated()
    assert apply_modifiers(80.0, {"rsi_14": 75.0, "volume_ratio_20": 1.0}, rules) == (
        pytest.approx(64.0, abs=1e-12),
        ("overbought",),
    )
    # oversold × high volume: 50 × 1.2 × 1.1 = 66
    strength, applied = apply_modifiers(50.0, {"rsi_14": 25.0, "volume_ratio_20": 3.0}, rules)
    assert strength == pytest.approx(66.0, abs=1e-12)
    assert applied == ("oversold", "high_volume")


def test_adjusted_strength_is_clipped_to_100() -> None:
    strength, _ = apply_modifiers(90.0, {"rsi_14": 25.0, "volume_ratio_20": 3.0}, calibrated())
    assert strength == 100.0  # 90 × 1.32 = 118.8


def test_penalties_only_ignores_boosts() -> None:
    rules = calibrated()
    row = {"rsi_14": 25.0, "volume_ratio_20": 3.0}
    assert apply_modifiers(50.0, row, rules, penalties_only=True) == (50.0, ())
    row = {"rsi_14": 75.0, "volume_ratio_20": 3.0}
    strength, applied = apply_modifiers(50.0, row, rules, penalties_only=True)
    assert strength == pytest.approx(40.0, abs=1e-12)
    assert applied == ("overbought",)


def test_inactive_rules_are_not_applied() -> None:
    rules = calibrate_rules([OVERBOUGHT], trades(), START, END)  # 20 < 30: inactive
    assert apply_modifiers(80.0, {"rsi_14": 75.0}, rules) == (80.0, ())


def test_unmeasured_rule_is_refused() -> None:
    with pytest.raises(SmartInputError, match="no measured evidence"):
        apply_modifiers(80.0, {"rsi_14": 75.0}, [OVERBOUGHT])


def test_missing_feature_raises_and_nan_does_not_match() -> None:
    rules = calibrated()
    with pytest.raises(SmartInputError, match="volume_ratio_20"):
        apply_modifiers(80.0, {"rsi_14": 50.0}, rules)
    assert apply_modifiers(80.0, {"rsi_14": np.nan, "volume_ratio_20": np.nan}, rules) == (
        80.0,
        (),
    )


def test_rule_values_are_checked() -> None:
    with pytest.raises(SmartInputError, match="boost multiplier must be > 1"):
        ModifierRule("b", "boost", Condition("rsi_14", ">", 1.0), 0.9)
    with pytest.raises(SmartInputError, match=r"penalty multiplier must lie in \(0, 1\)"):
        ModifierRule("p", "penalty", Condition("rsi_14", ">", 1.0), 1.2)
    with pytest.raises(SmartInputError, match="kind"):
        ModifierRule("k", "bonus", Condition("rsi_14", ">", 1.0), 1.2)  # type: ignore[arg-type]


# --- patterns ------------------------------------------------------------------------------


def test_nested_patterns_scalar_and_frame_agree() -> None:
    pattern = parse_pattern(
        {
            "any": [
                {
                    "all": [
                        {"feature": "rsi_14", "op": ">=", "value": 70},
                        {"feature": "volume_ratio_20", "op": "<", "value": 1.5},
                    ]
                },
                {"feature": "rsi_14", "op": "<=", "value": 20},
            ]
        }
    )
    assert isinstance(pattern, AnyOf)
    assert isinstance(pattern.parts[0], AllOf)
    frame = pd.DataFrame(
        {"rsi_14": [70.0, 70.0, 20.0, 50.0, np.nan], "volume_ratio_20": [1.0, 2.0, 9.0, 1.0, 1.0]}
    )
    expected = [True, False, True, False, False]
    assert match_frame(pattern, frame).tolist() == expected
    assert [
        matches(pattern, {str(k): v for k, v in row.items()}) for row in frame.to_dict("records")
    ] == expected


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"feature": "rsi_15", "op": ">", "value": 1}, r"unknown feature\(s\) \['rsi_15'\]"),
        ({"feature": "rsi_14", "op": "=>", "value": 1}, "unknown op '=>'"),
        ({"feature": "rsi_14", "op": ">", "value": "high"}, "finite number"),
        ({"all": []}, "non-empty list"),
        ({"feature": "rsi_14", "op": ">"}, "got keys"),
    ],
)
def test_bad_patterns(obj: dict, message: str) -> None:
    with pytest.raises(SmartInputError, match=message):
        parse_pattern(obj)


def test_unknown_feature_suggests_a_near_name() -> None:
    with pytest.raises(SmartInputError, match=r"'rsi_41' → did you mean \[.*'rsi_14'"):
        parse_pattern({"feature": "rsi_41", "op": ">", "value": 1})


# --- loading -------------------------------------------------------------------------------

RULES_YAML = """
rules:
  - name: overbought
    kind: penalty
    value: 0.8
    when: {feature: rsi_14, op: ">", value: 70}
  - name: typo
    kind: boost
    value: 1.1
    when: {feature: rsi14, op: "<", value: 30}
  - name: typed_evidence
    kind: boost
    value: 1.1
    when: {feature: rsi_14, op: "<", value: 30}
    evidence: {n: 500, win_rate: 0.9}
  - name: shrinking_boost
    kind: boost
    value: 0.9
    when: {feature: rsi_14, op: "<", value: 30}
  - name: oversold_on_volume
    kind: boost
    value: 1.2
    description: reversal candidates with volume behind them
    when:
      all:
        - {feature: rsi_14, op: "<", value: 30}
        - {feature: volume_ratio_20, op: ">", value: 2}
  - name: overbought
    kind: penalty
    value: 0.9
    when: {feature: rsi_14, op: ">", value: 80}
"""


def test_load_rules_keeps_the_good_ones_and_names_the_bad(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    loaded = load_rules(path)
    assert [r.name for r in loaded.rules] == ["overbought", "oversold_on_volume"]
    assert loaded.rules[1].description == "reversal candidates with volume behind them"
    assert all(r.evidence is None for r in loaded.rules)
    assert len(loaded.errors) == 4
    assert loaded.errors[0].startswith("rule #2 'typo': unknown feature(s) ['rsi14']")
    assert loaded.errors[1] == (
        "rule #3 'typed_evidence': evidence is measured from the trades table, not typed in"
    )
    assert loaded.errors[2].startswith("rule #4 'shrinking_boost': rule 'shrinking_boost': a boost")
    assert loaded.errors[3] == "rule #6 'overbought': duplicate rule name"
    assert load_rules(RULES_YAML) == loaded  # YAML text loads the same


def test_load_rules_with_a_custom_feature_list() -> None:
    loaded = load_rules(
        [
            {
                "name": "x",
                "kind": "boost",
                "value": 1.1,
                "when": {"feature": "f", "op": ">", "value": 0},
            }
        ],
        known_features=["f"],
    )
    assert [r.name for r in loaded.rules] == ["x"]
    assert loaded.errors == ()


def test_a_file_that_is_not_a_rule_list_raises(tmp_path: Path) -> None:
    with pytest.raises(SmartInputError, match="must be a list"):
        load_rules({"rule": []})
    with pytest.raises(SmartInputError, match="not found"):
        load_rules(tmp_path / "missing.yaml")
