"""The HTML report, JSON summary and trades CSV."""

from __future__ import annotations

import json
from pathlib import Path

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
