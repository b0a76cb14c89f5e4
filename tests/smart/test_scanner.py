"""The portfolio step end to end: tiers, modifiers, sizing, constraints and exits combined,
with every number worked by hand."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from turbomode.config import SmartSettings, Tier
from turbomode.smart.exits import manage_smart_day, open_smart_position
from turbomode.smart.modifiers import Condition, ModifierRule, calibrate_rules
from turbomode.smart.scanner import SmartCandidate, earnings_soon, smart_scan
from turbomode.smart.types import Holding, SmartInputError, read_signals_json, write_signals_json

S = SmartSettings(modifier_min_samples=10)
DAY = date(2024, 3, 1)  # a Friday
NEUTRAL = {"rsi_14": 50.0}


def overbought_rule() -> list[ModifierRule]:
    """Measured: 12 overbought trades with 2 wins (16.7 %) against a base of 12/24 (50 %)."""
    rows = [
        {
            "symbol": "S",
            "signal_date": "2023-06-01",
            "exit_date": "2023-06-05",
            "return": 0.01 if (i % 12) < (2 if rsi > 70 else 10) else -0.01,
            "rsi_14": rsi,
        }
        for rsi in (75.0, 50.0)
        for i in range(12)
    ]
    rule = ModifierRule("overbought", "penalty", Condition("rsi_14", ">", 70.0), 0.8)
    rules = calibrate_rules([rule], pd.DataFrame(rows), date(2023, 1, 1), date(2023, 12, 31), S)
    assert rules[0].active
    return rules


def candidates() -> list[SmartCandidate]:
    return [
        SmartCandidate("XOM", "Energy", DAY, 40.0, 80.0, 0.60, 1.5, NEUTRAL, sector_momentum=0.02),
        SmartCandidate("CVX", "Energy", DAY, 150.0, 60.0, 0.55, 2.0, {"rsi_14": 75.0}),
        SmartCandidate("NEE", "Utilities", DAY, 70.0, 70.0, 0.50, 1.2, NEUTRAL),
        SmartCandidate("BAD", "Materials", DAY, 10.0, 50.0, 0.60, 1.5, NEUTRAL),
        SmartCandidate(
            "AAPL",
            "Information Technology",
            DAY,
            180.0,
            95.0,
            0.6,
            1.5,
            NEUTRAL,
            earnings_soon=True,
        ),
    ]


def scan(settings: SmartSettings = S) -> dict:
    signals = smart_scan(
        candidates(),
        regime="BEAR",
        tiers={"XOM": Tier.STRONG, "NEE": Tier.WEAK, "BAD": Tier.AVOID},
        rules=overbought_rule(),
        holdings=[Holding("HES", "Energy", 0.05, 0.03)],
        equity=100_000.0,
        settings=settings,
    )
    return {s.symbol: s for s in signals}


def test_order_and_skip_reasons() -> None:
    out = scan()
    assert list(out) == ["AAPL", "XOM", "NEE", "CVX", "BAD"]  # adjusted 95, 84, 63, 48, 40
    assert {t: s.skip_reason for t, s in out.items()} == {
        "AAPL": "earnings within 3 business day(s)",
        "XOM": None,
        "NEE": None,
        "CVX": "2 positions in Energy already (max 2)",  # HES and tonight's XOM
        "BAD": "tier Avoid is never traded",
    }


def test_strong_signal_by_hand() -> None:
    xom = scan()["XOM"]
    # 80 × Strong 1.05 = 84; Kelly 1/3 × 0.5 × 0.84 × BEAR 1.2 = 0.168 → Strong cap 12 %
    assert xom.strength_adjusted == pytest.approx(84.0, abs=1e-12)
    assert xom.size == 0.12
    assert xom.shares == 300  # 12 000 / 40
    assert (xom.stop, xom.target_1, xom.target_2) == pytest.approx((38.8, 40.8, 41.2), abs=1e-12)
    assert xom.risk == pytest.approx(360.0, abs=1e-9)  # 300 × (40 − 38.80)
    assert xom.heat == pytest.approx(0.0036, abs=1e-15)
    assert xom.max_hold_days == 4
    assert xom.sector_momentum == 0.02
    assert xom.modifiers == ()


def test_weak_signal_by_hand() -> None:
    nee = scan()["NEE"]
    # Kelly 0.5 − 0.5/1.2 = 1/12; 70 × Weak 0.9 = 63; 1/12 × 0.5 × 0.63 × 1.2 = 0.0315 < 4 %
    assert nee.strength_adjusted == pytest.approx(63.0, abs=1e-12)
    assert nee.size == pytest.approx(0.0315, abs=1e-15)
    assert nee.shares == 45  # 3 150 / 70
    assert nee.stop == pytest.approx(68.6, abs=1e-12)
    assert nee.risk == pytest.approx(63.0, abs=1e-9)  # 45 × 1.40
    assert nee.max_hold_days == 2


def test_penalised_and_skipped_signals_keep_their_numbers() -> None:
    out = scan()
    cvx = out["CVX"]
    # unranked → Average; 60 × overbought 0.8 × 1.0 = 48
    assert cvx.tier is Tier.AVERAGE
    assert cvx.strength_adjusted == pytest.approx(48.0, abs=1e-12)
    assert cvx.modifiers == ("overbought",)
    assert (cvx.size, cvx.shares, cvx.risk, cvx.heat) == (0.0, 0, 0.0, 0.0)
    assert cvx.stop == pytest.approx(146.25, abs=1e-12)
    bad = out["BAD"]
    assert bad.strength_adjusted == pytest.approx(40.0, abs=1e-12)  # 50 × Avoid 0.8
    assert (bad.target_1, bad.stop, bad.max_hold_days) == (None, None, None)
    assert out["AAPL"].earnings_soon


def test_penalties_only_setting() -> None:
    boost = ModifierRule("calm", "boost", Condition("rsi_14", "<", 60.0), 1.5)
    rows = [
        {
            "symbol": "S",
            "signal_date": "2023-06-01",
            "exit_date": "2023-06-05",
            "return": 0.01 if i < (11 if rsi < 60 else 1) else -0.01,
            "rsi_14": rsi,
        }
        for rsi in (50.0, 75.0)
        for i in range(12)
    ]
    rules = calibrate_rules([boost], pd.DataFrame(rows), date(2023, 1, 1), date(2023, 12, 31), S)
    assert rules[0].active
    kwargs: dict[str, Any] = {
        "regime": "CHOPPY",
        "tiers": {},
        "rules": rules,
        "holdings": [],
        "equity": 100_000.0,
    }
    c = [SmartCandidate("NEE", "Utilities", DAY, 70.0, 60.0, 0.5, 1.2, NEUTRAL)]
    assert smart_scan(c, settings=S, **kwargs)[0].strength_adjusted == pytest.approx(90.0)
    only = SmartSettings(modifier_min_samples=10, penalties_only=True)
    assert smart_scan(c, settings=only, **kwargs)[0].strength_adjusted == 60.0


def test_bad_inputs() -> None:
    c = candidates()[:1]
    kwargs: dict[str, Any] = {"tiers": {}, "rules": [], "holdings": [], "equity": 1e5}
    with pytest.raises(SmartInputError, match="regime"):
        smart_scan(c, regime="bull", **kwargs)
    with pytest.raises(SmartInputError, match="twice"):
        smart_scan(c + c, regime="BULL", **kwargs)
    rule = ModifierRule("x", "penalty", Condition("rsi_14", ">", 70.0), 0.8)
    with pytest.raises(SmartInputError, match="no measured evidence"):
        smart_scan(c, regime="BULL", tiers={}, rules=[rule], holdings=[], equity=1e5)


def test_earnings_window_in_business_days() -> None:
    assert earnings_soon(DAY, date(2024, 3, 6), 3)  # Fri → Wed: Fri, Mon, Tue = 3
    assert not earnings_soon(DAY, date(2024, 3, 7), 3)
    assert earnings_soon(DAY, DAY, 0)
    assert not earnings_soon(DAY, None, 3)
    assert not earnings_soon(DAY, date(2024, 2, 28), 3)


def test_a_taken_signal_trades_and_reports(tmp_path: Path) -> None:
    signals = list(scan().values())
    write_signals_json(signals, tmp_path / "s.json")
    xom = read_signals_json(tmp_path / "s.json")[1]
    pos, _ = open_smart_position(xom, date(2024, 3, 4), 40.0, S)
    pos, events = manage_smart_day(pos, date(2024, 3, 4), 40.0, 41.0, 39.9, 40.9)
    assert [(e.kind, e.size_after) for e in events] == [("target_1", 0.5)]
    h = pos.as_holding()
    assert (h.ticker, h.sector, h.size) == ("XOM", "Energy", 0.06)
    assert h.stop_distance == pytest.approx(0.03, abs=1e-12)
