"""SignalStore on SQLite and on the machine's PostgreSQL: migrations, atomic scans, re-runs,
optimistic concurrency on positions and idempotent training samples."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from turbomode.records.positions import Position, PositionEvent
from turbomode.records.signals import Signal
from turbomode.signals.store import (
    VERSION_TABLE,
    ConcurrentUpdateError,
    InvalidRecordError,
    SignalStore,
    StaleScanError,
    StoreUnavailableError,
    metadata,
)

D1, D2, D3 = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)


def sig(symbol: str, horizon: int = 1, side: str = "BUY", day: date = D1, **kw: Any) -> Signal:
    values: dict[str, Any] = {
        "symbol": symbol,
        "sector": "Information Technology",
        "cap_class": "large",
        "horizon": horizon,
        "side": side,
        "signal_date": day,
        "p_buy": 0.61,
        "p_hold": 0.27,
        "p_sell": 0.12,
        "confidence": 0.61 if side == "BUY" else 0.12,
        "close": 187.25,
        "atr": 3.1,
        "entry_low": 186.5,
        "entry_high": 188.0,
        "stop": 182.6,
        "target": 196.55,
        "stop_distance": 4.65,
        "model_version": "it-h1-v3",
    }
    values.update(kw)
    return Signal(**values)


def pos(symbol: str, version: int = 0, **kw: Any) -> Position:
    values: dict[str, Any] = {
        "symbol": symbol,
        "state": "long",
        "sector": "Information Technology",
        "horizon": 5,
        "entry_date": D1,
        "entry_price": 187.9,
        "stop": 183.25,
        "target": 197.2,
        "initial_stop_distance": 4.65,
        "size": 1.0,
        "confidence": 0.64,
        "atr_at_entry": 3.1,
        "recent_signals": ["BUY", "HOLD", "BUY"],
        "persistence": 2,
        "partials_taken": 0,
        "realized_r": 0.0,
        "version": version,
    }
    values.update(kw)
    return Position(**values)


def event(symbol: str, day: date, kind: str = "open", **kw: Any) -> PositionEvent:
    values: dict[str, Any] = {
        "symbol": symbol,
        "date": day,
        "kind": kind,
        "price": 187.9,
        "size_change": 1.0,
        "size_after": 1.0,
        "stop_after": 183.25,
        "detail": "",
    }
    values.update(kw)
    return PositionEvent(**values)


def twin(store: SignalStore) -> SignalStore:
    """A second store object on the same database: another process's view."""
    return SignalStore(store.engine.url.render_as_string(hide_password=False), schema=store.schema)


def snapshot(store: SignalStore) -> dict[str, Any]:
    """Everything a reader can see, to compare before and after a failed write."""
    return {
        "runs": store.runs().drop(columns=["started_at", "finished_at"]).to_dict("records"),
        "active": store.active_signals(),
        "history": store.signal_history().to_dict("records"),
        "positions": store.positions(),
        "events": store.position_events(),
        "failures": {d: store.failures(d) for d in (D1, D2, D3)},
    }


def first_scan(store: SignalStore) -> int:
    return store.write_scan(
        D1,
        [sig("AAPL", 1), sig("AAPL", 5), sig("XOM", 2, "SELL")],
        failures={"ZZZ": "no features for 2024-03-04"},
        positions=[pos("AAPL")],
        events=[event("AAPL", D1)],
        summary={"n_buy": 2, "n_sell": 1},
        model_versions={"Information Technology/1": "it-h1-v3"},
        n_symbols=80,
    )


# ---- migrations -----------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op_and_matches_the_models(fresh: SignalStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert fresh.current_revision() is None
    head = fresh.head_revision()
    assert head is not None
    assert fresh.migrate() == head
    first_scan(fresh)
    assert fresh.migrate() == head  # second upgrade: nothing to do, data kept
    assert fresh.current_revision() == head
    assert len(fresh.runs()) == 1
    with fresh.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(ctx, metadata) == []  # migration and models do not drift


def test_relative_sqlite_url_creates_its_directory_with_wal_and_foreign_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SignalStore("sqlite:///data/nested/signals.db")
    store.migrate()
    assert (tmp_path / "data" / "nested" / "signals.db").exists()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.dispose()


def test_unsupported_url_and_schema_on_sqlite_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="sqlite and postgresql"):
        SignalStore("mysql://u@h/db")
    with pytest.raises(Exception, match="only for PostgreSQL"):
        SignalStore(f"sqlite:///{tmp_path}/x.db", schema="abc")


def test_an_unreachable_database_is_one_error_naming_it_without_the_password(
    tmp_path: Path, closed_port: int
) -> None:
    url = f"postgresql+psycopg://turbo:pw-secret@127.0.0.1:{closed_port}/test"
    with pytest.raises(StoreUnavailableError) as caught:
        SignalStore(url).migrate()
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to the signals store postgresql+psycopg://turbo:***@127.0.0.1:"
        f"{closed_port}/test: connection failed: "
    )
    assert "Connection refused" in message and "pw-secret" not in message
    assert "\n" not in message
    (tmp_path / "signals.db").mkdir()  # a directory where the SQLite file should be
    with pytest.raises(StoreUnavailableError, match=r"signals\.db: unable to open database"):
        SignalStore(f"sqlite:///{tmp_path}/signals.db").runs()


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


# ---- optimistic concurrency -------------------------------------------------------------------


def test_a_stale_position_version_raises_and_rolls_back_the_whole_scan(
    store: SignalStore,
) -> None:
    first_scan(store)
    other = twin(store)
    try:
        stale = store.positions_before(D2)  # this writer reads AAPL at version 1 ...
        fresh_book = other.positions_before(D2)
        other.write_scan(  # ... another writer saves D2 first
            D2, [sig("AAPL", 1, day=D2)], positions=[replace(fresh_book["AAPL"], persistence=5)]
        )
        before = snapshot(store)
        with pytest.raises(
            ConcurrentUpdateError, match=r"AAPL \(read at version 1, stored version 2"
        ):
            store.write_scan(
                D3,
                [sig("TSLA", 1, day=D3)],
                failures={"ZZZ": "x"},
                positions=[pos("TSLA"), replace(stale["AAPL"], size=0.25)],
                events=[event("TSLA", D3)],
            )
        assert snapshot(store) == before  # no D3 run, signals, history, TSLA or events
        assert store.positions()["AAPL"].persistence == 5
        with pytest.raises(ConcurrentUpdateError, match="no stored position"):
            store.write_scan(D3, [], positions=[pos("TSLA", version=4)])
        with pytest.raises(ConcurrentUpdateError, match="stored version 2"):
            store.write_scan(D3, [], positions=[pos("AAPL", version=0)])  # "new" but exists
    finally:
        other.dispose()


def test_the_conditional_update_catches_a_writer_that_slips_in_after_the_check(
    store: SignalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_scan(store)
    stale = store.positions_before(D2)
    store.write_scan(D2, [], positions=[replace(stale["AAPL"], persistence=9)])
    before = snapshot(store)
    # Skip the up-front check: the WHERE version = ... on the UPDATE must still refuse.
    monkeypatch.setattr(SignalStore, "_check_versions", staticmethod(lambda *_a: None))
    with pytest.raises(ConcurrentUpdateError, match="changed after version 1"):
        store.write_scan(D3, [sig("AAPL", 1, day=D3)], positions=[stale["AAPL"]])
    assert snapshot(store) == before


# ---- training samples -------------------------------------------------------------------------


def test_training_samples_are_idempotent(store: SignalStore) -> None:
    rows = pd.DataFrame(
        {
            "symbol": ["AAPL", "AAPL", "XOM"],
            "sector": ["Information Technology", "Information Technology", "Energy"],
            "horizon": [1, 5, 2],
            "signal_date": pd.to_datetime([D1, D1, D2]),
            "side": ["BUY", "BUY", "SELL"],
            "confidence": [0.61, 0.58, 0.55],
            "entry_price": [187.9, 187.9, 101.2],
            "exit_price": [189.0, float("nan"), 99.8],
            "exit_date": [pd.Timestamp(D2), pd.NaT, pd.Timestamp(D3)],
            "realized_return": [0.00585, None, 0.01383],
            "label": [2, 1, 0],
            "outcome": ["win", None, "win"],
        }
    )
    assert store.add_training_samples(rows) == 3
    assert store.add_training_samples(rows) == 0
    stored = store.training_samples()
    assert len(stored) == 3
    created = stored.set_index(["symbol", "horizon"])["created_at"]

    # The pending sample resolves later: an update, not a new sample.
    update = rows.iloc[[1]].to_dict("records")
    update[0].update(
        exit_price=180.0, exit_date=D3, realized_return=-0.042, outcome="loss", label=0
    )
    assert store.add_training_samples(update) == 0
    stored = store.training_samples().set_index(["symbol", "horizon"])
    assert len(stored) == 3
    assert (stored.loc[("AAPL", 5), "outcome"], stored.loc[("AAPL", 5), "label"]) == ("loss", 0)
    assert stored.loc[("AAPL", 5), "exit_date"] == pd.Timestamp(D3)
    assert (stored["created_at"] == created).all()  # first insert time kept
    assert rows["exit_price"].isna().iloc[1]  # the caller's frame untouched
    assert list(store.training_samples(since=D2)["symbol"]) == ["XOM"]
    assert store.add_training_samples([]) == 0


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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": 3}, "label must be one of 0, 1, 2"),
        ({"side": "HOLD"}, "side must be one of"),
        ({"outcome": "draw"}, "outcome must be one of win, loss, flat"),
        ({"confidence": float("nan")}, r"missing required value\(s\) \['confidence'\]"),
        ({"colour": "red"}, r"unknown column\(s\) \['colour'\]"),
        ({"signal_date": "yesterday"}, "signal_date must be a date"),
    ],
)
def test_bad_training_samples_name_the_problem(
    sqlite_store: SignalStore, change: dict[str, Any], message: str
) -> None:
    row = {
        "symbol": "AAPL",
        "sector": "Information Technology",
        "horizon": 1,
        "signal_date": D1,
        "side": "BUY",
        "confidence": 0.6,
        "entry_price": 187.9,
        "label": 2,
    }
    with pytest.raises(InvalidRecordError, match=message):
        sqlite_store.add_training_samples([row, {**row, "horizon": 2, **change}])
    assert sqlite_store.training_samples().empty
