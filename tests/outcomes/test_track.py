"""Outcome tracking with exact numbers on hand-made prices: entry at the next open, exit at the
close ``hold`` bars later, excursions, which level was hit first, the legacy and the label
rule, signals without prices left pending with the reason, and a second run changing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import Settings
from turbomode.labels import BUY, make_labels
from turbomode.outcomes.track import first_hit, rolling_hit_rate, track_outcomes
from turbomode.records.signals import Signal
from turbomode.store import SignalStore

DAYS = pd.bdate_range("2024-01-01", periods=40)
SECTOR = "Energy"


def prices(delist_ccc_after: int = 21) -> pd.DataFrame:
    """AAA rises 1 a day, BBB falls 2 a day, CCC trades until ``delist_ccc_after``, DDD flat."""
    rows = []
    for i, d in enumerate(DAYS):
        for sym, close, gap in (
            ("AAA", 100.0 + i, -0.5),
            ("BBB", 200.0 - 2 * i, 0.5),
            ("CCC", 50.0 + 0.1 * i, 0.0),
            ("DDD", 80.0 + 0.2 * np.sin(i), 0.0),
        ):
            if sym == "CCC" and i > delist_ccc_after:
                continue
            o = close + gap
            rows.append((sym, d, o, max(o, close) + 1.0, min(o, close) - 1.0, close, 1e6))
    return pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])


SECTORS = dict.fromkeys(("AAA", "BBB", "CCC", "DDD"), SECTOR)


def signal(sym: str, side: str, day: int, stop: float, target: float, horizon: int = 1) -> Signal:
    close = float(prices().query("symbol == @sym").iloc[day]["close"])
    return Signal(
        symbol=sym,
        sector=SECTOR,
        cap_class="large",
        horizon=horizon,
        side=side,  # type: ignore[arg-type]
        signal_date=DAYS[day].date(),
        p_buy=0.7 if side == "BUY" else 0.1,
        p_hold=0.2,
        p_sell=0.1 if side == "BUY" else 0.7,
        confidence=0.7,
        close=close,
        atr=2.0,
        entry_low=close * 0.97,
        entry_high=close * 1.03,
        stop=stop,
        target=target,
        stop_distance=abs(close - stop),
        model_version="v1",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SignalStore]:
    s = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    s.migrate()
    yield s
    s.dispose()


def legacy(hold: int = 3) -> Settings:
    return Settings(outcomes={"rule": "legacy", "legacy_hold_days": hold})


def book(store: SignalStore) -> None:
    """The scan of day 20 issues three signals."""
    store.write_scan(
        DAYS[20].date(),
        [
            signal("AAA", "BUY", 20, stop=119.0, target=123.5),
            signal("BBB", "SELL", 20, stop=164.0, target=150.0),
            signal("CCC", "BUY", 20, stop=40.0, target=60.0),
        ],
    )


def test_legacy_rule_exact_numbers(store: SignalStore) -> None:
    book(store)
    res = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[30].date())
    assert res.registered == 3 and res.n_resolved == 2
    out = store.outcomes().set_index("symbol")
    a = out.loc["AAA"]
    # entry: open of day 21 = 121 - 0.5; exit: close of day 23 = 123
    assert a["entry_price"] == pytest.approx(120.5) and a["exit_price"] == pytest.approx(123.0)
    assert a["entry_date"].date() == DAYS[21].date() and a["exit_date"].date() == DAYS[23].date()
    assert a["realized_return"] == pytest.approx(123 / 120.5 - 1)
    assert a["side_return"] == pytest.approx(123 / 120.5 - 1)
    assert a["mfe"] == pytest.approx(124 / 120.5 - 1)  # high of day 23: 123 + 1
    assert a["mae"] == pytest.approx(119.5 / 120.5 - 1)  # low of day 21: 120.5 - 1
    assert a["first_hit"] == "target"  # day 23's high 124 ≥ 123.5, no low ≤ 119 before
    assert not a["correct"]  # +2.1 % < +10 %
    # The label is the class of the signal's 1-day horizon, not of the 3-day hold.
    horizon_label = make_labels(prices(), Settings().labels, sectors=SECTORS).set_index(
        ["symbol", "date"]
    )
    assert a["label"] == horizon_label.loc[("AAA", DAYS[20]), "label_1"]
    b = out.loc["BBB"]
    assert b["entry_price"] == pytest.approx(158.5) and b["exit_price"] == pytest.approx(154.0)
    assert b["side_return"] == pytest.approx(-(154 / 158.5 - 1))
    assert bool(b["correct"])  # legacy: a SELL is right when the return stays below +10 %
    assert b["first_hit"] == "neither"  # highs ≤ 159.5 < 164, lows ≥ 153 > 150
    c = out.loc["CCC"]
    assert c["status"] == "pending" and c["reason"].startswith("missing prices: CCC lacks 2 of 3")


def test_pending_until_the_hold_is_over_then_resolved_once(store: SignalStore) -> None:
    book(store)
    early = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[22].date())
    assert early.n_resolved == 0
    assert set(early.reasons()) == {"hold not over"}  # the calendar itself ends at day 22
    assert store.outcomes("pending")["reason"].str.contains("3 bar\\(s\\) needed").any()
    first = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[25].date())
    snapshot = store.outcomes()
    second = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[25].date())
    assert first.n_resolved == 2 and second.n_resolved == 0 and second.registered == 0
    pd.testing.assert_frame_equal(
        snapshot.drop(columns=["reason"]), store.outcomes().drop(columns=["reason"])
    )
    assert len(store.outcomes()) == 3  # nothing recorded twice


def test_resolved_signals_leave_the_active_table(store: SignalStore) -> None:
    book(store)
    assert len(store.active_signals()) == 3
    track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[30].date())
    assert [s.symbol for s in store.active_signals()] == ["CCC"]  # still pending
    assert store.resolved_keys() == {("AAA", 1, DAYS[20].date()), ("BBB", 1, DAYS[20].date())}


def test_label_rule_uses_the_labeling_rule(store: SignalStore) -> None:
    """rule='label': hold = horizon, correct when the realized class equals the side."""
    p = prices()
    settings = Settings()
    store.write_scan(DAYS[20].date(), [signal("AAA", "BUY", 20, 119.0, 130.0, horizon=2)])
    res = track_outcomes(settings, store, p, SECTORS, as_of=DAYS[30].date())
    row = store.outcomes().iloc[0]
    expected = make_labels(p, settings.labels, sectors=SECTORS).set_index(["symbol", "date"])
    label = int(expected.loc[("AAA", DAYS[20]), "label_2"])
    assert res.n_resolved == 1 and row["hold_days"] == 2 and row["label"] == label
    assert bool(row["correct"]) == (label == BUY)
    assert row["exit_date"].date() == DAYS[22].date()
    assert row["realized_return"] == pytest.approx(expected.loc[("AAA", DAYS[20]), "fwd_ret_2"])


def test_first_hit_is_conservative_when_both_levels_fall_in_one_bar() -> None:
    highs, lows = np.array([105.0]), np.array([95.0])
    assert first_hit("BUY", highs, lows, stop=96.0, target=104.0) == "stop"
    assert first_hit("SELL", highs, lows, stop=104.0, target=96.0) == "stop"
    assert first_hit("BUY", np.array([101.0, 105.0]), np.array([99.0, 99.0]), 96.0, 104.0) == (
        "target"
    )


def test_registers_only_fresh_calls(store: SignalStore) -> None:
    """A signal carried to the next scan is the same signal: one outcome, not two."""
    s = signal("AAA", "BUY", 20, stop=119.0, target=123.5)
    store.write_scan(DAYS[20].date(), [s])
    store.write_scan(DAYS[21].date(), [s])  # carried (signal_date stays day 20)
    res = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[21].date())
    assert res.registered == 1 and len(store.outcomes()) == 1
    assert store.outcomes()["signal_date"].iloc[0].date() == date(2024, 1, 29)


def test_rolling_hit_rate_by_exit_date(store: SignalStore) -> None:
    book(store)
    res = track_outcomes(legacy(), store, prices(), SECTORS, as_of=DAYS[30].date())
    # AAA (wrong) and BBB (right) exited on day 23, 11 calendar days before day 30.
    assert res.rolling.loc[1, "n"] == 2 and res.rolling.loc[1, "hit_rate"] == 0.5
    assert res.rolling.loc[5, "n"] == 0 and np.isnan(res.rolling.loc[5, "hit_rate"])
    assert list(res.rolling.index) == [1, 2, 5]
    short = rolling_hit_rate(store.outcomes(), DAYS[30], window_days=11, horizons=[1])
    assert short.loc[1, "n"] == 0  # the window (day 30 − 11 days, day 30] excludes day 23
    assert rolling_hit_rate(store.outcomes(), DAYS[30], 12, [1]).loc[1, "n"] == 2
    assert rolling_hit_rate(store.outcomes(), DAYS[22], 30, [1]).loc[1, "n"] == 0  # not yet


@pytest.mark.integration
def test_tracker_pushes_the_rolling_hit_rate(store: SignalStore, tmp_path: Path) -> None:
    """To a real Pushgateway: the gauges the hit-rate alert reads, by horizon."""
    import requests

    from tests.monitoring import pushgateway
    from tests.test_job_metrics import _pushed

    book(store)
    with pushgateway(tmp_path) as gw:
        settings = legacy()
        settings.stores.pushgateway_url = gw.url.removeprefix("http://")
        track_outcomes(settings, store, prices(), SECTORS, as_of=DAYS[30].date())
        text = requests.get(gw.url + "/metrics", timeout=10).text
        assert _pushed(gw.url, "turbomode_job_success", "turbomode_outcomes") == 1.0
    job = 'instance="",job="turbomode_outcomes"'
    assert f'turbomode_signal_hit_rate{{horizon="1",{job}}} 0.5' in text
    assert f'turbomode_signal_outcomes_window{{horizon="5",{job}}} 0' in text
    assert 'turbomode_signal_hit_rate{horizon="5"' not in text  # no outcomes: no rate
