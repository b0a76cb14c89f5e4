"""The scans repository: scan runs, their failures, the active signals and their history.

A scan is written in ONE transaction (:meth:`ScanRepository.write_scan`): a scan killed midway
leaves the previous book intact, and re-running a date first undoes that date's earlier run
(its history, failures, events and the position changes it made, from a snapshot kept on the
run row), so a re-run replaces the run instead of stacking on top of it. Positions carry a
``version``; a write based on a stale read raises :class:`ConcurrentUpdateError` and rolls
back the whole scan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from turbomode.records.positions import Position, PositionEvent
from turbomode.records.signals import SIDES, Signal
from turbomode.store.engine import (
    ConcurrentUpdateError,
    InvalidRecordError,
    StaleScanError,
    as_date,
    as_int,
    as_str,
    jsonable,
    one_of,
    req_float,
    to_frame,
    upsert,
    utc,
    utc_now,
)
from turbomode.store.positions import (
    PositionRepository,
    event_row,
    from_snapshot,
    snapshot_of,
    to_position,
    validate_positions,
)
from turbomode.store.tables import (
    position_events,
    positions_t,
    scan_failures,
    scan_runs,
    signal_explanations,
    signal_history,
    signals_t,
)

RUN_STATUSES = ("running", "complete", "failed")
SIGNAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Signal))


@dataclass(frozen=True)
class ScanRun:
    """One recorded scan: when it ran, how it went, and what it was run with."""

    id: int
    scan_date: date
    started_at: datetime
    finished_at: datetime | None
    status: str
    n_symbols: int
    n_scored: int
    n_failed: int
    n_signals: int
    model_versions: dict[str, Any]
    summary: dict[str, Any]


RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ScanRun))


def _signal_row(s: Signal) -> dict[str, Any]:
    if not isinstance(s, Signal):
        raise InvalidRecordError(f"expected a Signal, got {type(s).__name__}")
    where = f"signal {s.symbol!r} horizon {s.horizon!r}"
    row: dict[str, Any] = {
        "symbol": as_str(s.symbol, f"{where}: symbol"),
        "sector": as_str(s.sector, f"{where}: sector"),
        "cap_class": as_str(s.cap_class, f"{where}: cap_class"),
        "horizon": as_int(s.horizon, f"{where}: horizon", minimum=1),
        "side": one_of(s.side, SIDES, f"{where}: side"),
        "signal_date": as_date(s.signal_date, f"{where}: signal_date"),
        "model_version": as_str(s.model_version, f"{where}: model_version"),
    }
    for name in ("p_buy", "p_hold", "p_sell", "confidence"):
        p = req_float(getattr(s, name), f"{where}: {name}")
        if not 0.0 <= p <= 1.0:
            raise InvalidRecordError(f"{where}: {name} must be a probability in [0, 1], got {p}")
        row[name] = p
    for name in ("close", "atr", "entry_low", "entry_high", "stop", "target", "stop_distance"):
        row[name] = req_float(getattr(s, name), f"{where}: {name}")
    return row


def _validate_signals(items: Iterable[Signal]) -> list[dict[str, Any]]:
    rows = [_signal_row(s) for s in items]
    dupes = [k for k, n in Counter((r["symbol"], r["horizon"]) for r in rows).items() if n > 1]
    if dupes:
        raise InvalidRecordError(f"more than one signal for (symbol, horizon): {sorted(dupes)}")
    return rows


def _validate_failures(
    failures: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, str]:
    pairs = list(failures.items()) if isinstance(failures, Mapping) else list(failures)
    out: dict[str, str] = {}
    for item in pairs:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidRecordError(f"a failure must be a (symbol, reason) pair, got {item!r}")
        symbol = as_str(item[0], "failure symbol")
        if symbol in out:
            raise InvalidRecordError(f"more than one failure for symbol {symbol!r}")
        out[symbol] = as_str(str(item[1]), f"failure reason for {symbol!r}")
    return out


def _validate_explanations(
    explanations: Mapping[tuple[str, int], Mapping[str, Any]],
    signal_rows: list[dict[str, Any]],
    day: date,
) -> list[dict[str, Any]]:
    """One row per explained signal; each must be a signal this run issues (dated ``day``)."""
    issued = {(r["symbol"], r["horizon"]): r for r in signal_rows if r["signal_date"] == day}
    rows = []
    for key, payload in explanations.items():
        if key not in issued:
            raise InvalidRecordError(f"explanation for {key}: not a signal issued on {day}")
        if not isinstance(payload, Mapping):
            raise InvalidRecordError(f"explanation for {key}: expected a mapping")
        rows.append(
            {
                "symbol": key[0],
                "horizon": key[1],
                "signal_date": day,
                "model_version": issued[key]["model_version"],
                "explanation": jsonable(dict(payload), f"explanation {key}"),
            }
        )
    return rows


class ScanRepository(PositionRepository):
    """Writes a night's scan (and undoes one) atomically; reads runs and signals back."""

    def write_scan(
        self,
        scan_date: date,
        signals: Iterable[Signal],
        failures: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        positions: Iterable[Position] = (),
        events: Iterable[PositionEvent] = (),
        summary: Mapping[str, Any] | None = None,
        model_versions: Mapping[str, Any] | None = None,
        n_symbols: int | None = None,
        *,
        started_at: datetime | None = None,
        explanations: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    ) -> int:
        """Record one scan atomically and return its run id.

        ``signals`` is the complete active set after the scan (it replaces the active table
        and is appended to the history); ``positions`` are the positions the scan changed,
        each carrying the ``version`` it was read at; ``failures`` maps symbol to reason.
        An earlier run for the same date is undone first (history, failures, events, and its
        position changes), so a re-run must start from :meth:`positions_before`. A scan for
        a date older than the latest run raises :class:`StaleScanError`; a stale position
        version raises :class:`ConcurrentUpdateError`; either way nothing is written.
        ``explanations`` ((symbol, horizon) → JSON) belong to signals issued by this run.
        """
        day = as_date(scan_date, "scan_date")
        signal_rows = _validate_signals(signals)
        explanation_rows = _validate_explanations(explanations or {}, signal_rows, day)
        failure_map = _validate_failures(failures)
        position_rows = validate_positions(positions)
        event_rows = [event_row(e) for e in events]
        summary_json = jsonable(dict(summary or {}), "summary")
        versions_json = jsonable(dict(model_versions or {}), "model_versions")
        if n_symbols is None:
            n_symbols = len({r["symbol"] for r in signal_rows} | set(failure_map))
        n_symbols = as_int(n_symbols, "n_symbols", minimum=len(failure_map))
        start = utc(started_at) if started_at is not None else utc_now()

        with self._write() as conn:
            self._check_not_stale(conn, day)
            self._undo_run(conn, day)
            stored = {r["symbol"]: r for r in conn.execute(sa.select(positions_t)).mappings()}
            before = {
                r["symbol"]: (snapshot_of(stored[r["symbol"]]) if r["symbol"] in stored else None)
                for r in position_rows
            }
            self._check_versions(position_rows, stored)
            now = utc_now()
            try:
                run_id: int = conn.execute(
                    sa.insert(scan_runs)
                    .values(
                        scan_date=day,
                        started_at=start,
                        finished_at=now,
                        status="complete",
                        n_symbols=n_symbols,
                        n_scored=n_symbols - len(failure_map),
                        n_failed=len(failure_map),
                        n_signals=len(signal_rows),
                        model_versions=versions_json,
                        summary=summary_json,
                        positions_before=before,
                    )
                    .returning(scan_runs.c.id)
                ).scalar_one()
            except IntegrityError as exc:  # PostgreSQL: a concurrent scan of the same date
                raise ConcurrentUpdateError(
                    f"another scan for {day} was written at the same time; nothing from this "
                    f"scan was saved"
                ) from exc
            self._write_signals(conn, run_id, day, signal_rows)
            if failure_map:
                conn.execute(
                    sa.insert(scan_failures),
                    [{"run_id": run_id, "symbol": s, "reason": r} for s, r in failure_map.items()],
                )
            self._save_positions(conn, position_rows, stored, now)
            self._write_events(conn, run_id, day, event_rows)
            if explanation_rows:
                conn.execute(
                    sa.insert(signal_explanations),
                    [{**r, "run_id": run_id} for r in explanation_rows],
                )
        return run_id

    def delete_run(self, scan_date: date) -> bool:
        """Undo the latest scan: its records go, positions return to their state before it and
        the active signals to the previous run's. Returns False when there was no such run."""
        day = as_date(scan_date, "scan_date")
        with self._write() as conn:
            self._check_not_stale(conn, day)
            if not self._undo_run(conn, day):
                return False
            prev = self._previous_run_id(conn, day)
            conn.execute(sa.delete(signals_t))
            if prev is not None:
                cols = [signal_history.c[c] for c in (*SIGNAL_FIELDS, "first_seen", "run_id")]
                conn.execute(
                    sa.insert(signals_t).from_select(
                        [c.name for c in cols],
                        sa.select(*cols).where(signal_history.c.run_id == prev),
                    )
                )
        return True

    def positions_before(self, scan_date: date) -> dict[str, Position]:
        """The book a scan for ``scan_date`` must start from: the current positions, or, when
        that date already has a run (a re-run), the positions as they were before it."""
        day = as_date(scan_date, "scan_date")
        with self.engine.connect() as conn:
            self._check_not_stale(conn, day)
            book = {r["symbol"]: dict(r) for r in conn.execute(sa.select(positions_t)).mappings()}
            snap = conn.execute(
                sa.select(scan_runs.c.positions_before).where(scan_runs.c.scan_date == day)
            ).scalar_one_or_none()
        for symbol, state in (snap or {}).items():
            if state is None:
                book.pop(symbol, None)
            else:
                book[symbol] = from_snapshot(state)
        return {s: to_position(book[s]) for s in sorted(book)}

    def _check_not_stale(self, conn: Connection, day: date) -> None:
        latest = conn.execute(
            sa.select(sa.func.max(scan_runs.c.scan_date)).where(scan_runs.c.status == "complete")
        ).scalar_one_or_none()
        if latest is not None and day < latest:
            raise StaleScanError(
                f"scan date {day} is before the latest recorded scan {latest}: writing it would "
                f"rewind active signals and positions; replay past dates into a work directory of "
                "their own (turbomode replay --start … --end … --work DIR)"
            )

    def _previous_run_id(self, conn: Connection, day: date) -> int | None:
        return conn.execute(
            sa.select(scan_runs.c.id)
            .where(scan_runs.c.scan_date < day, scan_runs.c.status == "complete")
            .order_by(scan_runs.c.scan_date.desc())
            .limit(1)
        ).scalar_one_or_none()

    def _undo_run(self, conn: Connection, day: date) -> bool:
        """Delete the run for ``day`` and everything it recorded; restore its positions."""
        row = conn.execute(
            sa.select(scan_runs.c.id, scan_runs.c.positions_before).where(
                scan_runs.c.scan_date == day
            )
        ).first()
        if row is None:
            return False
        run_id, snapshot = row
        # Explicit deletes, not only ON DELETE CASCADE: correct even on a connection that did
        # not enable SQLite's foreign keys.
        for table in (
            position_events,
            scan_failures,
            signal_history,
            signals_t,
            signal_explanations,
        ):
            conn.execute(sa.delete(table).where(table.c.run_id == run_id))
        for symbol, state in (snapshot or {}).items():
            conn.execute(sa.delete(positions_t).where(positions_t.c.symbol == symbol))
            if state is not None:
                conn.execute(sa.insert(positions_t).values(**from_snapshot(state)))
        conn.execute(sa.delete(scan_runs).where(scan_runs.c.id == run_id))
        return True

    def _write_signals(
        self, conn: Connection, run_id: int, day: date, rows: list[dict[str, Any]]
    ) -> None:
        """Active table := exactly ``rows``; history += ``rows``. ``first_seen`` carries over
        while the previous run held the same side for the same (symbol, horizon)."""
        prev = self._previous_run_id(conn, day)
        streak: dict[tuple[str, int], tuple[str, date]] = {}
        if prev is not None:
            q = sa.select(
                signal_history.c.symbol,
                signal_history.c.horizon,
                signal_history.c.side,
                signal_history.c.first_seen,
            ).where(signal_history.c.run_id == prev)
            streak = {(s, h): (side, fs) for s, h, side, fs in conn.execute(q)}
        active = []
        for r in rows:
            side_seen = streak.get((r["symbol"], r["horizon"]))
            first_seen = side_seen[1] if side_seen and side_seen[0] == r["side"] else day
            active.append({**r, "first_seen": first_seen, "run_id": run_id})
        if active:
            upsert(conn, signals_t, active, ("symbol", "horizon"))
            conn.execute(sa.insert(signal_history), [{**a, "scan_date": day} for a in active])
        conn.execute(sa.delete(signals_t).where(signals_t.c.run_id != run_id))

    # ---- readers ----------------------------------------------------------------------------

    def active_signals(self) -> list[Signal]:
        """The active set written by the latest scan, by symbol then horizon."""
        q = sa.select(*[signals_t.c[c] for c in SIGNAL_FIELDS]).order_by(
            signals_t.c.symbol, signals_t.c.horizon
        )
        with self.engine.connect() as conn:
            return [Signal(**r) for r in conn.execute(q).mappings()]

    def signal_history(self, symbol: str | None = None, since: date | None = None) -> pd.DataFrame:
        """Every signal ever emitted (one row per scan date, symbol, horizon), oldest first."""
        cols = ("run_id", "scan_date", *SIGNAL_FIELDS, "first_seen")
        q = sa.select(*[signal_history.c[c] for c in cols])
        if symbol is not None:
            q = q.where(signal_history.c.symbol == symbol)
        if since is not None:
            q = q.where(signal_history.c.scan_date >= as_date(since, "since"))
        q = q.order_by(
            signal_history.c.scan_date, signal_history.c.symbol, signal_history.c.horizon
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return to_frame(rows, cols, dates=("scan_date", "signal_date", "first_seen"))

    def explanations(
        self, symbol: str | None = None, since: date | None = None
    ) -> dict[tuple[str, int, date], dict[str, Any]]:
        """Stored explanations by (symbol, horizon, signal date): of one symbol, or of the
        signals issued on or after ``since``."""
        q = sa.select(
            signal_explanations.c.symbol,
            signal_explanations.c.horizon,
            signal_explanations.c.signal_date,
            signal_explanations.c.explanation,
        )
        if symbol is not None:
            q = q.where(signal_explanations.c.symbol == symbol)
        if since is not None:
            q = q.where(signal_explanations.c.signal_date >= as_date(since, "since"))
        with self.engine.connect() as conn:
            return {(s, int(h), as_date(d, "signal_date")): e for s, h, d, e in conn.execute(q)}

    def runs(self) -> pd.DataFrame:
        """Every recorded scan, oldest first."""
        q = sa.select(*[scan_runs.c[c] for c in RUN_COLUMNS]).order_by(scan_runs.c.scan_date)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return to_frame(
            rows, RUN_COLUMNS, dates=("scan_date",), timestamps=("started_at", "finished_at")
        )

    def run(self, scan_date: date) -> ScanRun | None:
        """The run recorded for ``scan_date``, or None."""
        day = as_date(scan_date, "scan_date")
        q = sa.select(*[scan_runs.c[c] for c in RUN_COLUMNS]).where(scan_runs.c.scan_date == day)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            return None
        values = dict(row)
        values["started_at"] = utc(values["started_at"])
        if values["finished_at"] is not None:
            values["finished_at"] = utc(values["finished_at"])
        return ScanRun(**values)

    def failures(self, scan_date: date) -> dict[str, str]:
        """Symbol → reason for the symbols the scan of ``scan_date`` could not score."""
        day = as_date(scan_date, "scan_date")
        q = (
            sa.select(scan_failures.c.symbol, scan_failures.c.reason)
            .join(scan_runs, scan_runs.c.id == scan_failures.c.run_id)
            .where(scan_runs.c.scan_date == day)
            .order_by(scan_failures.c.symbol)
        )
        with self.engine.connect() as conn:
            return {s: r for s, r in conn.execute(q)}
