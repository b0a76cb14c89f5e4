"""The positions repository: the book of open and flat positions, versioned for optimistic
concurrency, and the events position management records.

Scans write positions (see :mod:`turbomode.store.scans`): each carries the ``version`` it was
read at, and a write from a stale read raises :class:`ConcurrentUpdateError`. A run keeps the
rows it changed as JSON snapshots, so undoing it restores them exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import date, datetime
from typing import Any, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from turbomode.records.positions import EventKind, Position, PositionEvent, PositionState
from turbomode.store.engine import (
    ConcurrentUpdateError,
    InvalidRecordError,
    StoreBase,
    StoreError,
    as_date,
    as_float,
    as_int,
    as_str,
    one_of,
    req_float,
    utc,
)
from turbomode.store.tables import position_events, positions_t

POSITION_STATES: tuple[PositionState, ...] = get_args(PositionState)
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
POSITION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Position))
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PositionEvent))


def _position_row(p: Position) -> dict[str, Any]:
    if not isinstance(p, Position):
        raise InvalidRecordError(f"expected a Position, got {type(p).__name__}")
    where = f"position {p.symbol!r}"
    recent = p.recent_signals
    if not isinstance(recent, list) or not all(isinstance(x, str) for x in recent):
        raise InvalidRecordError(f"{where}: recent_signals must be a list of strings")
    size = req_float(p.size, f"{where}: size")
    if size < 0:
        raise InvalidRecordError(f"{where}: size must be >= 0, got {size}")
    return {
        "symbol": as_str(p.symbol, f"{where}: symbol"),
        "state": one_of(p.state, POSITION_STATES, f"{where}: state"),
        "sector": None if p.sector is None else as_str(p.sector, f"{where}: sector"),
        "horizon": None if p.horizon is None else as_int(p.horizon, f"{where}: horizon", minimum=1),
        "entry_date": None
        if p.entry_date is None
        else as_date(p.entry_date, f"{where}: entry_date"),
        "entry_price": as_float(p.entry_price, f"{where}: entry_price", optional=True),
        "stop": as_float(p.stop, f"{where}: stop", optional=True),
        "target": as_float(p.target, f"{where}: target", optional=True),
        "initial_stop_distance": as_float(
            p.initial_stop_distance, f"{where}: initial_stop_distance", optional=True
        ),
        "size": size,
        "confidence": as_float(p.confidence, f"{where}: confidence", optional=True),
        "atr_at_entry": as_float(p.atr_at_entry, f"{where}: atr_at_entry", optional=True),
        "recent_signals": list(recent),
        "persistence": as_int(p.persistence, f"{where}: persistence", minimum=0),
        "partials_taken": as_int(p.partials_taken, f"{where}: partials_taken", minimum=0),
        "realized_r": req_float(p.realized_r, f"{where}: realized_r"),
        "version": as_int(p.version, f"{where}: version", minimum=0),
    }


def validate_positions(items: Iterable[Position]) -> list[dict[str, Any]]:
    """The rows a scan writes, checked before its transaction opens; one per symbol."""
    rows = [_position_row(p) for p in items]
    dupes = sorted(k for k, n in Counter(r["symbol"] for r in rows).items() if n > 1)
    if dupes:
        raise InvalidRecordError(f"more than one position for symbol(s): {dupes}")
    return rows


def event_row(e: PositionEvent) -> dict[str, Any]:
    """One event as a row, checked before the scan's transaction opens."""
    if not isinstance(e, PositionEvent):
        raise InvalidRecordError(f"expected a PositionEvent, got {type(e).__name__}")
    where = f"event {e.kind!r} for {e.symbol!r} on {e.date!r}"
    size_after = req_float(e.size_after, f"{where}: size_after")
    if size_after < 0:
        raise InvalidRecordError(f"{where}: size_after must be >= 0, got {size_after}")
    return {
        "symbol": as_str(e.symbol, f"{where}: symbol"),
        "date": as_date(e.date, f"{where}: date"),
        "kind": one_of(e.kind, EVENT_KINDS, f"{where}: kind"),
        "price": as_float(e.price, f"{where}: price", optional=True),
        "size_change": req_float(e.size_change, f"{where}: size_change"),
        "size_after": size_after,
        "stop_after": as_float(e.stop_after, f"{where}: stop_after", optional=True),
        "detail": as_str(e.detail, f"{where}: detail", allow_empty=True),
    }


def snapshot_of(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored position row as JSON, to restore it exactly when its run is undone."""
    out = {k: row[k] for k in (*POSITION_FIELDS, "updated_at")}
    out["entry_date"] = None if row["entry_date"] is None else row["entry_date"].isoformat()
    out["updated_at"] = utc(row["updated_at"]).isoformat()
    return out


def from_snapshot(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The row :func:`snapshot_of` kept, as it was stored."""
    out = dict(snap)
    out["entry_date"] = (
        None if snap["entry_date"] is None else date.fromisoformat(snap["entry_date"])
    )
    out["updated_at"] = datetime.fromisoformat(snap["updated_at"])
    return out


def to_position(row: Mapping[Any, Any]) -> Position:
    """A stored row as the record position management works on, version included."""
    return Position(
        **{k: row[k] for k in POSITION_FIELDS if k != "recent_signals"},
        recent_signals=list(row["recent_signals"] or []),
    )


class PositionRepository(StoreBase):
    """Reads the book and events; the conditional writes and event rows a scan makes."""

    @staticmethod
    def _check_versions(rows: list[dict[str, Any]], stored: Mapping[str, Any]) -> None:
        stale = []
        for r in rows:
            have = stored[r["symbol"]]["version"] if r["symbol"] in stored else None
            if (have is None and r["version"] != 0) or (have is not None and have != r["version"]):
                shown = "no stored position" if have is None else f"stored version {have}"
                stale.append(f"{r['symbol']} (read at version {r['version']}, {shown})")
        if stale:
            raise ConcurrentUpdateError(
                "positions changed since they were read: "
                + ", ".join(stale)
                + "; nothing from this scan was saved — re-read positions and run it again"
            )

    @staticmethod
    def _save_positions(
        conn: Connection, rows: list[dict[str, Any]], stored: Mapping[str, Any], now: datetime
    ) -> None:
        """Conditional writes (``WHERE version = read version``) keep the check race-free even
        against a writer that committed after the versions were read."""
        for r in rows:
            values = {**r, "version": r["version"] + 1, "updated_at": now}
            if r["symbol"] not in stored:
                try:
                    conn.execute(sa.insert(positions_t).values(values))
                except IntegrityError as exc:
                    raise ConcurrentUpdateError(
                        f"position {r['symbol']} was created by another writer; nothing from "
                        f"this scan was saved"
                    ) from exc
                continue
            done = conn.execute(
                sa.update(positions_t)
                .where(positions_t.c.symbol == r["symbol"], positions_t.c.version == r["version"])
                .values(values)
            )
            if done.rowcount != 1:
                raise ConcurrentUpdateError(
                    f"position {r['symbol']} changed after version {r['version']} was read; "
                    f"nothing from this scan was saved"
                )

    def _write_events(
        self, conn: Connection, run_id: int, day: date, rows: list[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        seq: Counter[tuple[str, date, str]] = Counter()
        out = []
        for r in rows:
            key = (r["symbol"], r["date"], r["kind"])
            out.append({**r, "seq": seq[key], "run_id": run_id, "scan_date": day})
            seq[key] += 1
        try:
            conn.execute(sa.insert(position_events), out)
        except IntegrityError as exc:
            raise StoreError(
                f"scan {day}: a position event duplicates one recorded by another scan "
                f"(same symbol, date and kind): {exc.orig}"
            ) from exc

    def positions(self) -> dict[str, Position]:
        """The current book, by symbol; each Position carries the version to write back."""
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(sa.select(positions_t).order_by(positions_t.c.symbol)).mappings()
            )
        return {r["symbol"]: to_position(r) for r in rows}

    def position_events(self, symbol: str | None = None) -> list[PositionEvent]:
        """Position events in the order they happened (date, then as recorded)."""
        q = sa.select(*[position_events.c[c] for c in EVENT_FIELDS])
        if symbol is not None:
            q = q.where(position_events.c.symbol == symbol)
        q = q.order_by(position_events.c.date, position_events.c.id)
        with self.engine.connect() as conn:
            return [PositionEvent(**r) for r in conn.execute(q).mappings()]
