"""Metrics against hand-computed values on tiny series."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.backtest.bars import flat, prices
from turbomode.backtest import (
    AtrExitPolicy,
    BacktestSettings,
    buy_and_hold,
    by_group,
    daily_returns,
    equity_metrics,
    exposure_metrics,
    max_drawdown,
    profit_factor,
    run_backtest,
    sharpe,
    sortino,
    summarize,
    trade_metrics,
)

IDX = pd.bdate_range("2024-01-02", periods=3)
# Equity 110 → 99 → 108.9 from 100: returns +10 %, −10 %, +10 %.
EQUITY = pd.Series([110.0, 99.0, 108.9], index=IDX)


def test_sharpe_sortino_drawdown_by_hand() -> None:
    r = daily_returns(EQUITY, 100.0)
    assert r.tolist() == pytest.approx([0.1, -0.1, 0.1])
    # mean 1/30; deviations 1/15, −2/15, 1/15 → sample variance (6/225)/2 = 1/75
    assert sharpe(r) == pytest.approx((1 / 30) / math.sqrt(1 / 75) * math.sqrt(252))
    # downside deviation √(0.01 / 3) over all three days
    assert sortino(r) == pytest.approx((1 / 30) / math.sqrt(0.01 / 3) * math.sqrt(252))
    assert sharpe(r) == pytest.approx(4.58257569, rel=1e-8)
    assert sortino(r) == pytest.approx(9.16515139, rel=1e-8)
    # peak 110, trough 99
    assert max_drawdown(EQUITY, 100.0) == pytest.approx(-0.1)
    # the initial capital is the first peak: a first-day loss is a drawdown
    assert max_drawdown(pd.Series([95.0, 97.0], index=IDX[:2]), 100.0) == pytest.approx(-0.05)
    m = equity_metrics(EQUITY, 100.0)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["cagr"] == pytest.approx(1.089 ** (252 / 3) - 1)
    assert m["volatility"] == pytest.approx(math.sqrt(1 / 75) * math.sqrt(252))


def test_degenerate_series() -> None:
    assert math.isnan(sharpe(pd.Series([0.01])))
    assert math.isnan(sharpe(pd.Series([0.01, 0.01])))  # no variation
    assert sortino(pd.Series([0.01, 0.02])) == math.inf  # no losing day
    assert profit_factor(pd.Series([10.0, 5.0])) == math.inf
    assert math.isnan(profit_factor(pd.Series([], dtype=float)))


def test_trade_metrics_by_hand() -> None:
    trades = pd.DataFrame(
        {
            "net_pnl": [100.0, -50.0, 30.0, -10.0],
            "net_return": [0.04, -0.02, 0.01, -0.005],
            "commission": [1.0, 1.0, 1.0, 1.0],
            "slippage_cost": [0.5, 0.5, 0.5, 0.5],
            "bars_held": [1, 2, 3, 4],
            "sector": ["Energy", "Energy", "Utilities", "Utilities"],
        }
    )
    m = trade_metrics(trades)
    assert m["trades"] == 4
    assert m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(130 / 60)
    assert m["avg_return"] == pytest.approx((0.04 - 0.02 + 0.01 - 0.005) / 4)
    assert m["avg_win"] == pytest.approx(0.025)
    assert m["net_pnl"] == 70.0
    g = by_group(trades, "sector").set_index("sector")
    assert g.loc["Energy", "profit_factor"] == pytest.approx(2.0)
    assert g.loc["Utilities", "profit_factor"] == pytest.approx(3.0)
    assert g.loc["Utilities", "avg_return"] == pytest.approx(0.0025)


def test_exposure_and_turnover_by_hand() -> None:
    daily = pd.DataFrame(
        {
            "held_value": [0.0, 50.0, 100.0, 0.0],
            "equity": [100.0, 100.0, 100.0, 100.0],
            "traded_notional": [0.0, 50.0, 50.0, 100.0],
        }
    )
    m = exposure_metrics(daily, periods=252)
    assert m["exposure"] == 0.5
    assert m["avg_gross_exposure"] == pytest.approx((0 + 0.5 + 1 + 0) / 4)
    assert m["turnover"] == pytest.approx(2.0)
    assert m["annual_turnover"] == pytest.approx(2.0 * 252 / 4)


def test_spy_buy_and_hold_by_hand() -> None:
    """Buy at the first open 400 + 10 bps = 400.4 with $0.01/share + 1 bp: one share costs
    400.4 × 1.0001 + 0.01 = 400.45004, so ⌊100 000 / 400.45004⌋ = 249 shares; commission
    2.49 + 0.0001 × 249 × 400.4 = 12.45996; cash left 100 000 − 99 699.6 − 12.45996."""
    cfg = BacktestSettings(slippage_bps=10, commission_per_share=0.01, commission_bps=1)
    market = pd.DataFrame(
        {
            "symbol": ["SPY", "SPY", "SPY", "QQQ"],
            "date": ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-02"],
            "open": [400.0, 401.0, 398.0, 1.0],
            "close": [402.0, 399.0, 404.0, 1.0],
        }
    )
    bh = buy_and_hold(market, IDX, cfg)
    cash = 100_000 - 249 * 400.4 - 12.45996
    assert bh["cash"].iloc[0] == pytest.approx(cash, abs=1e-9)
    assert bh["equity"].tolist() == pytest.approx([cash + 249 * c for c in (402, 399, 404)])
    assert bh["commission"].sum() == pytest.approx(12.45996)
    # adj_close rebases open and close: the dividend-inclusive return
    adj = market.assign(adj_close=market["close"] * 0.5)
    bh_adj = buy_and_hold(adj, IDX, BacktestSettings(slippage_bps=0, commission_bps=0))
    assert bh_adj["long_value"].iloc[-1] / bh_adj["long_value"].iloc[0] == pytest.approx(404 / 402)
    assert bh_adj["long_value"].iloc[0] == pytest.approx(math.floor(100_000 / 200) * 201)


def test_summary_is_json_safe_and_has_the_benchmark_and_groups() -> None:
    days = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    px = prices(days, {"AAA": flat(100.0, 4), "BBB": flat(50.0, 4)})
    sig = pd.DataFrame(
        [
            {"date": days[0], "symbol": "AAA", "side": "BUY", "stop_distance": 2.0,
             "sector": "Energy"},
            {"date": days[0], "symbol": "BBB", "side": "BUY", "stop_distance": 1.0,
             "sector": "Utilities"},
        ]
    )  # fmt: skip
    regimes = pd.Series(["BULL", "BULL", "BEAR", "BEAR"], index=pd.to_datetime(days))
    r = run_backtest(sig, px, AtrExitPolicy(), regimes=regimes)
    spy = pd.DataFrame({"symbol": "SPY", "date": days, "open": 400.0, "close": 401.0})
    s = summarize(r, spy)
    json.dumps(s, allow_nan=False)  # NaN/∞ became null
    assert s["benchmark"]["symbol"] == "SPY"
    assert s["strategy"]["trades"] == 2
    assert {g["sector"] for g in s["by_sector"]} == {"Energy", "Utilities"}
    assert [g["regime"] for g in s["by_regime"]["trades"]] == ["BULL"]
    assert [(g["regime"], g["days"]) for g in s["by_regime"]["days"]] == [
        ("BEAR", 2),
        ("BULL", 2),
    ]
    assert s["settings"]["initial_cash"] == 100_000
    assert np.isclose(s["strategy"]["final_equity"], r.final_equity)


def test_skip_kinds_drop_the_symbol_and_prices() -> None:
    from turbomode.backtest.performance import skip_kind

    detail = "exit rules: AES: open 14.8618 outside the entry range 13.9654..14.8293; entry skipped"
    assert skip_kind(detail) == "exit rules: open … outside the entry range …; entry skipped"
    assert skip_kind("max positions held") == "max positions held"
    assert skip_kind("portfolio: size 0.31% below the 2.00% minimum") == (
        "portfolio: size …% below the …% minimum"
    )
    correlated = "portfolio: correlated above 0.7 with 3 held (AEE, WY, XEL): max 3 in a group"
    assert (
        skip_kind(correlated) == "portfolio: correlated above … with … held (…): max … in a group"
    )
    assert skip_kind("exit rules: tier Avoid is never traded") == (
        "exit rules: tier Avoid is never traded"
    )
