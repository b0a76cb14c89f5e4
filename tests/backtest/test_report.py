"""The HTML report, JSON summary and trades CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.backtest.test_engine import _two_trade_run
from turbomode.backtest import write_report


def test_report_files_hold_the_tables_and_charts(tmp_path: Path) -> None:
    r = _two_trade_run()
    days = [d.date().isoformat() for d in r.daily.index]
    spy = pd.DataFrame(
        {
            "symbol": "SPY",
            "date": days,
            "open": [400.0, 401, 402, 403],
            "close": [401.0, 402, 399, 404],
        }
    )
    paths = write_report(r, tmp_path / "bt", spy, title="Two trades")
    page = paths.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2  # equity and drawdown
    assert "SPY buy &amp; hold" in page
    for text in ("Two trades", "Headline", "Sharpe (rf = 0)", "By sector", "By regime",
                 "Industrials", "Energy", "AAA", "BBB", "target", "stop", "Settings",
                 "slippage_bps"):  # fmt: skip
        assert text in page, text
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN, no fetches
    summary = json.loads(paths.summary.read_text())
    assert summary["strategy"]["trades"] == 2
    assert summary["benchmark"]["final_equity"] > 0
    trades = pd.read_csv(paths.trades)
    assert list(trades["symbol"]) == ["AAA", "BBB"]
    assert trades["net_pnl"].tolist() == pytest.approx(r.trades["net_pnl"].tolist())
    assert sorted(p.name for p in (tmp_path / "bt").iterdir()) == [
        "report.html",
        "summary.json",
        "trades.csv",
    ]  # no temporary files left behind


def test_report_without_benchmark_or_trades(tmp_path: Path) -> None:
    r = _two_trade_run()
    r.trades = r.trades.iloc[0:0]
    paths = write_report(r, tmp_path)
    page = paths.html.read_text(encoding="utf-8")
    assert "buy &amp; hold" not in page
    assert "<p class='none'>none</p>" in page
    assert json.loads(paths.summary.read_text())["benchmark"] is None


def test_books_table_puts_the_gated_book_beside_the_ungated_one() -> None:
    from turbomode.backtest.report import books_markdown

    def book(ret: float, trades: int) -> dict[str, Any]:
        return {
            "strategy": {"total_return": ret, "cagr": ret / 2, "sharpe": 0.5, "sortino": 0.7,
                         "max_drawdown": -0.1, "trades": trades, "win_rate": 0.5,
                         "avg_return": 0.001, "profit_factor": 1.1, "avg_gross_exposure": 0.9},
            "benchmark": {"symbol": "SPY", "total_return": 0.3, "cagr": 0.12, "sharpe": 0.8,
                          "sortino": 1.2, "max_drawdown": -0.25},
        }  # fmt: skip

    table = books_markdown({"atr": book(-0.01, 1987), "atr_gated": book(0.0, 0)}).splitlines()
    assert table[2] == (
        "| atr rules, ungated | −1.0% | −0.5% | 0.50 | 0.70 | −10.0% | 1,987 | 50.0% | +0.10% "
        "| 1.10 | 90% |"
    )
    assert table[3].startswith("| atr rules, gated | +0.0% | +0.0% |") and "| 0 |" in table[3]
    assert table[4] == (
        "| SPY buy-and-hold | +30.0% | +12.0% | 0.80 | 1.20 | −25.0% | — | — | — | — | — |"
    )
