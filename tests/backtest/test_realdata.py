"""A short run on real S&P 500 history (../shared/data): 13 symbols, mid-2019 to 2020.

The signals are a plain short-term reversal (the three worst one-day returns, each from data up
to its own close), not a model: the point is that the engine runs on real bars with the
point-in-time universe, SPY beside it, and keeps its invariants.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.backtest import BacktestSettings, make_policy, run_backtest, write_report
from turbomode.data.universe import Universe

pytestmark = pytest.mark.realdata

SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "JNJ", "HD", "KO", "DPZ", "DXCM", "NOW", "CDW", "LVS",
           "CARR"]  # fmt: skip
START, END = "2019-06-03", "2020-12-31"


def _signals(px: pd.DataFrame) -> pd.DataFrame:
    px = px.sort_values(["symbol", "date"])
    g = px.groupby("symbol")
    px["ret"] = g["close"].pct_change()
    px["range"] = px["high"] - px["low"]
    px["atr"] = px.groupby("symbol")["range"].transform(lambda s: s.rolling(14).mean())
    px = px.dropna(subset=["ret", "atr"])
    worst = px.sort_values(["date", "ret"]).groupby("date").head(3)
    return pd.DataFrame(
        {
            "date": worst["date"],
            "symbol": worst["symbol"],
            "side": "BUY",
            "strength": -worst["ret"] * 100,
            "stop_distance": 2.0 * worst["atr"],
            "horizon": 5,
            "tier": "Average",
        }
    )


@pytest.mark.parametrize("rules", ["atr", "smart"])
def test_real_history_run(shared_data_dir: Path, tmp_path: Path, rules: str) -> None:
    filters = [("symbol", "in", SYMBOLS), ("date", ">=", START), ("date", "<=", END)]
    px = pd.read_parquet(shared_data_dir / "prices.parquet", filters=filters)
    px["date"] = pd.to_datetime(px["date"])
    market = pd.read_parquet(
        shared_data_dir / "market.parquet",
        filters=[("symbol", "==", "SPY"), ("date", ">=", START), ("date", "<=", END)],
    )
    universe = Universe.load(
        shared_data_dir / "constituents.csv", shared_data_dir / "sp500_membership_intervals.csv"
    )
    signals = _signals(px)
    cfg = BacktestSettings(rules=rules, max_positions=5, position_fraction=0.2)
    r = run_backtest(signals, px, make_policy(rules), cfg, universe=universe)

    assert len(r.trades) > 30
    assert (r.trades["entry_date"] > r.trades["signal_date"]).all()
    calendar = [d.date() for d in r.daily.index]
    nxt = {d: calendar[i + 1] for i, d in enumerate(calendar[:-1])}
    assert all(
        nxt[s] == e for s, e in zip(r.trades["signal_date"], r.trades["entry_date"], strict=True)
    )
    # DPZ joined the index on 2020-05-12: no DPZ trade from a signal before that
    dpz = r.trades[r.trades["symbol"] == "DPZ"]
    assert (pd.to_datetime(dpz["signal_date"]) >= "2020-05-12").all()
    early = r.skipped[(r.skipped["symbol"] == "DPZ") & (r.skipped["date"] < "2020-05-12")]
    assert len(early) and (early["reason"] == "not in the index universe on the signal date").all()
    d = r.daily
    assert np.allclose(d["cash"] + d["long_value"] - d["short_value"], d["equity"])
    assert r.final_equity == pytest.approx(cfg.initial_cash + r.trades["net_pnl"].sum(), rel=1e-9)
    assert (d["n_positions"] <= 5).all()

    paths = write_report(r, tmp_path, market)
    summary = json.loads(paths.summary.read_text())
    bench = summary["benchmark"]
    # SPY mid-2019 → 2020, dividends included: up, with the March 2020 crash in between
    assert bench["total_return"] > 0.15
    assert bench["max_drawdown"] < -0.30
    assert summary["strategy"]["commission"] > 0
    assert "<svg" in paths.html.read_text()
