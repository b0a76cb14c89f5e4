"""The exit-rule adapters trade exactly what the wrapped rule modules decide."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import pandas as pd
import pytest

from tests.backtest.bars import flat, prices
from turbomode.backtest import (
    AtrExitPolicy,
    BacktestSettings,
    Bar,
    EntryOrder,
    KellySizer,
    SmartExitPolicy,
    make_policy,
    run_backtest,
)
from turbomode.config import RiskSettings, Tier
from turbomode.records.signals import Signal
from turbomode.risk import positions
from turbomode.risk.levels import RiskInputError, stop_distance
from turbomode.smart import SmartSettings, manage_smart_day, open_smart_position, position_size
from turbomode.smart.types import SignalV2

DAYS = [date(2024, 3, d) for d in (4, 5, 6, 7, 8, 11)]  # signal day, then five bars
NO_COSTS = BacktestSettings(slippage_bps=0, commission_bps=0, whole_shares=False)

# Entry at 100 with 1R = 2: 1R partial at 102 on bar 2 (stop to 100, trails to 100.1), 2R
# partial at 104 on bar 3 (stop to +1R 102), trail to 102.2 on bar 4, stopped at 102.2 on bar 5.
ATR_BARS = [
    (100.0, 101.0, 99.5, 100.8),
    (101.0, 102.4, 100.6, 102.1),
    (102.5, 104.3, 102.0, 104.0),
    (104.0, 104.5, 103.0, 104.2),
    (103.0, 103.2, 101.9, 102.0),
]


def _direct_atr(settings: RiskSettings) -> tuple[Any, list[tuple[Any, ...]]]:
    """positions.py driven by hand, bar by bar."""
    signal = Signal(
        symbol="AAA", sector="Industrials", cap_class="large", horizon=5, side="BUY",
        signal_date=DAYS[0], p_buy=0.7, p_hold=0.3, p_sell=0.0, confidence=0.7, close=100.0,
        atr=2.0, entry_low=0.0, entry_high=math.inf, stop=98.0, target=105.0,
        stop_distance=2.0, model_version="t",
    )  # fmt: skip
    pos, _ = positions.open_position(signal, DAYS[1], ATR_BARS[0][0], settings)
    exits = []
    for k, (day, (o, h, lo, c)) in enumerate(zip(DAYS[1:], ATR_BARS, strict=True), start=1):
        pos, events = positions.manage_day(pos, day, o, h, lo, c, settings, bars_held=k)
        exits += [(e.date, e.kind, e.price, -e.size_change) for e in events if e.size_change < 0]
    return pos, exits


def _order(side: str = "BUY", **row: Any) -> EntryOrder:
    base = {"stop_distance": 2.0, "horizon": 5, "confidence": 0.7, "tier": "Elite"}
    base.update(row)
    return EntryOrder("AAA", side, DAYS[0], "Industrials", 70.0, 0.1, base)


def test_atr_policy_matches_positions_py_bar_for_bar() -> None:
    settings = RiskSettings()
    final, expected = _direct_atr(settings)
    assert [e[1] for e in expected] == ["partial_1r", "partial_2r", "stop"]
    assert final.realized_r == pytest.approx(0.5 * 1 + 0.25 * 2 + 0.25 * 1.1)

    policy = AtrExitPolicy(settings)
    state, reason = policy.open(_order(), Bar(DAYS[1], *ATR_BARS[0]))
    assert reason is None
    got = []
    for k, (day, bar) in enumerate(zip(DAYS[1:], ATR_BARS, strict=True), start=1):
        state, events = policy.on_bar(state, Bar(day, *bar), k)
        got += [(e.date, e.kind, e.price, e.fraction) for e in events]
    assert got == expected
    assert state.realized_r == final.realized_r

    # through the engine, without costs: the same fills, and P&L = shares × realized R × 1R
    px = prices([d.isoformat() for d in DAYS], {"AAA": [(100, 100, 100, 100), *ATR_BARS]})
    sig = pd.DataFrame([{"date": DAYS[0], "symbol": "AAA", "side": "BUY", "stop_distance": 2.0}])
    r = run_backtest(sig, px, policy, NO_COSTS)
    exits = r.fills[r.fills["kind"] != "entry"]
    shares = r.trades["shares"].iloc[0]
    assert list(zip(exits["kind"], exits["price"], strict=True)) == [(e[1], e[2]) for e in expected]
    assert (exits["shares"] / shares).tolist() == pytest.approx([e[3] for e in expected])
    assert r.trades["net_pnl"].iloc[0] == pytest.approx(shares * final.realized_r * 2.0)


def test_atr_policy_derives_1r_from_atr_and_honours_the_entry_range() -> None:
    settings = RiskSettings()
    policy = AtrExitPolicy(settings)
    bar = Bar(DAYS[1], 100.0, 101.0, 99.0, 100.5)
    state, _ = policy.open(_order(stop_distance=None, atr=1.5, horizon=2), bar)
    want = stop_distance(1.5, "Industrials", 0.7, 2, settings)
    assert state.initial_stop_distance == pytest.approx(want)
    assert state.stop == pytest.approx(100.0 - want)
    state, reason = policy.open(_order(entry_low=95.0, entry_high=99.0), bar)
    assert state is None and "outside the entry range" in str(reason)
    with pytest.raises(RiskInputError, match="stop_distance"):
        policy.open(_order(stop_distance=None), bar)
    # An ATR of 0 (flat bars) refuses that entry instead of stopping the whole run.
    state, reason = policy.open(_order(stop_distance=None, atr=0.0, horizon=2), bar)
    assert state is None and reason == "ATR 0 gives no stop distance"


def test_smart_policy_matches_smart_exits_bar_for_bar() -> None:
    """Elite at entry 100: target 1 = 102 (half), target 2 = 103.5, stop 97, all at the close."""
    bars = [
        (100.0, 101.0, 99.0, 100.5),
        (100.5, 102.5, 100.0, 102.2),
        (102.0, 102.3, 100.8, 101.0),
        (101.0, 103.8, 100.9, 103.6),
        (103.6, 104.0, 103.0, 103.8),
    ]
    settings = SmartSettings()
    signal = SignalV2(
        symbol="AAA", sector="Industrials", signal_date=DAYS[0], price=100.0, strength_raw=70.0,
        strength_adjusted=70.0, tier=Tier.ELITE, regime="CHOPPY", size=0.1, shares=0, risk=0.0,
        heat=0.003, target_1=102.0, target_2=103.5, stop=97.0, max_hold_days=5,
    )  # fmt: skip
    pos, _ = open_smart_position(signal, DAYS[1], 100.0, settings)
    expected = []
    for k, (day, (o, h, lo, c)) in enumerate(zip(DAYS[1:], bars, strict=True), start=1):
        pos, events = manage_smart_day(pos, day, o, h, lo, c, bars_held=k)
        expected += [(e.date, e.kind, e.price, -e.size_change) for e in events if e.size_change < 0]
    assert [e[1] for e in expected] == ["target_1", "target_2"]

    policy = SmartExitPolicy(settings)
    state, reason = policy.open(_order(), Bar(DAYS[1], *bars[0]))
    assert reason is None
    got = []
    for k, (day, bar) in enumerate(zip(DAYS[1:], bars, strict=True), start=1):
        state, events = policy.on_bar(state, Bar(day, *bar), k)
        got += [(e.date, e.kind, e.price, e.fraction) for e in events]
    assert got == expected
    assert state.realized_return == pytest.approx(pos.realized_return)

    px = prices([d.isoformat() for d in DAYS], {"AAA": [(100, 100, 100, 100), *bars]})
    sig = pd.DataFrame([{"date": DAYS[0], "symbol": "AAA", "side": "BUY", "tier": "Elite"}])
    r = run_backtest(sig, px, policy, NO_COSTS)
    t = r.trades.iloc[0]
    assert (t["exit_reason"], t["tier"]) == ("target_2", "Elite")
    assert t["net_return"] == pytest.approx(pos.realized_return)


def test_smart_policy_is_long_only_and_never_enters_avoid() -> None:
    px = prices([d.isoformat() for d in DAYS[:4]], {"AAA": flat(100.0, 4), "BBB": flat(50, 4)})
    sig = pd.DataFrame(
        [
            {"date": DAYS[0], "symbol": "AAA", "side": "SELL", "tier": "Elite"},
            {"date": DAYS[0], "symbol": "BBB", "side": "BUY", "tier": "Avoid"},
            {"date": DAYS[1], "symbol": "BBB", "side": "BUY", "tier": "Weak"},
        ]
    )
    r = run_backtest(sig, px, make_policy("smart"), NO_COSTS)
    assert list(r.trades["symbol"]) == ["BBB"]
    t = r.trades.iloc[0]
    assert (t["entry_date"], t["exit_date"]) == (DAYS[2], DAYS[3])
    assert t["exit_reason"] == "expire"  # Weak: max hold 2 bars
    reasons = dict(zip(r.skipped["symbol"], r.skipped["reason"], strict=True))
    assert reasons["AAA"] == "short entries not allowed"
    assert "never traded" in reasons["BBB"]


def test_kelly_sizer_uses_the_smart_scanner_size() -> None:
    px = prices([d.isoformat() for d in DAYS[:3]], {"AAA": flat(100.0, 3)})
    sig = pd.DataFrame(
        [{"date": DAYS[0], "symbol": "AAA", "side": "BUY", "strength": 80.0, "tier": "Strong",
          "regime": "BEAR"}]
    )  # fmt: skip
    want = position_size(0.6, 1.5, 80.0, "BEAR", "Strong").size
    r = run_backtest(sig, px, make_policy("smart"), NO_COSTS, sizer=KellySizer(0.6, 1.5))
    assert r.trades["shares"].iloc[0] == pytest.approx(100_000 * want / 100.0)
    assert r.trades["regime"].iloc[0] == "BEAR"


def test_unknown_rule_set_is_an_error() -> None:
    with pytest.raises(ValueError, match="rule set"):
        make_policy("turtle")
