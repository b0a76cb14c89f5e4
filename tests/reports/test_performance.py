"""turbomode.reports.performance on hand-made figures: the month table, the what-if filters'
parsing, the charts' edge cases and a wallet with and without its benchmark. The figures on a
real track record are checked against the store in tests/serving/test_performance_pages.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from turbomode.config import Settings
from turbomode.reports.performance import (
    NoWalletError,
    PerformanceInputError,
    TradeFilter,
    equity_page,
    hit_rates,
    line_chart,
    monthly_pnl,
    trade_quality,
)
from turbomode.store import SignalStore

DAYS = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2)]
MARKS = [100_500.0, 99_000.0, 101_000.0, 102_500.0]


def test_months_take_each_months_last_mark_against_the_one_before() -> None:
    equity = pd.Series(MARKS, index=pd.to_datetime(DAYS))
    assert monthly_pnl(equity, 100_000.0) == [
        {
            "month": "2024-01",
            "end_equity": 99_000.0,
            "pnl": -1_000.0,
            "return": pytest.approx(-0.01),
        },
        {
            "month": "2024-02",
            "end_equity": 102_500.0,
            "pnl": 3_500.0,
            "return": pytest.approx(3_500.0 / 99_000.0),
        },
    ]
    assert monthly_pnl(equity.iloc[:0], 100_000.0) == []


def test_filters_parse_or_say_what_is_allowed() -> None:
    assert TradeFilter.parse("0.4", "Elite", "BULL", "Energy") == TradeFilter(
        0.4, "Elite", "BULL", "Energy"
    )
    assert TradeFilter.parse("", "", None, "") == TradeFilter()
    for bad, message in [
        (("x",), "min_confidence must be a number from 0 to 1, not 'x'"),
        (("-0.1",), "not '-0.1'"),
        (("inf",), "not 'inf'"),
        ((None, "gold"), "unknown tier 'gold'; one of: Elite, Strong, Average, Weak, Avoid"),
        ((None, None, "bull"), "unknown regime 'bull'"),
        ((None, None, None, "Crypto"), "unknown sector 'Crypto'"),
    ]:
        with pytest.raises(PerformanceInputError, match=message):
            TradeFilter.parse(*bad)


def test_filters_apply_to_every_column_and_drop_an_unknown_confidence() -> None:
    trades = pd.DataFrame(
        {
            "confidence": [0.5, 0.3, None, 0.7],
            "tier": ["Elite", "Average", "Elite", "Elite"],
            "regime": ["BULL", "BULL", "BULL", "BEAR"],
            "sector": ["Energy", "Energy", "Energy", "Energy"],
        }
    )
    assert list(TradeFilter(min_confidence=0.4).apply(trades).index) == [0, 3]
    assert list(TradeFilter(tier="Elite", regime="BULL").apply(trades).index) == [0, 2]
    assert TradeFilter(sector="Materials").apply(trades).empty


def test_charts_draw_one_point_a_day_and_say_when_there_is_none() -> None:
    idx = pd.to_datetime(DAYS)
    svg = line_chart({"wallet": pd.Series(MARKS, index=idx)}, "equity", money=True)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 4 and ">102,500<" in svg and ">99,000<" in svg and "2024-02-02" in svg
    flat = line_chart({"dd": pd.Series([0.0], index=idx[:1])}, "drawdown", floor_zero=True)
    assert flat.count("<polyline") == 1
    assert "no marks yet" in line_chart({"w": pd.Series([], dtype=float)}, "equity")


@pytest.fixture
def store(tmp_path: Path) -> SignalStore:
    s = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    s.migrate()
    return s


def _mark(equity: float) -> dict[str, object]:
    return {
        "cash": equity,
        "long_value": 0.0,
        "short_value": 0.0,
        "market_value": 0.0,
        "equity": equity,
        "n_open": 0,
        "n_opened": 0,
        "n_closed": 0,
        "commission": 0.0,
        "summary": {},
    }


def test_a_wallet_beside_its_benchmark_or_alone(store: SignalStore) -> None:
    with pytest.raises(NoWalletError, match="no paper wallet yet"):
        equity_page(store, Settings())
    store.create_wallet("paper", "atr", 100_000.0)
    for day, equity in zip(DAYS, MARKS, strict=True):
        version = store.wallet_book("paper", day).wallet.version
        store.write_wallet_day(
            "paper", day, version=version, positions=[], fills=[], equity=_mark(equity)
        )
    spy = pd.DataFrame(
        {
            "symbol": "SPY",
            "date": pd.to_datetime(DAYS),
            "open": 400.0,
            "close": [400.0, 404, 396, 400],
        }
    )
    page = equity_page(store, Settings(), benchmark=spy)
    assert [p["equity"] for p in page["points"]] == MARKS
    assert [round(p["drawdown"], 6) for p in page["points"]] == [0.0, -0.014925, 0.0, 0.0]
    bench = [p["benchmark"] for p in page["points"]]
    assert bench[1] - bench[0] == pytest.approx(-(bench[2] - bench[1]) / 2)  # +4 then −8
    assert page["benchmark_note"] is None and page["equity_svg"].count("<polyline") == 2

    alone = equity_page(store, Settings(), "paper", benchmark=None)
    assert alone["benchmark_note"] == "no SPY bars in the clean store"
    assert alone["benchmark_metrics"] is None and all(
        p["benchmark"] is None for p in alone["points"]
    )
    late = equity_page(store, Settings(), benchmark=spy.iloc[1:])
    assert "no SPY bar on 2024-01-30" in late["benchmark_note"]
    with pytest.raises(NoWalletError, match="unknown wallet 'x'; one of: paper"):
        trade_quality(store, TradeFilter(), "x")
    empty = trade_quality(store, TradeFilter(sector="Energy"))
    assert (empty["total"], empty["n"], empty["hit_rate"]) == (0, 0, None)
    assert hit_rates(store) == {
        "resolved": 0,
        "pending": 0,
        "overall": None,
        "horizon": [],
        "sector": [],
        "month": [],
    }
