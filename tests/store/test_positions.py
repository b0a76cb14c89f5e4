"""The positions repository's optimistic concurrency, on SQLite and on the machine's
PostgreSQL: a position written from a stale read rolls back the whole scan, and the
conditional update refuses a writer that slips in after the up-front check."""

from __future__ import annotations

from dataclasses import replace

import pytest

from turbomode.store import ConcurrentUpdateError, SignalStore

from .conftest import D2, D3, event, first_scan, pos, sig, snapshot, twin

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
