"""Walk-forward signals on the synthetic market: each period's models are trained only on
labels known before it, the nightly entry rules are the scan's, and deleting every row after
the test window changes no signal (no look-ahead)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.backtest.walkforward import period_bounds, walk_forward_signals
from turbomode.config import Settings
from turbomode.data.sources.base import MarketData
from turbomode.errors import TurboModeError

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]
SECTORS = ["Energy", "Utilities"]
START, END = date(2023, 1, 1), date(2023, 6, 30)


def test_period_bounds_by_quarter_and_year() -> None:
    cal = pd.bdate_range("2022-12-01", "2023-07-31")
    q = period_bounds(cal, START, END, "quarter")
    assert [(a.date(), b.date()) for a, b in q] == [
        (date(2023, 1, 2), date(2023, 3, 31)),
        (date(2023, 4, 3), date(2023, 6, 30)),
    ]
    assert len(period_bounds(cal, START, END, "year")) == 1
    with pytest.raises(TurboModeError, match="no trading days"):
        period_bounds(cal, date(2030, 1, 1), date(2030, 2, 1))


def test_walk_forward_is_point_in_time(world: tuple[Settings, MarketData]) -> None:
    settings, md = world
    res = walk_forward_signals(
        settings,
        md,
        START,
        END,
        horizon=1,
        period="quarter",
        train_days=250,
        sectors=SECTORS,
    )
    sig = res.signals
    assert len(res.periods) == 2 and set(sig["sector"]) <= set(SECTORS)
    for info in res.periods:
        first = pd.Timestamp(info["period"].split("..")[0])
        trained_end = pd.Timestamp(info["trained_on"].split("..")[1])
        assert trained_end < first  # the last day whose labels were known
        in_period = sig[sig["period"] == info["period"]]
        assert in_period["date"].between(first, pd.Timestamp(info["period"].split("..")[1])).all()
    # The scan's quantile rule: the top 5 % of each night's BUY and SELL lifts pass (at least
    # the best name of each side: 14 symbols give one a side).
    per_night = sig.groupby("date").size()
    symbols = md.universe.members.query("sector in @SECTORS")["symbol"].nunique()
    assert 0 < per_night.mean() <= 2 * np.ceil(0.05 * symbols)
    assert (sig["strength"] == 100 * sig["confidence"]).all()
    assert set(sig["side"]) <= {"BUY", "SELL"}
    # Deleting everything after the window changes nothing: no look-ahead.
    cut = pd.Timestamp(END)
    truncated = replace(
        md,
        prices=md.prices[md.prices["date"] <= cut].reset_index(drop=True),
        market=md.market[md.market["date"] <= cut].reset_index(drop=True),
    )
    again = walk_forward_signals(
        settings,
        truncated,
        START,
        END,
        horizon=1,
        period="quarter",
        train_days=250,
        sectors=SECTORS,
    )
    pd.testing.assert_frame_equal(sig, again.signals)
    # The period boundary too: with everything after the first quarter deleted, the first
    # quarter's signals are the same.
    q1 = pd.Timestamp("2023-03-31")
    first_quarter = replace(
        md,
        prices=md.prices[md.prices["date"] <= q1].reset_index(drop=True),
        market=md.market[md.market["date"] <= q1].reset_index(drop=True),
    )
    early = walk_forward_signals(
        settings, first_quarter, START, q1.date(), horizon=1, period="quarter", train_days=250,
        sectors=SECTORS,
    )  # fmt: skip
    pd.testing.assert_frame_equal(early.signals, sig[sig["date"] <= q1].reset_index(drop=True))


def test_unknown_horizon_is_refused(world: tuple[Settings, MarketData]) -> None:
    settings, md = world
    with pytest.raises(TurboModeError, match="horizon 5 is not among"):
        walk_forward_signals(settings, md, START, END, horizon=5)


HANDWRITTEN_MEMBERSHIP = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "handwritten_membership"
    / "sp500_membership_intervals.csv"
)


def test_gated_book_and_point_in_time_members(
    world: tuple[Settings, MarketData], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gated book trades only models the gate accepted — a refused sector keeps its last
    accepted model, a never-accepted one trades nothing — and every scored row, gate windows
    included, is an index member on its date (the hand-written membership file).

    The gate runs for real (candidate, baselines and production evaluated by the platform's
    own decide); its verdicts are then scripted — Energy accepted in the first quarter only,
    Utilities never — so the book's bookkeeping is checked on known decisions."""
    from turbomode.backtest import walkforward
    from turbomode.data.universe import Universe
    from turbomode.models.gate import RULE_PRODUCTION, GateReport

    settings, md = world
    md = replace(
        md,
        universe=Universe.from_frames(
            md.universe.members, intervals=pd.read_csv(HANDWRITTEN_MEMBERSHIP)
        ),
    )
    real = walkforward.gate_step
    seen: list[tuple[str, pd.Timestamp, GateReport, bool]] = []

    def scripted(s: Settings, train: pd.DataFrame, *args: object, **kw: object) -> GateReport:
        report = real(s, train, *args, **kw)  # type: ignore[arg-type]
        assert isinstance(report, GateReport), report
        sector, known = str(train["sector"].iloc[0]), train["date"].max()
        seen.append((sector, known, report, args[3] is not None))
        accept = sector == "Energy" and known < pd.Timestamp("2023-01-01")
        return replace(report, decision="promote" if accept else "reject")

    monkeypatch.setattr(walkforward, "gate_step", scripted)
    res = walk_forward_signals(
        settings, md, START, END, horizon=1, period="quarter", train_days=250, sectors=SECTORS,
        gate_days=60,
    )  # fmt: skip
    gates = {info["period"]: info["gate"] for info in res.periods}
    Q1, Q2 = gates  # the two quarters, in order
    assert gates[Q1]["Energy"]["trades"] == Q1 and gates[Q1]["Utilities"]["trades"] is None
    assert gates[Q2]["Energy"] == {
        "decision": "reject",
        "reason": gates[Q2]["Energy"]["reason"],
        "look": 2,  # the sector's second decision: the gate spends alpha over them
        "trades": Q1,  # refused: the model accepted for Q1 keeps trading
    }
    assert gates[Q1]["Utilities"]["look"] == 1
    assert [r.look["number"] for s, _, r, _ in seen if s == "Energy"] == [1, 2]
    assert gates[Q2]["Utilities"]["trades"] is None
    gated = res.gated
    assert gated is not None and len(gated) > 0
    assert set(gated["sector"]) == {"Energy"}  # Utilities was never accepted
    assert set(gated["period"]) == {Q1, Q2}
    # Production is compared from the second quarter on, and only where one was accepted.
    by = {(sector, known < pd.Timestamp("2023-01-01")): p for sector, known, _, p in seen}
    assert by == {
        ("Energy", True): False,
        ("Utilities", True): False,
        ("Energy", False): True,
        ("Utilities", False): False,
    }
    energy_q2 = next(r for s, k, r, _ in seen if s == "Energy" and k > pd.Timestamp("2023-01-01"))
    assert energy_q2.rule(RULE_PRODUCTION).checks[0].name == "mean_ic"  # a real comparison
    # Point in time: EN02 joins 2023-02-15, EN03 leaves 2023-03-10, EN04 rejoined 2023-01-03
    # after leaving in 2020, UT02 left 2022-12-30.
    for book in (res.signals, gated):
        day = pd.to_datetime(book["date"])
        assert not ((book["symbol"] == "EN02") & (day < "2023-02-15")).any()
        assert not ((book["symbol"] == "EN03") & (day > "2023-03-10")).any()
        assert "UT02" not in set(book["symbol"])
    px = md.prices[md.prices["symbol"].map(md.universe.sector_map()).isin(SECTORS)]
    px = px[px["date"].between(pd.Timestamp(START), pd.Timestamp(END))]
    assert res.scored == len(md.universe.point_in_time(px)) < len(px)
    # The gate windows (the last 60 labelled days of 2022 for Q1) are judged on members
    # only: EN04 was not one then, and is absent from Energy's rows.
    for sector, known, report, _ in seen:
        window = pd.to_datetime(pd.Series(report.window).loc[["first_date", "last_date"]])
        rows = md.prices[
            md.prices["symbol"].map(md.universe.sector_map()).eq(sector)
            & md.prices["date"].between(window.iloc[0], window.iloc[1])
        ]
        px_in = md.universe.point_in_time(rows)
        assert report.window["n_rows"] == len(px_in), (sector, known)
        if sector == "Energy" and known < pd.Timestamp("2023-01-01"):
            assert len(px_in) < len(rows)
