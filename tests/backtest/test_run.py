"""``turbomode backtest`` end to end on the synthetic market: walk-forward signals through both
rule sets with reports beside SPY; the Smart rule set's regime thresholds; the CLI adapters."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from turbomode.backtest.run import run_backtests, signal_outcomes, smart_candidates
from turbomode.backtest.walkforward import walk_forward_signals
from turbomode.cli.main import app
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData

START, END = date(2023, 1, 1), date(2023, 6, 30)
runner = CliRunner()


def test_smart_candidates_take_buys_above_the_days_regime_threshold() -> None:
    days = pd.to_datetime(["2023-01-03", "2023-01-04", "2023-01-05"])
    regimes = pd.DataFrame({"regime": ["BULL", "VOLATILE", None]}, index=days)
    signals = pd.DataFrame(
        {
            "date": days[[0, 0, 0, 1, 1, 2, 2]],
            "symbol": ["A", "B", "C", "D", "E", "F", "G"],
            "side": ["BUY", "BUY", "SELL", "BUY", "BUY", "BUY", "BUY"],
            "strength": [64.9, 65.0, 90.0, 44.9, 45.0, 59.9, 60.0],
        }
    )
    got = smart_candidates(signals, regimes, Settings())
    # BULL needs 65, VOLATILE 45, no regime the base 60; SELLs never (long only).
    assert got["symbol"].tolist() == ["B", "E", "G"]
    assert got["regime"].tolist()[:2] == ["BULL", "VOLATILE"] and pd.isna(got["regime"].iloc[2])
    assert set(got["tier"]) == {"Average"}


@pytest.mark.slow
def test_both_rule_sets_end_to_end(world: tuple[Settings, MarketData], tmp_path: Path) -> None:
    base, md = world
    # Entry thresholds at 0: the small synthetic models' probabilities then give the Smart rules
    # enough candidates to meet every portfolio limit.
    regime = base.regime.model_copy(
        update={"base_threshold": 0.0, "thresholds": dict.fromkeys(base.regime.thresholds, 0.0)}
    )
    settings = base.model_copy(update={"regime": regime})
    rules = tmp_path / "modifiers.yaml"
    rules.write_text(
        "- {name: fell_yesterday, kind: boost, value: 1.1,\n"
        "   when: {feature: log_ret_1, op: '<', value: 0}}\n"
        "- {name: typo, kind: penalty, value: 0.9, when: {feature: log_ret_l, op: '<', value: 0}}\n"
    )
    run = run_backtests(
        settings, md, START, END, tmp_path / "out", horizon=1, period="quarter", train_days=250,
        modifiers=rules, gate_days=60,
    )  # fmt: skip
    signals = pd.read_parquet(tmp_path / "out" / "signals.parquet")
    gated = pd.read_parquet(tmp_path / "out" / "gated_signals.parquet")
    # Each rule set trades the ungated book and, beside it, the gated one: the signals of the
    # sectors whose models the gate accepted (or an earlier accepted model) in each period.
    assert set(run.reports) == {"atr", "atr_gated", "smart", "smart_gated"}
    assert run.signals == len(signals) and run.gated_signals == len(gated)
    for info in run.periods:
        trading = {k for k, v in info["gate"].items() if v["trades"] is not None}
        assert set(gated.loc[gated["period"] == info["period"], "sector"]) <= trading
    books = (tmp_path / "out" / "books.md").read_text()
    for row in ("atr rules, ungated", "atr rules, gated", "smart rules, gated", "SPY"):
        assert f"| {row}" in books
    assert len(run.results["atr_gated"].trades) <= len(gated)
    for rules, path in run.reports.items():
        html = Path(path).read_text()
        assert "SPY" in html and "<svg" in html, rules
        summary = run.summaries[rules]
        assert summary["benchmark"]["total_return"] is not None
        # Strategy and SPY over the same trading days of [START, END], not all the prices.
        assert (
            summary["period"]["start"] >= "2023-01-02" and summary["period"]["end"] <= "2023-06-30"
        )
    atr, smart = run.results["atr"].trades, run.results["smart"].trades
    assert len(atr) > 0 and {"long", "short"} <= set(atr["side"])
    assert len(smart) > 0 and set(smart["side"]) == {"long"}
    # Every Smart trade's signal reached its day's regime threshold; at most 6 held at once.
    held = run.results["smart"].daily["n_positions"]
    assert held.max() <= settings.smart.max_positions
    # The Smart portfolio constraints screened the entries: never 3 open in one sector.
    assert run.results["smart"].skipped["reason"].str.startswith("portfolio: ").any()
    for day in run.results["smart"].daily.index:
        d = day.date()
        open_then = smart[
            (pd.to_datetime(smart["entry_date"]).dt.date <= d)
            & (pd.to_datetime(smart["exit_date"]).dt.date > d)
        ]
        assert (open_then.groupby("sector").size() <= 2).all(), d
    # The modifier's evidence is measured on the backtest's own trades: recount it here from
    # each trade's log return on its signal date.
    measured = json.loads((tmp_path / "out" / "atr" / "modifiers.json").read_text())
    (rule,) = measured["rules"]
    assert rule["name"] == "fell_yesterday" and len(measured["errors"]) == 1
    assert "log_ret_l" in measured["errors"][0]
    feats = md.prices.sort_values(["symbol", "date"]).assign(
        log_ret_1=lambda f: np.log(f["close"]).groupby(f["symbol"]).diff()
    )
    keyed = atr.assign(signal_date=pd.to_datetime(atr["signal_date"])).merge(
        feats[["symbol", "date", "log_ret_1"]].rename(columns={"date": "signal_date"}),
        on=["symbol", "signal_date"],
    )
    fell = keyed[keyed["log_ret_1"] < 0]
    assert rule["evidence"]["n"] == len(fell) > 0
    assert rule["evidence"]["wins"] == int((fell["net_return"] > 0).sum())
    assert rule["evidence"]["base_n"] == len(atr)
    written = json.loads((tmp_path / "out" / "run.json").read_text())
    assert written["signals"] == len(signals) and written["gated_signals"] == len(gated)
    assert written["gate_days"] == 60 and "gate" in written["periods"][0]


@pytest.mark.slow
def test_cli_backtest_with_a_signals_file(
    world: tuple[Settings, MarketData], tmp_path: Path
) -> None:
    settings, md = world
    wf = walk_forward_signals(
        settings, md, START, END, tmp_path / "wf", horizon=1, period="quarter", train_days=250
    )
    path = tmp_path / "signals.csv"
    wf.signals.to_csv(path, index=False)
    data = str(settings.data.data_dir)
    args = ["--data-dir", data, "backtest", "--start", "2023-01-01", "--end", "2023-06-30"]
    result = runner.invoke(
        app, [*args, "--signals", str(path), "--rules", "atr", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert (
        "Backtest beside SPY" in result.output and (tmp_path / "r" / "atr" / "report.html").exists()
    )
    bad = runner.invoke(app, [*args, "--signals", str(path), "--rules", "nope"])
    assert bad.exit_code == 2 and "unknown rule set(s) ['nope']" in bad.output
    backwards = ["--data-dir", data, "backtest", "--start", "2023-06-30", "--end", "2023-01-01"]
    assert "is before --start" in runner.invoke(app, backwards).output


def test_cli_regime(world: tuple[Settings, MarketData]) -> None:
    settings, _ = world
    data = str(settings.data.data_dir)
    result = runner.invoke(app, ["--data-dir", data, "regime", "--date", "2023-03-15"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("2023-03-15: ") and "entry threshold" in result.output
    bad = runner.invoke(app, ["--data-dir", data, "regime", "--date", "15/03/2023"])
    assert bad.exit_code == 2 and "--date must be a date YYYY-MM-DD" in bad.output


def test_signal_outcomes_enter_next_open_and_exit_h_closes_later() -> None:
    days = pd.bdate_range("2023-01-02", periods=6)
    prices = pd.DataFrame(
        {
            "symbol": "A",
            "date": days,
            "open": [10.0, 11.0, 12.0, 13.0, 14.0, 15.0],
            "close": [10.5, 11.5, 12.5, 13.5, 14.5, 15.5],
        }
    )
    signals = pd.DataFrame(
        {"date": days[[0, 1, 3, 4]], "symbol": "A", "side": ["BUY", "SELL", "buy", "BUY"]}
    )
    got = signal_outcomes(signals, prices, horizon=2)
    # day 0: in at day 1's open 11, out at day 2's close 12.5; day 3: 14 → 15.5; the SELL is
    # not a BUY outcome, and day 4's hold runs past the data
    assert got.to_dict("records") == [
        {
            "symbol": "A",
            "signal_date": days[0],
            "exit_date": days[2],
            "return": pytest.approx(12.5 / 11.0 - 1),
        },
        {
            "symbol": "A",
            "signal_date": days[3],
            "exit_date": days[5],
            "return": pytest.approx(15.5 / 14.0 - 1),
        },
    ]


def test_smart_candidates_measure_tiers_and_kelly_point_in_time() -> None:
    """A: 12 outcomes closed in January, 9 at +3 % and 3 at −1 % → win rate 0.75, expectancy
    +2 %, payoff 3 → Elite; full Kelly 0.75 − 0.25 / 3 = 2/3, half Kelly 1/3. B has none: its
    tier is Average and its Kelly inputs come from all outcomes (A's)."""
    jan = pd.bdate_range("2023-01-02", periods=12)
    outcomes = pd.DataFrame(
        {
            "symbol": "A",
            "signal_date": jan - pd.Timedelta(days=1),
            "exit_date": jan,
            "return": [0.03] * 9 + [-0.01] * 3,
        }
    )
    days = pd.to_datetime(["2023-01-20", "2023-02-01", "2023-02-02"])
    regimes = pd.DataFrame({"regime": ["VOLATILE", "VOLATILE", "BULL"]}, index=days)
    signals = pd.DataFrame(
        {
            "date": days[[0, 1, 1, 2]],
            "symbol": ["A", "A", "B", "B"],
            "side": "BUY",
            "strength": [50.0, 50.0, 50.0, 64.0],
        }
    )
    got = smart_candidates(signals, regimes, Settings(), outcomes).set_index(["symbol", "date"])
    # January: the ranking on Jan 1 knows no outcome → Average, no Kelly evidence → size 0.
    jan_a = got.loc[("A", days[0])]
    assert jan_a["tier"] == "Average" and jan_a["size"] == 0.0 and jan_a["strength"] == 50.0
    # February, VOLATILE (threshold 45, multiplier 1.3): A is Elite (× 1.1 → 55, cap 15 %),
    # 1/3 × 0.55 × 1.3 = 0.238 → 0.15; B is Average (50, cap 7.5 %), 1/3 × 0.5 × 1.3 → 0.075.
    feb_a, feb_b = got.loc[("A", days[1])], got.loc[("B", days[1])]
    assert (feb_a["tier"], feb_a["strength"], feb_a["size"]) == ("Elite", pytest.approx(55.0), 0.15)
    assert (feb_b["tier"], feb_b["size"], feb_b["kelly_source"]) == ("Average", 0.075, "all")
    # BULL needs 65: B's 64 stays out.
    assert ("B", days[2]) not in got.index


def test_cli_headline_puts_each_gated_book_beside_its_rule_set() -> None:
    from turbomode.cli.backtest import _headline

    summary = {"strategy": {"total_return": 0.01}, "benchmark": {"total_return": 0.2}}
    table = _headline({"atr": summary, "atr_gated": summary, "smart": summary})
    headers = [str(c.header) for c in table.columns]
    assert headers == ["metric", "atr rules", "atr rules, gated", "smart rules", "SPY"]
