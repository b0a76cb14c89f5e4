"""The engine: next-bar execution, costs, accounting, universe, capacity and delisting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.backtest.bars import flat, prices, random_walk
from turbomode.backtest import (
    AtrExitPolicy,
    BacktestSettings,
    Bar,
    EntryOrder,
    ExitEvent,
    SignalColumnSize,
    run_backtest,
)
from turbomode.config import RiskSettings
from turbomode.data.universe import Universe
from turbomode.errors import SchemaError

D = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]


def _sig(date: str, symbol: str, side: str = "BUY", **extra: Any) -> dict[str, Any]:
    row = {"date": date, "symbol": symbol, "side": side, "sector": "Industrials"}
    row.update({"strength": 0.5, "stop_distance": 2.0, "horizon": 5})
    row.update(extra)
    return row


# Two trades, computed by hand. Costs: slippage 10 bps against the trade, commission
# $0.01/share + 1 bp of the filled notional. Sizing: 25 % of equity at the previous close.
# ATR rules with reward_risk 2 and no partials, so each trade has exactly two fills.
#
# Signals on D1 (2024-01-02): AAA BUY (strength 0.7, 1R = 2), BBB BUY (0.6, 1R = 1).
# D1's opens (98, 50) are NOT the entry: the signal bar's close made the call.
# Equity at D1's close = 100 000.
# D2 open: AAA 100 → fill 100 × 1.001 = 100.1; shares ⌊25 000 / 100.1⌋ = ⌊249.75⌋ = 249
#          notional 249 × 100.1 = 24 924.9; commission 0.01 × 249 + 0.0001 × 24 924.9 = 4.98249
#          levels around the market open 100: stop 98, target 100 + 2 × 2 = 104
#          BBB 50 → fill 50.05; shares ⌊25 000 / 50.05⌋ = ⌊499.5⌋ = 499
#          notional 24 974.95; commission 4.99 + 2.497495 = 7.487495; stop 49, target 52
#          cash = 100 000 − 24 924.9 − 4.98249 − 24 974.95 − 7.487495 = 50 087.680015
# D2 close: AAA 100.5, BBB 50 (nothing hit) → equity 50 087.680015 + 249 × 100.5 + 499 × 50
#          = 100 062.180015
# D3: AAA high 104.5 ≥ target 104 (open 101 below it) → sold at 104 × 0.999 = 103.896:
#          proceeds 25 870.104, commission 2.49 + 2.5870104 = 5.0770104
#          net P&L = 25 870.104 − 24 924.9 − 4.98249 − 5.0770104 = 935.1444996
#          net return = 935.1444996 / 24 924.9
#     BBB low 48.5 ≤ stop 49 (open 49.5 above it) → sold at 49 × 0.999 = 48.951:
#          proceeds 24 426.549, commission 4.99 + 2.4426549 = 7.4326549
#          net P&L = 24 426.549 − 24 974.95 − 7.487495 − 7.4326549 = −563.3211499
# Final equity = 100 000 + 935.1444996 − 563.3211499 = 100 371.8233497 (flat from D3 on).
TWO_TRADE_BARS = {
    "AAA": [
        (98.0, 101.0, 97.5, 100.0),
        (100.0, 101.0, 99.5, 100.5),
        (101.0, 104.5, 100.5, 104.0),
        (104.0, 105.0, 103.0, 104.0),
    ],
    "BBB": [
        (50.0, 51.0, 49.0, 50.0),
        (50.0, 50.5, 49.5, 50.0),
        (49.5, 49.8, 48.5, 48.8),
        (49.0, 49.5, 48.5, 49.0),
    ],
}
COSTS = {"slippage_bps": 10.0, "commission_per_share": 0.01, "commission_bps": 1.0}


def _two_trade_run() -> Any:
    px = prices(D[:4], TWO_TRADE_BARS)
    signals = pd.DataFrame(
        [
            _sig(D[0], "AAA", strength=0.7, stop_distance=2.0),
            _sig(D[0], "BBB", strength=0.6, stop_distance=1.0, sector="Energy"),
        ]
    )
    cfg = BacktestSettings(**COSTS, position_fraction=0.25, max_positions=2)
    rules = AtrExitPolicy(
        RiskSettings(reward_risk=2.0, partial_1r_fraction=0, partial_2r_fraction=0)
    )
    return run_backtest(signals, px, rules, cfg)


def test_two_trade_example_matches_the_hand_computation() -> None:
    r = _two_trade_run()
    t = r.trades.set_index("symbol")
    assert list(t.index) == ["AAA", "BBB"]
    assert (t["entry_date"] == pd.Timestamp(D[1]).date()).all()
    assert t.loc["AAA", "entry_price"] == 100.0
    assert t.loc["AAA", "entry_fill"] == pytest.approx(100.1, abs=1e-12)
    assert t.loc["AAA", "shares"] == 249
    assert t.loc["BBB", "shares"] == 499
    assert t.loc["AAA", "exit_reason"] == "target"
    assert t.loc["BBB", "exit_reason"] == "stop"
    assert t.loc["AAA", "exit_fill_avg"] == pytest.approx(103.896, abs=1e-9)
    assert t.loc["BBB", "exit_fill_avg"] == pytest.approx(48.951, abs=1e-9)
    assert t.loc["AAA", "commission"] == pytest.approx(4.98249 + 5.0770104, abs=1e-9)
    assert t.loc["BBB", "commission"] == pytest.approx(7.487495 + 7.4326549, abs=1e-9)
    assert t.loc["AAA", "net_pnl"] == pytest.approx(935.1444996, abs=1e-7)
    assert t.loc["BBB", "net_pnl"] == pytest.approx(-563.3211499, abs=1e-7)
    assert t.loc["AAA", "net_return"] == pytest.approx(935.1444996 / 24924.9, rel=1e-9)
    assert t.loc["BBB", "net_return"] == pytest.approx(-563.3211499 / 24974.95, rel=1e-9)
    eq = r.daily["equity"]
    assert eq.iloc[0] == 100_000.0
    assert r.daily["cash"].iloc[1] == pytest.approx(50087.680015, abs=1e-7)
    assert eq.iloc[1] == pytest.approx(100062.180015, abs=1e-7)
    assert eq.iloc[2] == pytest.approx(100371.8233497, abs=1e-7)
    assert r.final_equity == pytest.approx(100371.8233497, abs=1e-7)
    assert len(r.fills) == 4  # two legs per trade, each with a commission
    assert (r.fills["commission"] > 0).all()


def test_never_fills_on_the_bar_that_made_the_signal() -> None:
    """The policy is only ever asked to open on a later bar, at that bar's open."""
    seen: list[tuple[Any, Any, float]] = []

    class Recording(AtrExitPolicy):
        def open(self, order: EntryOrder, bar: Bar) -> tuple[Any, str | None]:
            seen.append((order.signal_date, bar.date, bar.open))
            return super().open(order, bar)

    px = random_walk(["A", "B", "C", "D"], 40, seed=3)
    dates = sorted(px["date"].unique())
    rng = np.random.default_rng(1)
    rows = [
        _sig(str(d.date()), s, stop_distance=3.0, strength=float(rng.random()))
        for d in dates[::3]
        for s in ("A", "B", "C", "D")
    ]
    r = run_backtest(pd.DataFrame(rows), px, Recording(), BacktestSettings(max_positions=2))
    assert seen and len(r.trades) > 3
    calendar = [d.date() for d in dates]
    for signal_day, bar_day, _ in seen:
        assert bar_day == calendar[calendar.index(signal_day) + 1]
    opens = px.assign(date=px["date"].dt.date).set_index(["symbol", "date"])["open"]
    for tr in r.trades.itertuples():
        assert tr.entry_date > tr.signal_date
        assert tr.entry_price == opens[(tr.symbol, tr.entry_date)]


def test_a_signal_on_the_last_day_never_fills() -> None:
    px = prices(D[:3], {"AAA": flat(100.0, 3)})
    r = run_backtest(pd.DataFrame([_sig(D[2], "AAA")]), px, AtrExitPolicy())
    assert r.trades.empty and r.fills.empty
    assert list(r.skipped["reason"]) == ["no bar after the signal date: never filled"]
    assert (r.daily["equity"] == 100_000.0).all()


def test_partial_exits_pay_slippage_and_commission() -> None:
    """ATR defaults (partials 50 % at 1R, 25 % at 2R; target 2.5R), $0.01/share, 10 bps.

    Entry D2 at open 100 → fill 100.1; ⌊40 000 / 100.1⌋ = 399 shares; commission 3.99.
    D3 high 102.5 reaches 1R = 102: ⌊0.5 × 399⌋ = 199 shares sold at 102 × 0.999 = 101.898,
    commission 1.99; stop to breakeven 100, then trails to close − 1R = 102.2 − 2 = 100.2.
    D4 low 99.8 hits 100.2: the other 200 shares at 100.2 × 0.999 = 100.0998, commission 2.00.
    Net = 199 × 101.898 + 200 × 100.0998 − 399 × 100.1 − 7.98 = 349.782.
    """
    bars = {
        "AAA": [
            (100.0, 100.5, 99.5, 100.0),
            (100.0, 101.0, 99.5, 100.5),
            (101.0, 102.5, 100.8, 102.2),
            (101.0, 101.2, 99.8, 100.0),
            (100.0, 100.5, 99.5, 100.0),
        ]
    }
    cfg = BacktestSettings(
        slippage_bps=10.0, commission_per_share=0.01, commission_bps=0.0, position_fraction=0.4
    )
    r = run_backtest(pd.DataFrame([_sig(D[0], "AAA")]), prices(D, bars), AtrExitPolicy(), cfg)
    fills = r.fills
    assert list(fills["kind"]) == ["entry", "partial_1r", "stop"]
    assert list(fills["shares"]) == [399, 199, 200]
    assert fills["fill"].tolist() == pytest.approx([100.1, 101.898, 100.0998], abs=1e-9)
    assert fills["commission"].tolist() == pytest.approx([3.99, 1.99, 2.00], abs=1e-12)
    t = r.trades.iloc[0]
    assert t["net_pnl"] == pytest.approx(349.782, abs=1e-7)
    assert t["gross_pnl"] == pytest.approx(199 * 2.0 + 200 * 0.2, abs=1e-9)
    assert r.final_equity == pytest.approx(100_000 + 349.782, abs=1e-7)


def test_short_trade_costs_work_against_the_short() -> None:
    """SELL at D2's open 50 → sold at 49.95; ⌊10 000 / 49.95⌋ = 200 shares. Horizon 1 expires
    at D2's close 49.5 → bought back at 49.5 × 1.001 = 49.5495. Commission $0.01/share each
    leg. Net = 200 × (49.95 − 49.5495) − 4 = 76.1."""
    bars = {"BBB": [(50.0, 50.5, 49.5, 50.0), (50.0, 50.4, 49.2, 49.5), (49.5, 49.6, 49.4, 49.5)]}
    cfg = BacktestSettings(slippage_bps=10.0, commission_per_share=0.01, commission_bps=0.0)
    sig = pd.DataFrame([_sig(D[0], "BBB", "SELL", stop_distance=1.0, horizon=1)])
    r = run_backtest(sig, prices(D[:3], bars), AtrExitPolicy(), cfg)
    t = r.trades.iloc[0]
    assert (t["side"], t["exit_reason"], t["shares"]) == ("short", "expire", 200)
    assert t["entry_fill"] == pytest.approx(49.95, abs=1e-12)
    assert t["exit_fill_avg"] == pytest.approx(49.5495, abs=1e-12)
    assert t["net_pnl"] == pytest.approx(76.1, abs=1e-9)
    assert r.daily["equity"].iloc[1] == pytest.approx(100_076.1, abs=1e-9)
    no_shorts = run_backtest(sig, prices(D[:3], bars), AtrExitPolicy(), cfg.model_copy(
        update={"allow_short": False}))  # fmt: skip
    assert no_shorts.trades.empty
    assert list(no_shorts.skipped["reason"]) == ["short entries not allowed"]


def test_a_delisted_symbol_is_closed_at_its_last_close() -> None:
    bars = {"AAA": flat(100.0, 5), "CCC": [*flat(20.0, 3), None, None]}
    cfg = BacktestSettings(slippage_bps=10.0, commission_bps=0.0)
    sig = pd.DataFrame([_sig(D[0], "CCC", stop_distance=5.0)])
    r = run_backtest(sig, prices(D, bars), AtrExitPolicy(), cfg)
    t = r.trades.iloc[0]
    assert t["exit_reason"] == "delisted"
    assert t["exit_date"] == pd.Timestamp(D[2]).date()
    assert t["exit_fill_avg"] == pytest.approx(20.0 * 0.999, abs=1e-12)
    assert list(r.daily["n_positions"]) == [0, 1, 0, 0, 0]
    assert r.daily["equity"].iloc[2] == r.daily["equity"].iloc[4]
    assert r.daily["equity"].iloc[2] < 100_000.0  # paid slippage both ways


def test_open_positions_are_closed_on_the_last_day() -> None:
    r = run_backtest(
        pd.DataFrame([_sig(D[0], "AAA")]), prices(D[:3], {"AAA": flat(100.0, 3)}), AtrExitPolicy()
    )
    assert list(r.trades["exit_reason"]) == ["end_of_data"]
    assert r.daily["n_positions"].iloc[-1] == 0


def test_only_point_in_time_index_members_are_traded() -> None:
    universe = Universe.from_frames(
        pd.DataFrame({"symbol": ["AAA", "BBB"], "sector": ["Industrials", "Energy"]}),
        intervals=pd.DataFrame(
            {
                "symbol": ["AAA", "BBB"],
                "start_date": ["2020-01-01", "2024-01-04"],
                "end_date": [None, None],
            }
        ),
    )
    bars = {"AAA": flat(100.0, 5), "BBB": flat(50.0, 5), "ZZZ": flat(10.0, 5)}
    signals = pd.DataFrame(
        [
            {"date": D[0], "symbol": "AAA", "side": "BUY", "stop_distance": 2.0},
            {"date": D[0], "symbol": "BBB", "side": "BUY", "stop_distance": 1.0},  # joins D3
            {"date": D[0], "symbol": "ZZZ", "side": "BUY", "stop_distance": 1.0},  # never
            {"date": D[2], "symbol": "BBB", "side": "BUY", "stop_distance": 1.0},
        ]
    )
    r = run_backtest(signals, prices(D, bars), AtrExitPolicy(), universe=universe)
    traded = r.trades.set_index("symbol")
    assert sorted(traded.index) == ["AAA", "BBB"]
    assert traded.loc["BBB", "signal_date"] == pd.Timestamp(D[2]).date()
    assert traded.loc["AAA", "sector"] == "Industrials"  # from the universe
    skipped = r.skipped.set_index("symbol")["reason"]
    assert skipped["BBB"] == skipped["ZZZ"] == "not in the index universe on the signal date"


def test_max_positions_takes_the_strongest_and_one_position_per_symbol() -> None:
    bars = {s: flat(p, 5) for s, p in (("AAA", 100.0), ("BBB", 50.0), ("CCC", 20.0))}
    signals = pd.DataFrame(
        [
            _sig(D[0], "AAA", strength=0.9),
            _sig(D[0], "BBB", strength=0.5),
            _sig(D[0], "CCC", strength=0.7),
            _sig(D[1], "AAA", strength=0.9),
        ]
    )
    r = run_backtest(signals, prices(D, bars), AtrExitPolicy(), BacktestSettings(max_positions=2))
    assert sorted(r.trades["symbol"]) == ["AAA", "CCC"]
    assert r.daily["n_positions"].max() == 2
    reasons = dict(
        zip(
            zip(r.skipped["symbol"], r.skipped["date"], strict=True),
            r.skipped["reason"],
            strict=True,
        )
    )
    assert reasons[("BBB", pd.Timestamp(D[0]))] == "max positions held"
    assert reasons[("AAA", pd.Timestamp(D[1]))] == "max positions held"
    more_room = run_backtest(
        signals, prices(D, bars), AtrExitPolicy(), BacktestSettings(max_positions=5)
    )
    assert sorted(more_room.trades["symbol"]) == ["AAA", "BBB", "CCC"]
    assert list(more_room.skipped["reason"]) == ["already held"]


def test_a_screen_keeps_entries_out_with_its_reason() -> None:
    """The daily screen sees the day's candidates strongest first and the book; a symbol it
    names is skipped with that reason, the others enter."""
    bars = {s: flat(p, 5) for s, p in (("AAA", 100.0), ("BBB", 50.0), ("CCC", 20.0))}
    signals = pd.DataFrame(
        [
            _sig(D[0], "AAA", strength=0.9),
            _sig(D[0], "BBB", strength=0.5),
            _sig(D[1], "CCC", strength=0.7),
        ]
    )
    seen: list[tuple[list[str], list[str]]] = []

    def screen(cands: pd.DataFrame, book: Any) -> dict[str, str]:
        seen.append((list(cands["symbol"]), sorted(book.open)))
        return {"BBB": "portfolio: 2 per sector"}

    r = run_backtest(signals, prices(D, bars), AtrExitPolicy(), BacktestSettings(), screen=screen)
    assert sorted(r.trades["symbol"]) == ["AAA", "CCC"]
    assert seen == [(["AAA", "BBB"], []), (["CCC"], ["AAA"])]
    assert list(r.skipped["reason"]) == ["portfolio: 2 per sector"]


def test_a_sizing_callback_sets_the_shares() -> None:
    cfg = BacktestSettings(slippage_bps=10.0)
    sig = pd.DataFrame([_sig(D[0], "AAA", size=0.05)])
    r = run_backtest(
        sig, prices(D[:3], {"AAA": flat(100.0, 3)}), AtrExitPolicy(), cfg, sizer=SignalColumnSize()
    )
    assert r.trades["shares"].iloc[0] == math.floor(5000 / 100.1)
    zero = run_backtest(
        sig.assign(size=0.0), prices(D[:3], {"AAA": flat(100.0, 3)}), AtrExitPolicy(), cfg,
        sizer=SignalColumnSize(),
    )  # fmt: skip
    assert list(zero.skipped["reason"]) == ["size rounds to no shares"]


def test_accounting_identities_on_a_random_market() -> None:
    """Cash + longs − shorts is equity every day; with every trade closed, final equity is the
    initial cash plus the trades' net P&L; fills and trades agree on commissions."""
    px = random_walk(["A", "B", "C", "D", "E", "F"], 60, seed=7)
    rng = np.random.default_rng(2)
    dates = sorted(px["date"].unique())
    rows = []
    for d in dates:
        for s in rng.choice(list("ABCDEF"), size=2, replace=False):
            close = float(px.loc[(px["symbol"] == s) & (px["date"] == d), "close"].iloc[0])
            side = "BUY" if rng.random() < 0.6 else "SELL"
            rows.append(
                _sig(str(d.date()), str(s), side, stop_distance=0.02 * close,
                     strength=float(rng.random()), horizon=int(rng.choice([1, 2, 5])))
            )  # fmt: skip
    cfg = BacktestSettings(max_positions=3, position_fraction=0.3, **COSTS)
    r = run_backtest(pd.DataFrame(rows), px, AtrExitPolicy(), cfg)
    d = r.daily
    assert len(r.trades) > 20
    assert set(r.trades["side"]) == {"long", "short"}
    assert np.allclose(d["cash"] + d["long_value"] - d["short_value"], d["equity"])
    assert r.final_equity == pytest.approx(100_000 + r.trades["net_pnl"].sum(), abs=1e-6)
    assert r.fills["commission"].sum() == pytest.approx(r.trades["commission"].sum())
    assert (d["n_positions"] <= 3).all()
    assert (r.trades["entry_date"] > r.trades["signal_date"]).all()


def test_bad_signal_tables_are_refused() -> None:
    px = prices(D[:3], {"AAA": flat(100.0, 3)})
    dup = pd.DataFrame([_sig(D[0], "AAA"), _sig(D[0], "AAA")])
    with pytest.raises(SchemaError, match="duplicate"):
        run_backtest(dup, px, AtrExitPolicy())
    with pytest.raises(SchemaError, match="side"):
        run_backtest(pd.DataFrame([_sig(D[0], "AAA", "HOLD")]), px, AtrExitPolicy())
    with pytest.raises(SchemaError, match="symbol"):
        run_backtest(pd.DataFrame({"date": [D[0]], "side": ["BUY"]}), px, AtrExitPolicy())


def test_exit_events_from_a_custom_policy_are_filled_with_costs() -> None:
    """Any ExitPolicy works: one that sells a third each bar at the close."""

    class Thirds:
        name = "thirds"
        long_only = True

        def open(self, order: EntryOrder, bar: Bar) -> tuple[Any, str | None]:
            return {"left": 3}, None

        def on_bar(self, state: Any, bar: Bar, bars_held: int) -> tuple[Any, list[ExitEvent]]:
            left = state["left"] - 1
            ev = ExitEvent(bar.date, "third", bar.close, 1 / 3, closes=left == 0)
            return {"left": left}, [ev]

    cfg = BacktestSettings(slippage_bps=0.0, commission_bps=0.0, whole_shares=True)
    r = run_backtest(
        pd.DataFrame([_sig(D[0], "AAA")]), prices(D, {"AAA": flat(100.0, 5)}), Thirds(), cfg
    )
    assert list(r.fills["shares"]) == [100, 33, 33, 34]
    assert r.trades["exit_reason"].iloc[0] == "third"
