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

from turbomode.backtest.run import run_backtests
from turbomode.backtest.walkforward import walk_forward_signals
from turbomode.cli.main import app
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData

START, END = date(2023, 1, 1), date(2023, 6, 30)
runner = CliRunner()


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
    wf = walk_forward_signals(settings, md, START, END, horizon=1, period="quarter", train_days=250)
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


def test_cli_headline_puts_each_gated_book_beside_its_rule_set() -> None:
    from turbomode.cli.backtest import _headline

    summary = {"strategy": {"total_return": 0.01}, "benchmark": {"total_return": 0.2}}
    table = _headline({"atr": summary, "atr_gated": summary, "smart": summary})
    headers = [str(c.header) for c in table.columns]
    assert headers == ["metric", "atr rules", "atr rules, gated", "smart rules", "SPY"]
