"""The scans repository on SQLite and on the machine's PostgreSQL: a scan's round trip, the
active set and first_seen, re-runs replacing a date, delete_run, a scan killed midway, and bad
input refused before anything is written."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from turbomode.records.positions import Position
from turbomode.records.signals import Signal
from turbomode.store import ConcurrentUpdateError, InvalidRecordError, SignalStore, StaleScanError

from .conftest import D1, D2, event, first_scan, pos, sig, snapshot

# ---- round trip -----------------------------------------------------------------------------


def test_round_trip_of_signals_positions_events_and_run(store: SignalStore) -> None:
    signals = [sig("AAPL", 1), sig("AAPL", 5), sig("XOM", 2, "SELL", close=101.5, stop=104.0)]
    flat = Position(symbol="MSFT")  # every optional field None
    events = [
        event("AAPL", D1),
        event("AAPL", D1, "signal", price=None, size_change=0.0, stop_after=None, detail="BUY"),
        event("AAPL", D1, "signal", price=None, size_change=0.0, stop_after=None, detail="BUY2"),
    ]
    started = datetime(2024, 3, 4, 22, 0, tzinfo=UTC)
    run_id = store.write_scan(
        D1,
        signals,
        failures={"ZZZ": "no features"},
        positions=[pos("AAPL"), flat],
        events=events,
        summary={"n_buy": 2, "hit_rate": float("nan"), "asof": D1},
        model_versions={"Energy/2": "en-h2-v1"},
        n_symbols=80,
        started_at=started,
    )
    assert store.active_signals() == sorted(signals, key=lambda s: (s.symbol, s.horizon))
    assert store.positions() == {
        "AAPL": replace(pos("AAPL"), version=1),
        "MSFT": replace(flat, version=1),
    }
    assert store.position_events() == events
    assert store.position_events("MSFT") == []
    assert store.failures(D1) == {"ZZZ": "no features"}

    run = store.run(D1)
    assert run is not None
    assert (run.id, run.scan_date, run.status, run.started_at) == (run_id, D1, "complete", started)
    assert (run.n_symbols, run.n_scored, run.n_failed, run.n_signals) == (80, 79, 1, 3)
    assert run.summary == {"n_buy": 2, "hit_rate": None, "asof": "2024-03-04"}
    assert run.model_versions == {"Energy/2": "en-h2-v1"}
    assert run.finished_at is not None and run.finished_at.tzinfo is not None
    assert store.run(D2) is None

    history = store.signal_history()
    assert len(history) == 3
    assert set(history["run_id"]) == {run_id}
    assert (history["scan_date"] == pd.Timestamp(D1)).all()
    assert (history["first_seen"] == pd.Timestamp(D1)).all()
    xom = history[history["symbol"] == "XOM"].iloc[0]
    assert (xom["side"], xom["close"], xom["stop"]) == ("SELL", 101.5, 104.0)
    assert list(store.signal_history(symbol="XOM")["symbol"]) == ["XOM"]
    assert store.signal_history(since=D2).empty

    runs = store.runs()
    assert list(runs["scan_date"]) == [pd.Timestamp(D1)]
    assert str(runs["started_at"].dt.tz) == "UTC"


def test_active_set_is_replaced_and_first_seen_carries_over_while_the_side_holds(
    store: SignalStore,
) -> None:
    first_scan(store)
    moved = store.positions_before(D2)
    store.write_scan(
        D2,
        [sig("AAPL", 1, day=D2), sig("AAPL", 5, "SELL", day=D2), sig("MSFT", 1, day=D2)],
        positions=[replace(moved["AAPL"], persistence=3)],
    )
    active = {(s.symbol, s.horizon): s for s in store.active_signals()}
    assert set(active) == {("AAPL", 1), ("AAPL", 5), ("MSFT", 1)}  # XOM gone
    assert active["AAPL", 5].side == "SELL"
    seen = store.signal_history(since=D2).set_index(["symbol", "horizon"])["first_seen"]
    assert seen["AAPL", 1] == pd.Timestamp(D1)  # same side as yesterday: streak continues
    assert seen["AAPL", 5] == pd.Timestamp(D2)  # flipped side: a new signal
    assert seen["MSFT", 1] == pd.Timestamp(D2)
    assert len(store.signal_history()) == 6


# ---- re-runs --------------------------------------------------------------------------------


def test_rerunning_a_date_replaces_its_run(store: SignalStore) -> None:
    first_scan(store)

    def scan_d2(signals: list[Signal], reason: str) -> int:
        book = store.positions_before(D2)
        aapl = replace(book["AAPL"], stop=187.9, partials_taken=1, size=0.5)
        return store.write_scan(
            D2,
            signals,
            failures={"ZZZ": reason},
            positions=[aapl, pos("NVDA")],
            events=[
                event("AAPL", D2, "partial_1r", size_change=-0.5, size_after=0.5),
                event("NVDA", D2),
            ],
            n_symbols=80,
        )

    scan_d2([sig("AAPL", 1, day=D2), sig("NVDA", 2, day=D2)], "first try")
    rerun = scan_d2([sig("AAPL", 1, day=D2), sig("MSFT", 5, day=D2)], "second try")

    runs = store.runs()
    assert list(runs["scan_date"]) == [pd.Timestamp(D1), pd.Timestamp(D2)]
    assert runs["scan_date"].is_unique
    assert store.run(D2) is not None and store.run(D2).id == rerun  # type: ignore[union-attr]
    d2 = store.signal_history(since=D2)
    assert sorted(zip(d2["symbol"], d2["horizon"], strict=True)) == [("AAPL", 1), ("MSFT", 5)]
    assert set(d2["run_id"]) == {rerun}
    assert len(store.signal_history()) == 5
    assert [(s.symbol, s.horizon) for s in store.active_signals()] == [("AAPL", 1), ("MSFT", 5)]
    assert [(e.symbol, e.date, e.kind) for e in store.position_events()] == [
        ("AAPL", D1, "open"),
        ("AAPL", D2, "partial_1r"),
        ("NVDA", D2, "open"),
    ]
    assert store.failures(D2) == {"ZZZ": "second try"}
    book = store.positions()
    # Each re-run started from the book before D2: versions advanced once, not twice.
    assert (book["AAPL"].version, book["AAPL"].size, book["NVDA"].version) == (2, 0.5, 1)


def test_rerun_from_the_post_run_book_is_refused(store: SignalStore) -> None:
    first_scan(store)
    after = store.positions()
    with pytest.raises(ConcurrentUpdateError, match="AAPL"):
        # D1 again, from the book D1 already produced: would apply D1 twice.
        store.write_scan(D1, [sig("AAPL", 1)], positions=[replace(after["AAPL"], size=0.5)])
    assert store.positions() == after
    assert store.run(D1) is not None and store.run(D1).n_signals == 3  # type: ignore[union-attr]


def test_older_dates_are_refused_and_delete_run_rewinds_the_latest(store: SignalStore) -> None:
    first_scan(store)
    after_d1 = snapshot(store)
    book = store.positions_before(D2)
    store.write_scan(
        D2,
        [sig("MSFT", 1, day=D2)],
        positions=[replace(book["AAPL"], state="flat", size=0.0), pos("NVDA")],
        events=[event("AAPL", D2, "stop", size_change=-1.0, size_after=0.0)],
    )
    with pytest.raises(StaleScanError, match="before the latest"):
        store.write_scan(D1, [sig("AAPL", 1)])
    with pytest.raises(StaleScanError):
        store.positions_before(D1)

    assert store.delete_run(D2) is True
    assert store.delete_run(D2) is False
    assert snapshot(store) == after_d1  # positions, active signals, history as after D1
    assert store.positions_before(D2) == after_d1["positions"]


# ---- a scan killed midway ---------------------------------------------------------------------


def test_a_killed_scan_leaves_the_previous_state_and_the_rerun_replaces_it(
    store: SignalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_scan(store)
    before = snapshot(store)

    def killed(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("killed: worker lost")

    # Dies after the run, signals, history, failures and positions were written.
    monkeypatch.setattr(SignalStore, "_write_events", killed)
    book = store.positions_before(D2)
    args: dict[str, Any] = {
        "signals": [sig("AAPL", 1, day=D2), sig("NVDA", 2, day=D2)],
        "failures": {"QQQQ": "stale prices"},
        "positions": [replace(book["AAPL"], size=0.5), pos("NVDA")],
        "events": [event("NVDA", D2)],
    }
    with pytest.raises(RuntimeError, match="killed"):
        store.write_scan(D2, **args)
    assert snapshot(store) == before
    # A killed re-run of an existing date keeps that date's earlier run, too.
    with pytest.raises(RuntimeError, match="killed"):
        store.write_scan(D1, [sig("MSFT", 1)], positions=[pos("MSFT")])
    assert snapshot(store) == before

    monkeypatch.undo()
    run_id = store.write_scan(D2, **args)
    runs = store.runs()
    assert list(runs["id"]) == [before["runs"][0]["id"], run_id]
    assert len(store.signal_history(since=D2)) == 2
    assert [e.kind for e in store.position_events("NVDA")] == ["open"]
    assert store.positions()["AAPL"].version == 2


def test_a_bad_row_in_the_middle_writes_nothing(store: SignalStore) -> None:
    first_scan(store)
    before = snapshot(store)
    bad = [sig("AAPL", 1, day=D2), sig("MSFT", 1, day=D2, confidence=math.nan), sig("XOM", 1)]
    with pytest.raises(InvalidRecordError, match=r"'MSFT'.*confidence.*NaN"):
        store.write_scan(D2, bad)
    with pytest.raises(InvalidRecordError, match="kind must be one of"):
        store.write_scan(D2, [], events=[event("AAPL", D2), event("AAPL", D2, "explode")])
    assert snapshot(store) == before


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signals": [sig("AAPL", confidence=float("nan"))]}, "confidence is missing"),
        ({"signals": [sig("AAPL", side="HOLD")]}, "side must be one of BUY, SELL"),
        ({"signals": [sig("AAPL", p_buy=1.4)]}, "p_buy must be a probability"),
        ({"signals": [sig("AAPL", close=float("inf"))]}, "close must be finite"),
        ({"signals": [sig("AAPL", horizon=0)]}, "horizon must be >= 1"),
        ({"signals": [sig("AAPL"), sig("AAPL")]}, r"more than one signal.*AAPL"),
        ({"signals": [], "positions": [pos("AAPL", state="sideways")]}, "state must be one of"),
        ({"signals": [], "positions": [pos("AAPL", size=-1.0)]}, "size must be >= 0"),
        ({"signals": [], "positions": [pos("A"), pos("A")]}, "more than one position"),
        ({"signals": [], "failures": [("AAPL", "x"), ("AAPL", "y")]}, "more than one failure"),
        ({"signals": [], "summary": {"model": object()}}, r"summary\.model: object"),
        ({"signals": [], "n_symbols": -1}, "n_symbols must be >= 0"),
    ],
)
def test_bad_scan_input_names_the_problem(
    sqlite_store: SignalStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        sqlite_store.write_scan(D1, **kwargs)
    assert sqlite_store.runs().empty


# ---- explanations ---------------------------------------------------------------------------


def test_explanations_live_with_the_run_that_issued_them(store: SignalStore) -> None:
    why = {"value": 0.4, "base": 0.05, "contributions": {"ret_1d": 0.3, "rsi_14": 0.05}}
    store.write_scan(D1, [sig("AAPL", 1), sig("XOM", 2, "SELL")], explanations={("AAPL", 1): why})
    assert store.explanations() == {("AAPL", 1, D1): why}
    # carried to D2 (issued on D1): its explanation stays the one of D1
    store.write_scan(D2, [sig("AAPL", 1), sig("MSFT", 5, day=D2)], explanations={("MSFT", 5): why})
    assert set(store.explanations()) == {("AAPL", 1, D1), ("MSFT", 5, D2)}
    assert set(store.explanations(symbol="MSFT")) == {("MSFT", 5, D2)}
    assert set(store.explanations(since=D2)) == {("MSFT", 5, D2)}
    # a re-run of D2 replaces its explanations; deleting it removes them
    store.write_scan(D2, [sig("AAPL", 1), sig("MSFT", 5, day=D2)])
    assert set(store.explanations()) == {("AAPL", 1, D1)}
    store.delete_run(D2)
    store.delete_run(D1)
    assert store.explanations() == {}


def test_an_explanation_of_a_signal_not_issued_by_the_run_is_refused(store: SignalStore) -> None:
    first_scan(store)
    before = snapshot(store)
    for key in (("AAPL", 1), ("TSLA", 1)):  # carried from D1 / not a signal at all
        with pytest.raises(InvalidRecordError, match="not a signal issued"):
            store.write_scan(D2, [sig("AAPL", 1)], explanations={key: {"value": 1.0}})
    assert snapshot(store) == before and store.explanations() == {}
