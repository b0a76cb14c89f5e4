"""The Smart Scanner's jobs end to end on a real SQLite signals store and a small synthetic
clean store: exact monthly tiers (point in time, BUY outcomes of one horizon), byte-identical
re-runs, quarterly curation, Kelly fall-backs, and the smart scan's JSON/CSV with every skip
reason — through the library and through the CLI commands the Helm chart runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

from turbomode.cli.smart import curate_command, ranking_app, smart_scan_command
from turbomode.config import Settings, Tier
from turbomode.data.earnings import RULE_OFF_NO_CALENDAR
from turbomode.data.ingest import ingest, load_clean
from turbomode.records.signals import Signal
from turbomode.signals import rules as signal_rules
from turbomode.signals.scan import ScanResult, write_outputs
from turbomode.smart.run import (
    SmartRunError,
    curate,
    run_smart_scan,
    update_ranking,
)
from turbomode.smart.state import load_tiers, load_universe, state_dir
from turbomode.smart.types import read_signals_csv, read_signals_json
from turbomode.store import SignalStore

CHART_VALUES = Path(__file__).parents[2] / "charts" / "turbomode" / "values.yaml"
D = date.fromisoformat


# --- helpers -------------------------------------------------------------------------------


def make_settings(tmp: Path, **smart: Any) -> Settings:
    return Settings(
        data={"data_dir": tmp},
        stores={"signals_url": f"sqlite:///{tmp / 'signals.db'}"},
        synthetic={"n_symbols": 11, "n_days": 300},
        smart={"tier_min_trades": 4, **smart},
    )


def add_outcomes(store: SignalStore, rows: list[tuple[Any, ...]]) -> None:
    """Resolved outcomes through the store's API: (symbol, signal_date, exit_date, side_return)
    with optional side (BUY) and horizon (5)."""
    full = [(*r, "BUY", 5)[:6] if len(r) == 4 else (*r, 5)[:6] for r in rows]
    store.register_outcomes(
        [
            {
                "symbol": sym,
                "sector": "Information Technology",
                "cap_class": "large",
                "horizon": h,
                "side": side,
                "signal_date": D(sd),
                "confidence": 0.7,
                "close": 100.0,
                "stop": 95.0 if side == "BUY" else 105.0,
                "target": 105.0 if side == "BUY" else 95.0,
                "model_version": "v1",
                "hold_days": h,
                "rule": "label",
            }
            for sym, sd, _ed, _ret, side, h in full
        ]
    )
    pending = store.outcomes("pending")
    ids = {
        (s, int(h), pd.Timestamp(d).date()): int(i)
        for s, h, d, i in zip(
            pending["symbol"],
            pending["horizon"],
            pending["signal_date"],
            pending["id"],
            strict=True,
        )
    }
    resolved = [
        {
            "id": ids[(sym, h, D(sd))],
            "symbol": sym,
            "horizon": h,
            "signal_date": D(sd),
            "entry_date": D(sd) + timedelta(days=1),
            "entry_price": 100.0,
            "exit_date": D(ed),
            "exit_price": 100.0 * (1 + ret),
            "realized_return": ret if side == "BUY" else -ret,
            "side_return": ret,
            "label": 2 if ret > 0 else 0,
            "correct": ret > 0,
        }
        for sym, sd, ed, ret, side, h in full
        if (sym, h, D(sd)) in ids
    ]
    assert store.record_outcomes(resolved, {}) == len(resolved)


def series(sym: str, first: str, returns: list[float], **kw: Any) -> list[tuple[Any, ...]]:
    """One trade per week from ``first``: signal on day 0, exit 7 days later."""
    start = D(first)
    out: list[tuple[Any, ...]] = []
    for i, r in enumerate(returns):
        sd = start + timedelta(days=7 * i)
        out.append((sym, sd.isoformat(), (sd + timedelta(days=7)).isoformat(), r))
    if kw:
        out = [(*t, kw.get("side", "BUY"), kw.get("horizon", 5)) for t in out]
    return out


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[SignalStore]:
    s = SignalStore(settings.stores.signals_url)
    s.migrate()
    yield s
    s.dispose()


# --- ranking -------------------------------------------------------------------------------

AS_OF = D("2024-06-15")  # ranks on 2024-06-01


def ranking_history(store: SignalStore) -> None:
    add_outcomes(
        store,
        [
            *series("AAA", "2024-03-01", [0.02] * 5),  # win 1.0, +2.0 %  → Elite
            *series("BBB", "2024-03-01", [0.02, 0.02, 0.02, -0.015, -0.015]),  # .6, +.6 % → Strong
            *series("CCC", "2024-03-01", [0.01, -0.01, -0.01, -0.01, -0.01]),  # .2, −.6 % → Avoid
            *series("DDD", "2024-03-01", [0.05, 0.05, 0.05]),  # 3 < 4 trades → Average
            # CCC's later winners close on/after the ranking date: not yet known on June 1st
            *series("CCC", "2024-05-25", [0.05] * 5),
            # CCC's winning SELL calls and 1-day BUYs say nothing about its 5-day longs
            *series("CCC", "2024-03-02", [0.04] * 5, side="SELL"),
            *series("CCC", "2024-03-03", [0.04] * 5, horizon=1),
            # more than a year before June 1st: outside the 365-day window
            *series("EEE", "2023-01-02", [-0.03] * 6),
        ],
    )


def test_ranking_exact_tiers_point_in_time(settings: Settings, store: SignalStore) -> None:
    ranking_history(store)
    result = update_ranking(settings, AS_OF, store=store)
    assert result.as_of == D("2024-06-01")
    tiers = {s: r.tier for s, r in result.ranks.items()}
    assert tiers == {
        "AAA": Tier.ELITE,
        "BBB": Tier.STRONG,
        "CCC": Tier.AVOID,
        "DDD": Tier.AVERAGE,
    }
    ccc = result.ranks["CCC"]
    assert (ccc.n, ccc.win_rate) == (5, pytest.approx(0.2))
    assert ccc.expectancy == pytest.approx(-0.006)
    assert result.ranks["BBB"].payoff == pytest.approx(0.02 / 0.015)
    assert result.counts == {"Elite": 1, "Strong": 1, "Average": 1, "Weak": 0, "Avoid": 1}
    assert result.path == state_dir(settings) / "tiers_2024-06.json"
    assert load_tiers(settings, AS_OF).tiers == tiers

    july = update_ranking(settings, D("2024-07-02"), store=store)  # now the winners count
    assert july.ranks["CCC"].n == 10 and july.ranks["CCC"].tier is not Tier.AVOID


def test_ranking_rerun_same_month_is_byte_identical(settings: Settings, store: SignalStore) -> None:
    ranking_history(store)
    first = update_ranking(settings, AS_OF, store=store).path.read_bytes()
    again = update_ranking(settings, D("2024-06-29"), store=store)
    assert again.path.read_bytes() == first
    assert (state_dir(settings) / "tiers_latest.json").read_bytes() == first


def test_unknown_horizon_is_a_clear_error(settings: Settings, store: SignalStore) -> None:
    with pytest.raises(SmartRunError, match=r"unknown horizon 3: the models are trained on"):
        update_ranking(settings, AS_OF, horizon=3, store=store)
    with pytest.raises(SmartRunError, match="unknown horizon 4"):
        run_smart_scan(settings, horizon=4)
    # Without one, the horizon is the settings' default, wherever that points.
    backtest = settings.backtest.model_copy(update={"default_horizon": 3})
    with pytest.raises(SmartRunError, match="unknown horizon 3"):
        curate(settings.model_copy(update={"backtest": backtest}), AS_OF, store=store)


# --- curation ------------------------------------------------------------------------------


def test_curation_drops_only_the_persistently_avoid(settings: Settings, store: SignalStore) -> None:
    add_outcomes(
        store,
        [
            *series("BAD", "2024-01-08", [-0.02] * 5),  # Avoid on Apr 1st and on Jul 1st
            *series("DIP", "2024-04-08", [-0.02] * 5),  # Avoid on Jul 1st only: one bad stretch
            *series("AAA", "2024-01-08", [0.02] * 5),
        ],
    )
    universe = ["AAA", "BAD", "DIP", "NEW"]
    result = curate(settings, D("2024-08-20"), store=store, symbols=universe)
    assert result.quarter == "2024Q3"
    assert result.curation.kept == ("AAA", "DIP", "NEW")
    assert list(result.curation.dropped) == ["BAD"]
    assert "2024-04-01, 2024-07-01" in result.curation.dropped["BAD"]
    state = load_universe(settings, D("2024-09-01"))
    assert not state.allows("BAD") and state.allows("DIP") and state.allows("NEW")
    assert result.path.name == "universe_2024Q3.json"


# --- the smart scan ------------------------------------------------------------------------


def _signal(md: Any, sym: str, day: date, p_buy: float, side: str = "BUY", h: int = 5) -> Signal:
    members = md.universe.members.set_index("symbol")
    bars = md.prices[md.prices["symbol"] == sym].set_index("date")
    close = float(bars["close"].asof(pd.Timestamp(day)))
    p_sell = round(0.9 - p_buy, 6) if side == "BUY" else p_buy
    pb = p_buy if side == "BUY" else 0.05
    return Signal(
        symbol=sym,
        sector=str(members.loc[sym, "sector"]),
        cap_class=str(members.loc[sym, "cap_class"]),
        horizon=h,
        side=side,  # type: ignore[arg-type]
        signal_date=day,
        p_buy=pb,
        p_hold=round(1 - pb - max(p_sell, 0.0), 6),
        p_sell=max(p_sell, 0.0),
        confidence=p_buy,
        close=close,
        atr=1.0,
        entry_low=close * 0.99,
        entry_high=close * 1.01,
        stop=close * 0.95 if side == "BUY" else close * 1.05,
        target=close * 1.05 if side == "BUY" else close * 0.95,
        stop_distance=0.05,
        model_version="v1",
    )


def write_scan(settings: Settings, signals: list[Signal], day: date) -> None:
    """latest_scan.json and scan_<date>.json written by the nightly scan's own writer."""
    sel = signal_rules.SelectionResult(
        active=signals, added=signals, replaced=[], kept=[], dropped=[]
    )
    result = ScanResult(
        scan_date=day,
        run_id=1,
        n_symbols=11,
        scores=pd.DataFrame(),
        fresh=signals,
        active=signals,
        selection=sel,
        failures={},
        missing_models=["Energy/1d"],
        positions={},
        events=[],
        sectors=pd.DataFrame(),
        thresholds={"buy": 0.4, "sell": 0.4},
    )
    write_outputs(result, settings)


@pytest.fixture
def night(settings: Settings, store: SignalStore) -> dict[str, Any]:
    """A clean store, a ranking, a curation and tonight's scan: the smart scan's inputs."""
    ingest(settings)
    md = load_clean(settings)
    day = pd.Timestamp(md.prices["date"].max()).date()
    prev = pd.Timestamp(sorted(md.prices["date"].unique())[-2]).date()
    add_outcomes(
        store,
        [
            *series("IT01", "2018-12-03", [0.03, 0.03, 0.03, 0.03, 0.03, -0.02]),  # Elite
            *series("ST01", "2018-12-03", [0.015, 0.015, -0.01, -0.01]),  # Average, b 1.5
            *series("EN01", "2018-06-04", [-0.02] * 5),  # Avoid two quarters running
        ],
    )
    update_ranking(settings, day, store=store)
    curate(settings, day, store=store)
    signals = [
        _signal(md, "IT01", day, 0.80),  # Elite: taken, capped at 15 %
        _signal(md, "FN01", day, 0.75),  # Average (no trades): Kelly from the Average pool
        _signal(md, "EN01", day, 0.70),  # curated out
        _signal(md, "HC01", day, 0.50),  # below the entry threshold
        _signal(md, "UT01", day, 0.78),  # earnings tomorrow (with a calendar)
        _signal(md, "IN01", day, 0.72, h=1),  # another horizon
        _signal(md, "MT01", day, 0.70, side="SELL"),  # not a BUY
        _signal(md, "CD01", prev, 0.90),  # yesterday's signal, still active: not tonight's
    ]
    write_scan(settings, signals, day)
    earnings = settings.data.data_dir / "earnings.csv"
    earnings.write_text(f"symbol,date\nUT01,{day + timedelta(days=1)}\nIT01,2018-01-05\n")
    return {"day": day, "md": md, "earnings": earnings}


def test_smart_scan_end_to_end(settings: Settings, store: SignalStore, night: dict) -> None:
    day, md = night["day"], night["md"]
    result = run_smart_scan(settings, equity=100_000.0, earnings_csv=night["earnings"])
    by = {s.symbol: s for s in result.signals}
    assert set(by) == {"IT01", "FN01", "EN01", "HC01", "UT01"}
    assert result.scan_date == day and result.horizon == 5
    # 300 synthetic days < the HMM's 504-bar warm-up: sized as CHOPPY, base threshold 60
    assert result.regime == "CHOPPY" and result.entry_threshold == 60.0
    assert any(n.startswith("no regime (warm-up") for n in result.notes)
    assert "no modifier rules configured: no modifiers applied" in result.notes

    it = by["IT01"]
    assert it.taken and it.tier is Tier.ELITE and it.strength_raw == pytest.approx(80.0)
    assert it.strength_adjusted == pytest.approx(88.0)  # × Elite 1.1
    assert it.size == pytest.approx(0.15)  # Kelly 0.722 × ½ × 0.88 = 0.318 → Elite cap
    close = float(
        md.prices.query("symbol == 'IT01' and date == @pd.Timestamp(@day)")["close"].iloc[0]
    )
    assert it.price == pytest.approx(close) and it.shares == int(15_000 // close)
    assert it.stop == pytest.approx(close * 0.97) and it.max_hold_days == 5
    assert result.kelly["IT01"].source == "symbol"

    fn = by["FN01"]  # Average pool = ST01's trades: p 0.5, b 1.5 → Kelly 1/6 × ½ × 0.75
    assert fn.taken and fn.tier is Tier.AVERAGE and result.kelly["FN01"].source == "tier Average"
    assert fn.size == pytest.approx((0.5 - 0.5 / 1.5) * 0.5 * 0.75)
    assert fn.sector_momentum is not None

    assert by["EN01"].skip_reason is not None
    assert by["EN01"].skip_reason.startswith("dropped from the universe (")
    assert by["EN01"].tier is Tier.AVOID and by["EN01"].size == 0 and by["EN01"].shares == 0
    assert by["HC01"].skip_reason == "strength 50.0 below the base (no regime) entry threshold 60"
    assert (
        by["UT01"].earnings_soon and by["UT01"].skip_reason == "earnings within 3 business day(s)"
    )
    assert result.earnings_status.startswith("earnings rule on")
    assert [s.symbol for s in result.taken] == ["IT01", "FN01"]

    files = result.files
    assert Path(files["json"]).name == f"smart_scan_{day}.json"
    assert read_signals_json(files["json"]) == result.signals
    assert read_signals_csv(files["csv"]) == result.signals
    run = json.loads(Path(files["run"]).read_text())
    assert run["regime"] == "CHOPPY" and run["kelly"]["FN01"]["source"] == "tier Average"
    summary = result.summary()
    assert "2 taken, 3 skipped" in summary and "EN01" in summary


def test_smart_scan_without_calendar_says_the_rule_is_off(
    settings: Settings, store: SignalStore, night: dict
) -> None:
    result = run_smart_scan(settings, as_of=night["day"])
    assert result.earnings_status.startswith(RULE_OFF_NO_CALENDAR)
    ut = next(s for s in result.signals if s.symbol == "UT01")
    assert not ut.earnings_soon and ut.taken


def test_smart_scan_applies_measured_modifier_rules(
    tmp_path: Path, store: SignalStore, night: dict
) -> None:
    settings = make_settings(tmp_path, modifier_min_samples=4)
    # Features at signal time ride on the training samples: overbought calls lost.
    trades = series("RE01", "2018-10-01", [-0.01] * 4) + series("CS01", "2018-10-02", [0.01] * 4)
    add_outcomes(store, trades)
    store.add_training_samples(
        [
            {
                "symbol": sym,
                "horizon": 5,
                "signal_date": D(sd),
                "sector": "Real Estate",
                "side": "BUY",
                "confidence": 0.7,
                "entry_price": 100.0,
                "label": 2,
                "features": {"rsi_14": 80.0 if sym == "RE01" else 30.0},
            }
            for sym, sd, _e, _r in trades
        ]
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {name: overbought, kind: penalty, value: 0.5,\n"
        "   when: {feature: rsi_14, op: '>', value: 70}}\n"
    )
    vectors = pd.DataFrame({"symbol": ["IT01", "FN01", "HC01", "UT01", "EN01"], "rsi_14": 40.0})
    vectors.loc[0, "rsi_14"] = 85.0
    result = run_smart_scan(settings, rules_path=rules, vectors=vectors)
    it = next(s for s in result.signals if s.symbol == "IT01")
    assert it.modifiers == ("overbought",)
    assert it.strength_adjusted == pytest.approx(80 * 0.5 * 1.1)
    assert it.skip_reason == "strength 44.0 below the base (no regime) entry threshold 60"
    assert any(n.startswith("modifier rules: 1 of 1 active on 8 trades") for n in result.notes)
    fn = next(s for s in result.signals if s.symbol == "FN01")
    assert fn.modifiers == () and fn.taken
    # A past night would be judged on the online store's newer features: refused, before
    # any work — even before looking for that night's scan.
    with pytest.raises(SmartRunError, match="back-dated smart-scan"):
        run_smart_scan(settings, as_of=it.signal_date, rules_path=rules)
    with pytest.raises(SmartRunError, match="back-dated smart-scan"):
        run_smart_scan(settings, as_of=D("1990-01-02"), rules_path=rules)


def test_smart_scan_without_a_scan_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(
        SmartRunError, match=r"no scan yet at .*latest_scan.json: run `turbomode scan`"
    ):
        run_smart_scan(settings)
    with pytest.raises(SmartRunError, match="no scan yet for 2019-01-02"):
        run_smart_scan(settings, as_of=D("2019-01-02"))


# --- the CLI, as the chart runs it ---------------------------------------------------------


def cli() -> typer.Typer:
    """The commands mounted as the main app mounts them, with its --data-dir option."""
    app = typer.Typer()

    @app.callback()
    def main(
        config: Annotated[Path | None, typer.Option("--config")] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    ) -> None:
        """Test root."""

    universe = typer.Typer()
    universe.callback()(lambda: None)
    universe.command("curate")(curate_command)
    app.add_typer(ranking_app, name="ranking")
    app.add_typer(universe, name="universe")
    app.command("smart-scan")(smart_scan_command)
    return app


def chart_args(job: str) -> list[str]:
    (step,) = yaml.safe_load(CHART_VALUES.read_text())["cronWorkflows"]["jobs"][job]["steps"]
    return list(step["args"])


def test_cli_runs_the_charts_commands_unchanged(
    settings: Settings, store: SignalStore, night: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", settings.stores.signals_url)
    monkeypatch.setenv("TURBOMODE_SMART__TIER_MIN_TRADES", "4")
    root = ["--data-dir", str(settings.data.data_dir)]
    runner = CliRunner()
    today = date.today()
    for job, made in (
        ("adaptive_ranking", f"tiers_{today:%Y-%m}.json"),
        ("universe_curation", f"universe_{today.year}Q{(today.month - 1) // 3 + 1}.json"),
    ):
        res = runner.invoke(cli(), [*root, *chart_args(job)])
        assert res.exit_code == 0, res.output
        assert (state_dir(settings) / made).exists()

    res = runner.invoke(cli(), [*root, "ranking", "update", "--date", "2019-03-05"])
    assert res.exit_code == 0, res.output
    assert "Elite 1" in res.output and "tiers_2019-03.json" in res.output

    res = runner.invoke(cli(), [*root, "smart-scan", "--equity", "50000"])
    assert res.exit_code == 0, res.output
    assert "Smart Scanner — " in res.output and RULE_OFF_NO_CALENDAR in res.output
    res = runner.invoke(cli(), [*root, "smart-scan", "--json"])
    assert res.exit_code == 0 and {r["symbol"] for r in json.loads(res.output)} >= {"IT01"}

    res = runner.invoke(cli(), [*root, "smart-scan", "--horizon", "3"])
    assert res.exit_code == 2 and "unknown horizon 3" in res.output
    res = runner.invoke(cli(), [*root, "ranking", "update", "--date", "June"])
    assert res.exit_code == 2 and "--date must be a date" in res.output
