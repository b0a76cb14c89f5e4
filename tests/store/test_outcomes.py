"""The outcomes repository's training samples, on SQLite and on the machine's PostgreSQL:
adding a sample twice updates it instead of duplicating it, and a bad sample is refused with
the problem named and nothing written."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from turbomode.store import InvalidRecordError, SignalStore

from .conftest import D1, D2, D3

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
