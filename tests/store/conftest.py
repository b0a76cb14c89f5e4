"""Store test helpers: hand-made signals, positions and events, a first scan to build on, and
what a reader sees of a store (to compare before and after a failed write). The stores
themselves are tests/conftest.py's ``fresh``, ``store`` and ``sqlite_store`` fixtures."""

from __future__ import annotations

from datetime import date
from typing import Any

from turbomode.records.positions import Position, PositionEvent
from turbomode.records.signals import Signal
from turbomode.store import SignalStore

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
