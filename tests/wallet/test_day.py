"""A wallet's day against hand-computed cash and equity, on SQLite and PostgreSQL: next-bar
entries with slippage and commission, stops and targets on later days, both rule sets, the
Smart portfolio constraints, re-runs, crashes mid-transaction and look-ahead refusal."""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from turbomode.store import (
    ConcurrentUpdateError,
    SignalStore,
    StaleWalletDayError,
    UnknownWalletError,
    WalletExistsError,
)
from turbomode.wallet import LookaheadError, WalletError, decode_state, report, run_day

from .conftest import D0, D1, D2, D3, D4, bars, make_settings, signal, state_of

S = make_settings()


def sigs(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


# AAA: entered at the open of D1 from the BUY of D0's close, stopped out on D2.
AAA = {
    ("AAA", D1): (100.0, 101.0, 99.0, 100.5),
    ("AAA", D2): (99.5, 99.8, 97.5, 98.2),
    ("AAA", D3): (98.0, 98.5, 97.0, 97.5),
}


def test_two_days_by_hand_atr_stop(store: SignalStore) -> None:
    store.create_wallet("paper", "atr", 100_000.0)
    prices = bars(AAA)
    day1 = run_day(store, "paper", D1, prices, sigs(signal("AAA", D0)), S)
    # fill = 100 × (1 + 10 bps) = 100.1; 10 % of 100,000 → floor(9,990.0 / ...) = 99 shares;
    # cost 99 × 100.1 = 9,909.90; commission max(0.01 × 99, 1.00) = 1.00.
    assert day1.opened == ["AAA"] and day1.closed == [] and not day1.rerun
    assert day1.cash == pytest.approx(90_089.10, abs=1e-9)
    assert day1.equity == pytest.approx(90_089.10 + 99 * 100.5, abs=1e-9)  # 100,038.60
    (entry,) = day1.fills
    assert entry["action"] == "buy" and entry["shares"] == 99
    assert entry["fill"] == pytest.approx(100.1) and entry["commission"] == pytest.approx(1.0)
    assert entry["slippage"] == pytest.approx(99 * 0.1)
    assert entry["cash_after"] == pytest.approx(90_089.10)
    assert "BUY signal of 2024-03-04" in entry["reason"]

    day2 = run_day(store, "paper", D2, prices, None, S)
    # stop at entry − 1R = 98; low 97.5 reaches it: 99 sold at 98 × (1 − 10 bps) = 97.902.
    assert day2.closed == ["AAA"] and day2.held == []
    cash2 = 90_089.10 + 99 * 97.902 - 1.0
    assert day2.cash == pytest.approx(cash2, abs=1e-9)  # 99,780.398
    assert day2.equity == pytest.approx(cash2, abs=1e-9)

    fills = store.wallet_fills("paper")
    assert fills[["kind", "action", "shares"]].values.tolist() == [
        ["entry", "buy", 99.0],
        ["stop", "sell", 99.0],
    ]
    assert fills["price"].tolist() == pytest.approx([100.0, 98.0])
    assert fills["cash_after"].tolist() == pytest.approx([90_089.10, cash2])
    equity = store.wallet_equity("paper")
    assert equity["equity"].tolist() == pytest.approx([100_038.60, cash2])
    assert equity["market_value"].tolist() == pytest.approx([99 * 100.5, 0.0])

    trades = store.wallet_positions("paper")
    (t,) = trades.to_dict("records")
    assert t["status"] == "closed" and t["exit_reason"] == "stop"
    net = 99 * 97.902 - 99 * 100.1 - 2.0  # −219.602
    assert t["net_pnl"] == pytest.approx(net) and t["net_return"] == pytest.approx(net / 9_909.9)
    rep = report(store, "paper")
    assert rep.realized == pytest.approx(net) and rep.unrealized == 0.0
    assert rep.final_equity == pytest.approx(100_000.0 + net)
    assert rep.trades["net_return"].tolist() == pytest.approx([net / 9_909.9])


def test_partial_exit_keeps_position_open_and_report_adds_up(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    store.create_wallet("p", "atr", 100_000.0)
    prices = bars({("BBB", D1): (50.0, 50.5, 49.5, 50.2), ("BBB", D2): (50.5, 52.5, 50.3, 52.2)})
    run_day(store, "p", D1, prices, sigs(signal("BBB", D0, close=50.0)), S)
    day2 = run_day(store, "p", D2, prices, None, S)
    # 199 shares at 50.05 (commission 1.99); +1R = 52 reached: 50 % = floor(99.5) = 99 sold at
    # 52 × 0.999 = 51.948 (commission 1.00); 100 shares left, marked at 52.2.
    cash = 100_000 - 199 * 50.05 - 1.99 + 99 * 51.948 - 1.0
    assert day2.held == ["BBB"] and day2.closed == []
    assert day2.cash == pytest.approx(cash) and day2.equity == pytest.approx(cash + 100 * 52.2)
    rep = report(store, "p")
    assert rep.realized == pytest.approx(99 * 51.948 - 99 * 50.05 - 2.99)  # 184.912
    assert rep.unrealized == pytest.approx(100 * (52.2 - 50.05))  # 215.00
    assert 100_000 + rep.realized + rep.unrealized == pytest.approx(rep.final_equity)
    (pos,) = store.wallet_positions("p", "open").to_dict("records")
    state = decode_state(pos["policy_state"])
    assert state.partials_taken == 1 and state.stop == pytest.approx(50.2)  # trailed to close−1R
    assert pos["shares_open"] == 100 and pos["bars_held"] == 2


def test_smart_rules_targets_by_hand_and_portfolio_constraints(store: SignalStore) -> None:
    store.create_wallet("smart", "smart", 100_000.0)
    prices = bars(
        {
            ("CCC", D1): (50.0, 50.4, 49.8, 50.2),
            ("CCC", D2): (50.5, 51.5, 50.4, 51.2),
            ("CCC", D3): (51.5, 52.0, 51.3, 51.9),
            ("DDD", D1): (20.0, 20.1, 19.9, 20.0),
            ("DDD", D2): (20.0, 20.1, 19.9, 20.0),
            ("DDD", D3): (20.0, 20.1, 19.9, 20.0),
            ("EEE", D1): (30.0, 30.1, 29.9, 30.0),
            ("FFF", D1): (40.0, 40.1, 39.9, 40.0),
        }
    )
    night = sigs(
        signal("CCC", D0, tier="Elite", strength=90.0, close=50.0),
        signal("DDD", D0, tier="Average", strength=80.0, close=20.0),
        signal("EEE", D0, tier="Elite", strength=70.0, close=30.0),  # third in its sector
        signal("FFF", D0, side="SELL", strength=95.0, close=40.0),  # long-only rules
    )
    day1 = run_day(store, "smart", D1, prices, night, S)
    assert day1.opened == ["CCC", "DDD"]
    reasons = dict(day1.skipped)
    assert reasons["FFF"] == "short entries not allowed"
    assert reasons["EEE"].startswith("portfolio: 2 positions in Information Technology")
    # CCC: Elite cap 15 % → floor(15,000 / 50.05) = 299 shares, commission 2.99.
    # DDD: Average cap 7.5 % → floor(7,500 / 20.02) = 374 shares, commission 3.74.
    cash1 = 100_000 - 299 * 50.05 - 2.99 - 374 * 20.02 - 3.74
    assert day1.cash == pytest.approx(cash1)
    assert day1.equity == pytest.approx(cash1 + 299 * 50.2 + 374 * 20.0)

    day2 = run_day(store, "smart", D2, prices, None, S)
    # close 51.2 ≥ target 1 = 51 (2 % over the open 50): 149 of 299 sold at 51.2 × 0.999.
    cash2 = cash1 + 149 * 51.2 * 0.999 - 1.49
    assert day2.cash == pytest.approx(cash2) and day2.closed == []
    day3 = run_day(store, "smart", D3, prices, None, S)
    # close 51.9 ≥ target 2 = 51.75: the other 150 sold at 51.9 × 0.999. DDD expires
    # (Average: 3 bars) at its close 20 × 0.999.
    cash3 = cash2 + 150 * 51.9 * 0.999 - 1.5 + 374 * 20.0 * 0.999 - 3.74
    assert sorted(day3.closed) == ["CCC", "DDD"] and day3.held == []
    assert day3.cash == pytest.approx(cash3) and day3.equity == pytest.approx(cash3)
    kinds = store.wallet_fills("smart")[["symbol", "kind"]].values.tolist()
    assert kinds == [
        ["CCC", "entry"],
        ["DDD", "entry"],
        ["CCC", "target_1"],
        ["CCC", "target_2"],
        ["DDD", "expire"],
    ]
    ccc = store.wallet_positions("smart").set_index("symbol").loc["CCC"]
    assert ccc["net_pnl"] == pytest.approx(
        149 * 51.2 * 0.999 + 150 * 51.9 * 0.999 - 299 * 50.05 - (2.99 + 1.49 + 1.5)
    )
    assert ccc["tier"] == "Elite"
    rep = report(store, "smart")
    assert rep.final_equity == pytest.approx(100_000 + rep.realized)


def _two_day_run(store: SignalStore) -> pd.DataFrame:
    store.create_wallet("w", "atr", 50_000.0)
    prices = bars(
        {
            **AAA,
            ("GGG", D1): (20.0, 20.2, 19.9, 20.1),
            ("GGG", D2): (20.1, 20.3, 19.95, 20.2),
            ("GGG", D3): (20.2, 20.4, 20.0, 20.3),
        }
    )
    night0 = sigs(signal("AAA", D0), signal("GGG", D0, stop_distance=1.0, close=20.0))
    run_day(store, "w", D1, prices, night0, S)
    return prices


def test_rerun_of_a_day_gives_the_same_state_and_no_duplicate_fills(store: SignalStore) -> None:
    prices = _two_day_run(store)
    run_day(store, "w", D2, prices, None, S)
    first = state_of(store, "w")
    again = run_day(store, "w", D2, prices, None, S)
    assert again.rerun
    second = state_of(store, "w")
    assert second["wallet"][0] == D2 and second["wallet"][1] == first["wallet"][1] + 1
    for key in ("positions", "fills", "equity"):
        assert second[key] == first[key], key
    # a re-run of D1 is refused once D2 is written: it would rewrite history
    with pytest.raises(StaleWalletDayError, match="in its past"):
        run_day(store, "w", D1, prices, None, S)
    assert state_of(store, "w") == second


def test_rerun_of_an_entry_day_reopens_nothing_twice(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    prices = _two_day_run(store)
    first = state_of(store, "w")
    night0 = sigs(signal("AAA", D0), signal("GGG", D0, stop_distance=1.0, close=20.0))
    run_day(store, "w", D1, prices, night0, S)
    second = state_of(store, "w")
    assert second["positions"] == first["positions"] and second["fills"] == first["fills"]
    assert len(second["fills"]) == 2 and len(second["positions"]) == 2


def test_crash_mid_day_leaves_the_previous_state(
    store: SignalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = _two_day_run(store)
    before_d2 = state_of(store, "w")
    real = SignalStore._save_wallet_position
    calls = {"n": 0}

    def crash_on_second(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed mid-transaction")
        real(*args, **kwargs)

    monkeypatch.setattr(SignalStore, "_save_wallet_position", staticmethod(crash_on_second))
    with pytest.raises(RuntimeError, match="killed"):
        run_day(store, "w", D2, prices, None, S)
    assert calls["n"] == 2  # one position row was written before the crash, then rolled back
    assert state_of(store, "w") == before_d2
    monkeypatch.undo()

    run_day(store, "w", D2, prices, None, S)
    done = state_of(store, "w")
    # a crash in a re-run of D2 (after its undo) also leaves D2 as it was
    calls["n"] = 0
    monkeypatch.setattr(SignalStore, "_save_wallet_position", staticmethod(crash_on_second))
    with pytest.raises(RuntimeError, match="killed"):
        run_day(store, "w", D2, prices, None, S)
    assert state_of(store, "w") == done
    assert len(store.wallet_fills("w")) == 3  # 2 entries + AAA's stop, never duplicated


def test_same_day_or_future_signal_is_refused_and_nothing_written(
    sqlite_store: SignalStore,
) -> None:
    store = sqlite_store
    store.create_wallet("w", "atr", 100_000.0)
    prices = bars(AAA)
    with pytest.raises(LookaheadError, match="never on its own bar"):
        run_day(store, "w", D1, prices, sigs(signal("AAA", D1)), S)
    with pytest.raises(LookaheadError):
        run_day(store, "w", D1, prices, sigs(signal("AAA", D0), signal("BBB", D2)), S)
    assert store.wallet("w").last_date is None and store.wallet_equity("w").empty


def test_stale_signal_max_positions_and_one_per_symbol(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    store.create_wallet("w", "atr", 100_000.0)
    settings = make_settings(max_positions=2)
    quiet = (10.0, 10.01, 9.99, 10.0)
    prices = bars({(s, d): quiet for s in ("H1", "H2", "H3") for d in (D1, D2, D3)})
    night0 = sigs(
        signal("H1", D0, strength=90.0, stop_distance=1.0, close=10.0),
        signal("H2", D0, strength=80.0, stop_distance=1.0, close=10.0),
        signal("H3", D0, strength=70.0, stop_distance=1.0, close=10.0),
    )
    day1 = run_day(store, "w", D1, prices, night0, settings)
    assert day1.opened == ["H1", "H2"] and dict(day1.skipped) == {"H3": "max positions held"}
    # D2 acting on the previous night D1: H1 is held; D0's H3 is stale (its open was D1).
    night1 = sigs(
        signal("H1", D1, stop_distance=1.0, close=10.0),
        signal("H3", D0, stop_distance=1.0, close=10.0),
    )
    day2 = run_day(store, "w", D2, prices, night1, settings)
    reasons = dict(day2.skipped)
    assert reasons["H3"].startswith("stale") and reasons["H1"] == "max positions held"
    day3 = run_day(store, "w", D3, prices, sigs(signal("H1", D2, stop_distance=1.0)), settings)
    assert day3.skipped == [("H1", "max positions held")]
    settings3 = make_settings(max_positions=3)
    again = run_day(store, "w", D3, prices, sigs(signal("H1", D2, stop_distance=1.0)), settings3)
    assert again.rerun and again.skipped == [("H1", "already held")]


def test_wallet_errors(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    with pytest.raises(UnknownWalletError, match="no wallet named 'nope'"):
        run_day(store, "nope", D1, bars(AAA), None, S)
    store.create_wallet("w", "atr", 1_000.0)
    with pytest.raises(WalletExistsError):
        store.create_wallet("w", "smart", 1_000.0)
    with pytest.raises(ValueError, match="rules"):
        store.create_wallet("x", "momentum", 1_000.0)
    with pytest.raises(ValueError, match="initial cash"):
        store.create_wallet("x", "atr", -5.0)
    with pytest.raises(WalletError, match="no bars on 2024-03-08"):
        run_day(store, "w", D4, bars(AAA), None, S)
    assert [w.name for w in store.wallets()] == ["w"]


def test_stale_read_is_refused(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    store.create_wallet("w", "atr", 100_000.0)
    read = store.wallet_book("w", D1)
    run_day(store, "w", D1, bars(AAA), sigs(signal("AAA", D0)), S)
    with pytest.raises(ConcurrentUpdateError, match="changed since it was read"):
        store.write_wallet_day(
            "w",
            D1,
            version=read.wallet.version,
            positions=[],
            fills=[],
            equity={
                "cash": 1.0,
                "long_value": 0.0,
                "short_value": 0.0,
                "market_value": 0.0,
                "equity": 1.0,
                "n_open": 0,
                "n_opened": 0,
                "n_closed": 0,
                "commission": 0.0,
                "summary": {},
            },
        )
    assert store.wallet_equity("w")["cash"].tolist() == pytest.approx([90_089.10])


def test_short_entry_with_atr_rules_hits_its_target(sqlite_store: SignalStore) -> None:
    store = sqlite_store
    store.create_wallet("s", "atr", 100_000.0)
    # SELL on D0; 1R = 2; target = entry − 2.5R = 95. D2 gaps down through it: filled at open.
    prices = bars({("KKK", D1): (100.0, 100.5, 99.5, 100.0), ("KKK", D2): (94.0, 94.5, 93.0, 93.5)})
    run_day(store, "s", D1, prices, sigs(signal("KKK", D0, side="SELL")), S)
    day2 = run_day(store, "s", D2, prices, None, S)
    # short floor(10,000 / 99.9) = 100 shares at 99.9 (a sell slips down). D2 opens through
    # 1R (98), 2R (96) and the target (95): 50, 25 and the last 25 bought back at the open,
    # 94 × 1.001, each paying the 1.00 minimum commission.
    cash = 100_000 + 100 * 99.9 - 1.0 - 100 * 94.0 * 1.001 - 3 * 1.0
    assert day2.closed == ["KKK"] and day2.cash == pytest.approx(cash)
    fills = store.wallet_fills("s")
    assert fills[["kind", "action", "shares"]].values.tolist() == [
        ["entry", "sell", 100.0],
        ["partial_1r", "buy", 50.0],
        ["partial_2r", "buy", 25.0],
        ["target", "buy", 25.0],
    ]
    rep = report(store, "s")
    assert rep.realized == pytest.approx(cash - 100_000)
    assert json.loads(json.dumps(rep.trades["net_pnl"].tolist()))[0] > 0


def test_job_metrics_count_rows_by_stage(
    sqlite_store: SignalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from turbomode.job_metrics import JobMetrics

    pushed: list[JobMetrics] = []
    monkeypatch.setattr(JobMetrics, "push", lambda self, gateway: pushed.append(self) or False)
    store = sqlite_store
    store.create_wallet("m", "atr", 100_000.0)
    prices = bars(
        {**AAA, ("GGG", D1): (20.0, 20.2, 19.9, 20.1), ("GGG", D2): (20.1, 20.3, 20.0, 20.2)}
    )
    run_day(store, "m", D1, prices, sigs(signal("AAA", D0), signal("GGG", D0, close=20.0)), S)
    run_day(store, "m", D2, prices, None, S)
    day1, day2 = pushed
    assert day1.job == "wallet"

    def rows(m: JobMetrics, stage: str) -> float | None:
        return m.registry.get_sample_value("turbomode_job_rows_total", {"stage": stage})

    assert [rows(day1, s) for s in ("opened", "closed", "held")] == [2.0, 0.0, 2.0]
    assert [rows(day2, s) for s in ("opened", "closed", "held")] == [0.0, 1.0, 1.0]
    assert day2.registry.get_sample_value("turbomode_job_success") == 1.0


def test_a_symbol_without_bars_for_five_market_days_is_closed_as_delisted(
    sqlite_store: SignalStore,
) -> None:
    days = [d.date() for d in pd.bdate_range("2024-03-04", periods=8)]
    rows = {("AAA", days[1]): (100.0, 100.5, 99.5, 100.0)}  # its last bar: the entry day
    rows.update({("BBB", d): (50.0, 50.0, 50.0, 50.0) for d in days})  # the market trades on
    prices = bars(rows)
    sqlite_store.create_wallet("paper", "atr", 100_000.0)
    run_day(sqlite_store, "paper", days[1], prices, sigs(signal("AAA", days[0])), S)
    for d in days[2:6]:  # 1 to 4 market days without a bar: still held
        result = run_day(sqlite_store, "paper", d, prices, None, S)
        assert result.held == ["AAA"] and result.closed == [], d
    result = run_day(sqlite_store, "paper", days[6], prices, None, S)
    assert result.closed == ["AAA"]
    (t,) = sqlite_store.wallet_positions("paper").to_dict("records")
    assert t["exit_reason"] == "delisted"
    (out,) = sqlite_store.wallet_fills("paper").query("kind == 'delisted'").to_dict("records")
    # out at its last close, 100, less 10 bps of slippage, on the sixth day
    assert out["price"] == 100.0 and out["fill"] == pytest.approx(100.0 * 0.999)


@pytest.mark.parametrize("rules", ["atr", "smart"])
def test_a_wallet_trades_what_a_backtest_of_the_same_signals_trades(
    sqlite_store: SignalStore, rules: str
) -> None:
    """Run day by day, a wallet makes the backtest's fills, refuses the same entries for the
    same reasons and marks the same equity, on the same signals and bars (the backtest's last
    day, which closes everything at the end of its data, is not a wallet day)."""
    from tests.backtest.bars import random_walk
    from turbomode.backtest import SignalColumnSize, run_backtest
    from turbomode.backtest.screen import smart_screen
    from turbomode.wallet import wallet_policy, wallet_settings

    symbols = [f"S{i}" for i in range(8)]
    px = random_walk(symbols, 24, seed=4)
    days = sorted(px["date"].unique())
    close = px.set_index(["date", "symbol"])["close"]
    rng = np.random.default_rng(9)
    night = [
        signal(
            str(s),
            pd.Timestamp(d).date(),
            side="BUY" if rng.random() < 0.7 else "SELL",
            sector=("Energy", "Utilities", "Industrials")[int(s[1:]) % 3],
            strength=float(rng.uniform(50, 100)),
            stop_distance=0.02 * close[(d, s)],
            close=close[(d, s)],
            horizon=int(rng.choice([1, 2, 5])),
            tier=str(rng.choice(["Elite", "Strong", "Average"])),
            size=float(rng.uniform(0.05, 0.2)),
        )
        for d in days
        for s in rng.choice(symbols, size=4, replace=False)
    ]
    signals = pd.DataFrame(night)
    settings = make_settings(max_positions=3)
    smart = rules == "smart"
    bt = run_backtest(
        signals,
        px,
        wallet_policy(rules, settings),
        wallet_settings(rules, settings),
        sizer=SignalColumnSize("size") if smart else None,
        screen=smart_screen(px, settings) if smart else None,
    )

    sqlite_store.create_wallet("w", rules, settings.backtest.initial_cash)
    wallet_skips = []
    for before, day in itertools.pairwise(days[:-1]):
        tonight = signals[signals["date"] == before]
        result = run_day(sqlite_store, "w", day.date(), px, tonight, settings)
        wallet_skips += [(before, sym, why) for sym, why in result.skipped]

    cols = ["trade_id", "date", "symbol", "kind", "action", "shares", "price", "fill", "commission"]
    fills = sqlite_store.wallet_fills("w")[cols].assign(date=lambda f: pd.to_datetime(f["date"]))
    want = bt.fills.assign(date=pd.to_datetime(bt.fills["date"]))
    want = want.loc[want["date"] < days[-1], cols].reset_index(drop=True)
    assert len(want) > 20 and {"entry", "expire"} <= set(want["kind"])
    pd.testing.assert_frame_equal(fills, want, check_dtype=False)
    skipped = bt.skipped[bt.skipped["date"] < days[-2]]
    assert sorted(wallet_skips) == sorted(skipped[["date", "symbol", "reason"]].itertuples(False))
    assert any(why.startswith("portfolio: ") for *_, why in wallet_skips) == smart
    equity = sqlite_store.wallet_equity("w")["equity"].to_numpy()
    assert equity == pytest.approx(bt.daily["equity"].iloc[1:-1].to_numpy(), rel=1e-12)
