"""The persistent book of the nightly scan: runs, active signals, history, positions, events.

One ``SignalStore`` serves SQLite (the embedded default) and PostgreSQL (a cluster) through
SQLAlchemy Core; the schema is owned by the Alembic environment shipped in
``turbomode/signals/migrations`` and applied with :meth:`SignalStore.migrate`.

A scan is written in ONE transaction (:meth:`SignalStore.write_scan`): a scan killed midway
leaves the previous book intact, and re-running a date first undoes that date's earlier run
(its history, failures, events and the position changes it made, from a snapshot kept on the
run row), so a re-run replaces the run instead of stacking on top of it. Positions carry a
``version``; a write based on a stale read raises :class:`ConcurrentUpdateError` and rolls
back the whole scan.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from turbomode.errors import TurboModeError
from turbomode.records.positions import EventKind, Position, PositionEvent, PositionState
from turbomode.records.signals import SIDES, Signal
from turbomode.redaction import redact

__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "ConcurrentUpdateError",
    "InvalidRecordError",
    "ScanRun",
    "SignalStore",
    "StaleScanError",
    "StoreError",
    "StoreUnavailableError",
    "metadata",
]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Not Alembic's default "alembic_version": the signals store may share a database with other
# Alembic-managed schemas (Feast's registry lives in the same PostgreSQL).
VERSION_TABLE = "signals_alembic_version"

RUN_STATUSES = ("running", "complete", "failed")
POSITION_STATES: tuple[PositionState, ...] = get_args(PositionState)
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
OUTCOMES = ("win", "loss", "flat")
LABELS = (0, 1, 2)  # SELL, HOLD, BUY

_WRITE_OPTION = "turbomode_write"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class StoreError(TurboModeError):
    """The signals store could not do what was asked."""


class InvalidRecordError(StoreError, ValueError):
    """A record handed to the store is malformed (NaN, unknown side, missing field, ...)."""


class ConcurrentUpdateError(StoreError):
    """A position changed in the store after the caller read it; nothing was written."""


class StaleScanError(StoreError):
    """A scan for a date older than the latest recorded scan: it would rewind the book."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached (down, wrong host or port, refused, lost connection)."""


# --------------------------------------------------------------------------------------------
# Schema. The migration in migrations/versions is the source of truth for the database; this
# metadata mirrors it for queries (a test compares the two so they cannot drift).

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TS = sa.DateTime(timezone=True)


def _signal_columns() -> list[sa.Column[Any]]:
    """Every ``Signal`` field, shared by the active table and the history."""
    return [
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("sector", sa.String(64), nullable=False),
        sa.Column("cap_class", sa.String(16), nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("signal_date", sa.Date, nullable=False),
        sa.Column("p_buy", sa.Float, nullable=False),
        sa.Column("p_hold", sa.Float, nullable=False),
        sa.Column("p_sell", sa.Float, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("atr", sa.Float, nullable=False),
        sa.Column("entry_low", sa.Float, nullable=False),
        sa.Column("entry_high", sa.Float, nullable=False),
        sa.Column("stop", sa.Float, nullable=False),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("stop_distance", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
    ]


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("scan_runs.id", ondelete="CASCADE")


scan_runs = sa.Table(
    "scan_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scan_date", sa.Date, nullable=False, unique=True),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("finished_at", _TS, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_symbols", sa.Integer, nullable=False),
    sa.Column("n_scored", sa.Integer, nullable=False),
    sa.Column("n_failed", sa.Integer, nullable=False),
    sa.Column("n_signals", sa.Integer, nullable=False),
    sa.Column("model_versions", sa.JSON, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    # {symbol: position row before this run, or null when it had none}: undoes the run.
    sa.Column("positions_before", sa.JSON, nullable=False),
    sa.CheckConstraint("status IN ('running', 'complete', 'failed')", name="status"),
)

scan_failures = sa.Table(
    "scan_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, _run_fk(), nullable=False, index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("run_id", "symbol"),
)

# ``signals_t``/``positions_t``: the plain names are write_scan's parameters.
signals_t = sa.Table(
    "signals",
    metadata,
    *_signal_columns(),
    sa.Column("first_seen", sa.Date, nullable=False),
    sa.Column("run_id", sa.Integer, _run_fk(), nullable=False, index=True),
    sa.PrimaryKeyConstraint("symbol", "horizon"),
    sa.CheckConstraint("side IN ('BUY', 'SELL')", name="side"),
)

signal_history = sa.Table(
    "signal_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, _run_fk(), nullable=False, index=True),
    sa.Column("scan_date", sa.Date, nullable=False),
    *_signal_columns(),
    sa.Column("first_seen", sa.Date, nullable=False),
    sa.UniqueConstraint("scan_date", "symbol", "horizon"),
    sa.Index("ix_signal_history_symbol_scan_date", "symbol", "scan_date"),
    sa.CheckConstraint("side IN ('BUY', 'SELL')", name="side"),
)

positions_t = sa.Table(
    "positions",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("sector", sa.String(64), nullable=True),
    sa.Column("horizon", sa.Integer, nullable=True),
    sa.Column("entry_date", sa.Date, nullable=True),
    sa.Column("entry_price", sa.Float, nullable=True),
    sa.Column("stop", sa.Float, nullable=True),
    sa.Column("target", sa.Float, nullable=True),
    sa.Column("initial_stop_distance", sa.Float, nullable=True),
    sa.Column("size", sa.Float, nullable=False),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("atr_at_entry", sa.Float, nullable=True),
    sa.Column("recent_signals", sa.JSON, nullable=False),
    sa.Column("persistence", sa.Integer, nullable=False),
    sa.Column("partials_taken", sa.Integer, nullable=False),
    sa.Column("realized_r", sa.Float, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.CheckConstraint("state IN ('flat', 'long', 'short')", name="state"),
)

position_events = sa.Table(
    "position_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, _run_fk(), nullable=False, index=True),
    sa.Column("scan_date", sa.Date, nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    # Ordinal among one scan's events with the same (symbol, date, kind).
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("size_change", sa.Float, nullable=False),
    sa.Column("size_after", sa.Float, nullable=False),
    sa.Column("stop_after", sa.Float, nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.UniqueConstraint("symbol", "date", "kind", "seq"),
)

training_samples = sa.Table(
    "training_samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("sector", sa.String(64), nullable=False),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("signal_date", sa.Date, nullable=False, index=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("entry_price", sa.Float, nullable=False),
    sa.Column("exit_price", sa.Float, nullable=True),
    sa.Column("exit_date", sa.Date, nullable=True),
    sa.Column("realized_return", sa.Float, nullable=True),
    sa.Column("label", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(8), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.UniqueConstraint("symbol", "horizon", "signal_date"),
    sa.CheckConstraint("side IN ('BUY', 'SELL')", name="side"),
    sa.CheckConstraint("label IN (0, 1, 2)", name="label"),
    sa.CheckConstraint("outcome IS NULL OR outcome IN ('win', 'loss', 'flat')", name="outcome"),
    # Feature vector at signal time ({name: value}), read point-in-time from the offline store.
    sa.Column("features", sa.JSON, nullable=True),
)

# One row per issued signal: pending until its hold period is over and its prices are known.
signal_outcomes = sa.Table(
    "signal_outcomes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("sector", sa.String(64), nullable=False),
    sa.Column("cap_class", sa.String(16), nullable=False),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("signal_date", sa.Date, nullable=False),
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("stop", sa.Float, nullable=False),
    sa.Column("target", sa.Float, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    sa.Column("hold_days", sa.Integer, nullable=False),
    sa.Column("rule", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("entry_date", sa.Date, nullable=True),
    sa.Column("entry_price", sa.Float, nullable=True),
    sa.Column("exit_date", sa.Date, nullable=True),
    sa.Column("exit_price", sa.Float, nullable=True),
    sa.Column("realized_return", sa.Float, nullable=True),
    sa.Column("side_return", sa.Float, nullable=True),
    sa.Column("mfe", sa.Float, nullable=True),
    sa.Column("mae", sa.Float, nullable=True),
    sa.Column("first_hit", sa.String(8), nullable=True),
    sa.Column("label", sa.Integer, nullable=True),
    sa.Column("correct", sa.Boolean, nullable=True),
    sa.Column("resolved_at", _TS, nullable=True),
    sa.Column("sampled", sa.Boolean, nullable=False),
    sa.UniqueConstraint("symbol", "horizon", "signal_date"),
    sa.CheckConstraint("side IN ('BUY', 'SELL')", name="side"),
    sa.CheckConstraint("status IN ('pending', 'resolved')", name="status"),
)

retrain_runs = sa.Table(
    "retrain_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", _TS, nullable=False),
    sa.Column("finished_at", _TS, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_new_samples", sa.Integer, nullable=False),
    sa.Column("max_sample_id", sa.Integer, nullable=False),
    # {registry key: production version or null} when the run started: what a crash restores.
    sa.Column("pointers_before", sa.JSON, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.CheckConstraint(
        "status IN ('running', 'promoted', 'kept', 'skipped', 'failed', 'aborted')",
        name="status",
    ),
)
OUTCOME_COLUMNS: tuple[str, ...] = tuple(c.name for c in signal_outcomes.columns)
RETRAIN_COLUMNS: tuple[str, ...] = tuple(c.name for c in retrain_runs.columns)

SIGNAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Signal))
POSITION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Position))
EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PositionEvent))
TRAINING_KEY = ("symbol", "horizon", "signal_date")
TRAINING_REQUIRED = (*TRAINING_KEY, "sector", "side", "confidence", "entry_price", "label")
TRAINING_OPTIONAL = (
    "exit_price",
    "exit_date",
    "realized_return",
    "outcome",
    "created_at",
    "features",
)
TRAINING_COLUMNS = ("id", *TRAINING_REQUIRED, *TRAINING_OPTIONAL)


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


# --------------------------------------------------------------------------------------------
# Validation: bad input fails before the transaction opens, with the record named.


def _as_date(value: Any, what: str) -> date:
    if isinstance(value, pd.Timestamp | datetime):
        if pd.isna(value):
            raise InvalidRecordError(f"{what} is missing (NaT)")
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidRecordError(f"{what} is missing (NaT)")
        return pd.Timestamp(value).date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidRecordError(f"{what} must be a date, got {value!r}")


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _as_float(value: Any, what: str, *, optional: bool = False) -> float | None:
    if _is_missing(value):
        if optional:
            return None
        raise InvalidRecordError(f"{what} is missing (None/NaN)")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidRecordError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidRecordError(f"{what} must be finite, got {out}")
    return out


def _req_float(value: Any, what: str) -> float:
    out = _as_float(value, what)
    assert out is not None
    return out


def _as_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidRecordError(f"{what} must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise InvalidRecordError(f"{what} must be >= {minimum}, got {out}")
    return out


def _as_str(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InvalidRecordError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _one_of(value: Any, allowed: Sequence[Any], what: str) -> Any:
    if value not in allowed:
        raise InvalidRecordError(
            f"{what} must be one of {', '.join(map(str, allowed))}; got {value!r}"
        )
    return value


def _signal_row(s: Signal) -> dict[str, Any]:
    if not isinstance(s, Signal):
        raise InvalidRecordError(f"expected a Signal, got {type(s).__name__}")
    where = f"signal {s.symbol!r} horizon {s.horizon!r}"
    row: dict[str, Any] = {
        "symbol": _as_str(s.symbol, f"{where}: symbol"),
        "sector": _as_str(s.sector, f"{where}: sector"),
        "cap_class": _as_str(s.cap_class, f"{where}: cap_class"),
        "horizon": _as_int(s.horizon, f"{where}: horizon", minimum=1),
        "side": _one_of(s.side, SIDES, f"{where}: side"),
        "signal_date": _as_date(s.signal_date, f"{where}: signal_date"),
        "model_version": _as_str(s.model_version, f"{where}: model_version"),
    }
    for name in ("p_buy", "p_hold", "p_sell", "confidence"):
        p = _req_float(getattr(s, name), f"{where}: {name}")
        if not 0.0 <= p <= 1.0:
            raise InvalidRecordError(f"{where}: {name} must be a probability in [0, 1], got {p}")
        row[name] = p
    for name in ("close", "atr", "entry_low", "entry_high", "stop", "target", "stop_distance"):
        row[name] = _req_float(getattr(s, name), f"{where}: {name}")
    return row


def _validate_signals(items: Iterable[Signal]) -> list[dict[str, Any]]:
    rows = [_signal_row(s) for s in items]
    dupes = [k for k, n in Counter((r["symbol"], r["horizon"]) for r in rows).items() if n > 1]
    if dupes:
        raise InvalidRecordError(f"more than one signal for (symbol, horizon): {sorted(dupes)}")
    return rows


def _position_row(p: Position) -> dict[str, Any]:
    if not isinstance(p, Position):
        raise InvalidRecordError(f"expected a Position, got {type(p).__name__}")
    where = f"position {p.symbol!r}"
    recent = p.recent_signals
    if not isinstance(recent, list) or not all(isinstance(x, str) for x in recent):
        raise InvalidRecordError(f"{where}: recent_signals must be a list of strings")
    size = _req_float(p.size, f"{where}: size")
    if size < 0:
        raise InvalidRecordError(f"{where}: size must be >= 0, got {size}")
    return {
        "symbol": _as_str(p.symbol, f"{where}: symbol"),
        "state": _one_of(p.state, POSITION_STATES, f"{where}: state"),
        "sector": None if p.sector is None else _as_str(p.sector, f"{where}: sector"),
        "horizon": None
        if p.horizon is None
        else _as_int(p.horizon, f"{where}: horizon", minimum=1),
        "entry_date": None
        if p.entry_date is None
        else _as_date(p.entry_date, f"{where}: entry_date"),
        "entry_price": _as_float(p.entry_price, f"{where}: entry_price", optional=True),
        "stop": _as_float(p.stop, f"{where}: stop", optional=True),
        "target": _as_float(p.target, f"{where}: target", optional=True),
        "initial_stop_distance": _as_float(
            p.initial_stop_distance, f"{where}: initial_stop_distance", optional=True
        ),
        "size": size,
        "confidence": _as_float(p.confidence, f"{where}: confidence", optional=True),
        "atr_at_entry": _as_float(p.atr_at_entry, f"{where}: atr_at_entry", optional=True),
        "recent_signals": list(recent),
        "persistence": _as_int(p.persistence, f"{where}: persistence", minimum=0),
        "partials_taken": _as_int(p.partials_taken, f"{where}: partials_taken", minimum=0),
        "realized_r": _req_float(p.realized_r, f"{where}: realized_r"),
        "version": _as_int(p.version, f"{where}: version", minimum=0),
    }


def _validate_positions(items: Iterable[Position]) -> list[dict[str, Any]]:
    rows = [_position_row(p) for p in items]
    dupes = sorted(k for k, n in Counter(r["symbol"] for r in rows).items() if n > 1)
    if dupes:
        raise InvalidRecordError(f"more than one position for symbol(s): {dupes}")
    return rows


def _event_row(e: PositionEvent) -> dict[str, Any]:
    if not isinstance(e, PositionEvent):
        raise InvalidRecordError(f"expected a PositionEvent, got {type(e).__name__}")
    where = f"event {e.kind!r} for {e.symbol!r} on {e.date!r}"
    size_after = _req_float(e.size_after, f"{where}: size_after")
    if size_after < 0:
        raise InvalidRecordError(f"{where}: size_after must be >= 0, got {size_after}")
    return {
        "symbol": _as_str(e.symbol, f"{where}: symbol"),
        "date": _as_date(e.date, f"{where}: date"),
        "kind": _one_of(e.kind, EVENT_KINDS, f"{where}: kind"),
        "price": _as_float(e.price, f"{where}: price", optional=True),
        "size_change": _req_float(e.size_change, f"{where}: size_change"),
        "size_after": size_after,
        "stop_after": _as_float(e.stop_after, f"{where}: stop_after", optional=True),
        "detail": _as_str(e.detail, f"{where}: detail", allow_empty=True),
    }


def _validate_failures(
    failures: Mapping[str, str] | Iterable[tuple[str, str]],
) -> dict[str, str]:
    pairs = list(failures.items()) if isinstance(failures, Mapping) else list(failures)
    out: dict[str, str] = {}
    for item in pairs:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise InvalidRecordError(f"a failure must be a (symbol, reason) pair, got {item!r}")
        symbol = _as_str(item[0], "failure symbol")
        if symbol in out:
            raise InvalidRecordError(f"more than one failure for symbol {symbol!r}")
        out[symbol] = _as_str(str(item[1]), f"failure reason for {symbol!r}")
    return out


def _jsonable(obj: Any, where: str) -> Any:
    """JSON-safe copy: numpy scalars to Python, dates to ISO strings, NaN to null."""
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, datetime | date | pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | np.ndarray):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise InvalidRecordError(f"{where}: {type(obj).__name__} is not JSON-serializable")


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _snapshot_of(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A stored position row as JSON, to restore it exactly when its run is undone."""
    out = {k: row[k] for k in (*POSITION_FIELDS, "updated_at")}
    out["entry_date"] = None if row["entry_date"] is None else row["entry_date"].isoformat()
    out["updated_at"] = _utc(row["updated_at"]).isoformat()
    return out


def _from_snapshot(snap: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(snap)
    out["entry_date"] = (
        None if snap["entry_date"] is None else date.fromisoformat(snap["entry_date"])
    )
    out["updated_at"] = datetime.fromisoformat(snap["updated_at"])
    return out


def _to_position(row: Mapping[Any, Any]) -> Position:
    return Position(
        **{k: row[k] for k in POSITION_FIELDS if k != "recent_signals"},
        recent_signals=list(row["recent_signals"] or []),
    )


def _frame(
    rows: Sequence[Mapping[Any, Any]],
    columns: Sequence[str],
    dates: Sequence[str] = (),
    timestamps: Sequence[str] = (),
) -> pd.DataFrame:
    """Rows as a frame: dates as datetime64, timestamps as UTC datetime64."""
    frame = pd.DataFrame([dict(r) for r in rows], columns=list(columns))
    for c in dates:
        frame[c] = pd.to_datetime(frame[c])
    for c in timestamps:
        frame[c] = pd.to_datetime(frame[c], utc=True)
    return frame


# ============================================================================================
# PAPER WALLET (issue #9) — schema, records and helpers. Migration 0003_wallet creates these
# tables; the SignalStore methods are in the "paper wallet" block at the end of the class.
# A wallet's day is one transaction (:meth:`SignalStore.write_wallet_day`); its equity row is
# the day's commit marker and keeps, in ``positions_before``, the rows the day changed, so a
# re-run of the same day first restores them (no fill is ever recorded twice).

WALLET_RULES = ("atr", "smart")
_WALLET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _wallet_fk() -> sa.ForeignKey:
    return sa.ForeignKey("wallets.id", ondelete="CASCADE")


wallets_t = sa.Table(
    "wallets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("rules", sa.String(8), nullable=False),
    sa.Column("initial_cash", sa.Float, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("last_date", sa.Date, nullable=True),
    # Bumped by every day written: two runs of one wallet at once cannot both commit.
    sa.Column("version", sa.Integer, nullable=False),
    sa.CheckConstraint("rules IN ('atr', 'smart')", name="rules"),
    sa.CheckConstraint("initial_cash > 0", name="initial_cash"),
)

# One row per trade, open or closed. The engine's trade record (entry, shares, costs, exits
# so far) in columns; the exit policy's state (records.positions.Position or
# smart.exits.SmartPosition) as JSON in ``policy_state`` (turbomode.wallet.state encodes and
# decodes it).
wallet_positions = sa.Table(
    "wallet_positions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("wallet_id", sa.Integer, _wallet_fk(), nullable=False, index=True),
    sa.Column("trade_id", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("side", sa.String(8), nullable=False),
    sa.Column("sector", sa.String(64), nullable=False),
    sa.Column("regime", sa.String(16), nullable=True),
    sa.Column("tier", sa.String(16), nullable=True),
    sa.Column("strength", sa.Float, nullable=False),
    sa.Column("signal_date", sa.Date, nullable=False),
    sa.Column("entry_date", sa.Date, nullable=False),
    sa.Column("entry_price", sa.Float, nullable=False),
    sa.Column("entry_fill", sa.Float, nullable=False),
    sa.Column("shares", sa.Float, nullable=False),
    sa.Column("shares_open", sa.Float, nullable=False),
    sa.Column("bars_held", sa.Integer, nullable=False),
    sa.Column("last_close", sa.Float, nullable=False),
    sa.Column("commission", sa.Float, nullable=False),
    sa.Column("slippage_cost", sa.Float, nullable=False),
    sa.Column("exit_value", sa.Float, nullable=False),
    sa.Column("exit_raw_value", sa.Float, nullable=False),
    sa.Column("n_exits", sa.Integer, nullable=False),
    sa.Column("exit_reason", sa.String(16), nullable=True),
    sa.Column("exit_date", sa.Date, nullable=True),
    sa.Column("gross_pnl", sa.Float, nullable=True),
    sa.Column("net_pnl", sa.Float, nullable=True),
    sa.Column("net_return", sa.Float, nullable=True),
    sa.Column("policy_state", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_on", sa.Date, nullable=False),
    sa.UniqueConstraint("wallet_id", "trade_id"),
    sa.UniqueConstraint("wallet_id", "symbol", "entry_date"),
    sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
    sa.CheckConstraint("side IN ('long', 'short')", name="side"),
)

# The ledger: every fill, in the order it happened within the day (``seq``).
wallet_fills = sa.Table(
    "wallet_fills",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("wallet_id", sa.Integer, _wallet_fk(), nullable=False, index=True),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("trade_id", sa.Integer, nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("action", sa.String(4), nullable=False),
    sa.Column("shares", sa.Float, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("fill", sa.Float, nullable=False),
    sa.Column("commission", sa.Float, nullable=False),
    sa.Column("slippage", sa.Float, nullable=False),
    sa.Column("cash_after", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.UniqueConstraint("wallet_id", "date", "seq"),
    sa.CheckConstraint("action IN ('buy', 'sell')", name="action"),
)

wallet_equity = sa.Table(
    "wallet_equity",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("wallet_id", sa.Integer, _wallet_fk(), nullable=False, index=True),
    sa.Column("date", sa.Date, nullable=False),
    sa.Column("cash", sa.Float, nullable=False),
    sa.Column("long_value", sa.Float, nullable=False),
    sa.Column("short_value", sa.Float, nullable=False),
    sa.Column("market_value", sa.Float, nullable=False),
    sa.Column("equity", sa.Float, nullable=False),
    sa.Column("n_open", sa.Integer, nullable=False),
    sa.Column("n_opened", sa.Integer, nullable=False),
    sa.Column("n_closed", sa.Integer, nullable=False),
    sa.Column("commission", sa.Float, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    # {trade_id: position row before this day, or null when the day opened it}: undoes the day.
    sa.Column("positions_before", sa.JSON, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.UniqueConstraint("wallet_id", "date"),
)

WALLET_POSITION_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in wallet_positions.columns if c.name not in ("id", "wallet_id")
)
WALLET_FILL_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in wallet_fills.columns if c.name not in ("id", "wallet_id")
)
WALLET_EQUITY_COLUMNS: tuple[str, ...] = (
    "date",
    "cash",
    "long_value",
    "short_value",
    "market_value",
    "equity",
    "n_open",
    "n_opened",
    "n_closed",
    "commission",
    "summary",
)
_WALLET_DATE_COLUMNS = frozenset(
    c.name for c in wallet_positions.columns if isinstance(c.type, sa.Date)
)


class UnknownWalletError(StoreError, KeyError):
    """No wallet of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WalletExistsError(StoreError):
    """A wallet of that name exists already."""


class StaleWalletDayError(StoreError):
    """A day before the wallet's last run: acting on it would rewrite history."""


@dataclass(frozen=True)
class Wallet:
    """One paper wallet: its exit rule set, starting cash and the last day it ran."""

    id: int
    name: str
    rules: str
    initial_cash: float
    created_at: datetime
    last_date: date | None
    version: int


@dataclass(frozen=True)
class WalletBook:
    """What a wallet's day starts from: cash and equity at the previous close and the open
    position rows (``WALLET_POSITION_COLUMNS``). For a re-run of a day already written, this
    is the state *before* that day (the day's changes undone from its snapshot);
    ``previous_day`` is the last day written before it."""

    wallet: Wallet
    day: date
    cash: float
    equity: float
    positions: list[dict[str, Any]]
    next_trade_id: int
    rerun: bool
    previous_day: date | None


def _to_wallet(row: Mapping[Any, Any]) -> Wallet:
    return Wallet(
        id=int(row["id"]),
        name=str(row["name"]),
        rules=str(row["rules"]),
        initial_cash=float(row["initial_cash"]),
        created_at=_utc(row["created_at"]),
        last_date=row["last_date"],
        version=int(row["version"]),
    )


def _wallet_row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A wallet position row as JSON (dates as ISO text), to restore it when its day is undone."""
    out = {}
    for c in WALLET_POSITION_COLUMNS:
        v = row[c]
        out[c] = v.isoformat() if c in _WALLET_DATE_COLUMNS and v is not None else v
    return out


def _wallet_row_from_json(snap: Mapping[str, Any]) -> dict[str, Any]:
    return {
        c: date.fromisoformat(snap[c])
        if c in _WALLET_DATE_COLUMNS and snap[c] is not None
        else snap[c]
        for c in WALLET_POSITION_COLUMNS
    }


def _wallet_position_values(r: Mapping[str, Any], day: date) -> dict[str, Any]:
    """A position row checked and made plain (numpy scalars to Python, state JSON-safe)."""
    where = f"wallet position {r.get('symbol')!r} (trade {r.get('trade_id')!r})"
    missing = [c for c in WALLET_POSITION_COLUMNS if c not in r and c != "updated_on"]
    if missing:
        raise InvalidRecordError(f"{where}: missing {missing}")
    out = _jsonable({c: r[c] for c in WALLET_POSITION_COLUMNS if c != "updated_on"}, where)
    for c in _WALLET_DATE_COLUMNS:
        out[c] = None if r.get(c) is None else _as_date(r[c], f"{where}: {c}")
    _one_of(out["status"], ("open", "closed"), f"{where}: status")
    _one_of(out["side"], ("long", "short"), f"{where}: side")
    for c in ("entry_price", "entry_fill", "shares", "shares_open", "last_close", "strength"):
        _req_float(out[c], f"{where}: {c}")
    out["updated_on"] = day
    return out


# --------------------------------------------------------------------------------------------


class SignalStore:
    """The scan's book in SQLite or PostgreSQL; call :meth:`migrate` once before use.

    ``schema`` (PostgreSQL only) puts every table, and Alembic's version table, in that schema
    via the connection's ``search_path`` — one database can then hold several books
    (environments, tests) side by side. :meth:`migrate` creates the schema if it is missing.
    """

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        parsed = sa.engine.make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise StoreError(f"signals store supports sqlite and postgresql URLs, got {backend!r}")
        if schema is not None and (backend != "postgresql" or not _SCHEMA_NAME.match(schema)):
            raise StoreError(
                f"schema={schema!r}: only for PostgreSQL, lower-case letters, digits and '_'"
            )
        self.url = redact(parsed.render_as_string(hide_password=False))
        self.schema = schema
        self.backend = backend
        connect_args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if backend == "sqlite":
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = 30.0
        else:
            kwargs["pool_pre_ping"] = True
            if schema is not None:
                connect_args["options"] = f"-csearch_path={schema}"
        self.engine: Engine = sa.create_engine(
            parsed, echo=echo, connect_args=connect_args, **kwargs
        )
        if backend == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
            sa.event.listen(self.engine, "begin", _sqlite_on_begin)
        sa.event.listen(self.engine, "handle_error", self._unavailable)

    def _unavailable(self, context: sa.engine.ExceptionContext) -> None:
        """A failure to connect (or a dropped connection) becomes one StoreUnavailableError
        naming the store (password redacted) and the driver's first line of why, so every
        command that touches the store fails in one line instead of a driver traceback."""
        if context.connection is not None and not context.is_disconnect:
            return  # a statement failed on a live connection: the caller's error to handle
        why = str(context.original_exception).strip().splitlines()
        raise StoreUnavailableError(
            f"cannot connect to the signals store {self.url}: {redact(why[0] if why else '')}"
        ) from context.original_exception

    def __repr__(self) -> str:
        return f"SignalStore({self.url!r}, schema={self.schema!r})"

    def dispose(self) -> None:
        """Close pooled connections (tests, and before a process forks)."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE),
        so a read-then-write cannot fail half-way on a snapshot another writer moved."""
        with self.engine.connect() as conn:
            conn.execution_options(**{_WRITE_OPTION: True})
            with conn.begin():
                yield conn

    # ---- migrations -------------------------------------------------------------------------

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        return cfg

    def migrate(self) -> str | None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``); idempotent.
        Returns the revision the database is at afterwards."""
        from alembic import command

        cfg = self._alembic_config()
        with self._write() as conn:
            if self.backend == "postgresql":
                # Two processes migrating at once would race on CREATE TABLE.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('turbomode.signals'))"))
                if self.schema is not None:
                    conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self.current_revision()

    def current_revision(self) -> str | None:
        """The revision the database is at; None before the first :meth:`migrate`."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision this package ships."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    # ---- the scan ---------------------------------------------------------------------------

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
    ) -> int:
        """Record one scan atomically and return its run id.

        ``signals`` is the complete active set after the scan (it replaces the active table
        and is appended to the history); ``positions`` are the positions the scan changed,
        each carrying the ``version`` it was read at; ``failures`` maps symbol to reason.
        An earlier run for the same date is undone first (history, failures, events, and its
        position changes), so a re-run must start from :meth:`positions_before`. A scan for
        a date older than the latest run raises :class:`StaleScanError`; a stale position
        version raises :class:`ConcurrentUpdateError`; either way nothing is written.
        """
        day = _as_date(scan_date, "scan_date")
        signal_rows = _validate_signals(signals)
        failure_map = _validate_failures(failures)
        position_rows = _validate_positions(positions)
        event_rows = [_event_row(e) for e in events]
        summary_json = _jsonable(dict(summary or {}), "summary")
        versions_json = _jsonable(dict(model_versions or {}), "model_versions")
        if n_symbols is None:
            n_symbols = len({r["symbol"] for r in signal_rows} | set(failure_map))
        n_symbols = _as_int(n_symbols, "n_symbols", minimum=len(failure_map))
        start = _utc(started_at) if started_at is not None else _now()

        with self._write() as conn:
            self._check_not_stale(conn, day)
            self._undo_run(conn, day)
            stored = {r["symbol"]: r for r in conn.execute(sa.select(positions_t)).mappings()}
            before = {
                r["symbol"]: (_snapshot_of(stored[r["symbol"]]) if r["symbol"] in stored else None)
                for r in position_rows
            }
            self._check_versions(position_rows, stored)
            now = _now()
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
        return run_id

    def delete_run(self, scan_date: date) -> bool:
        """Undo the latest scan: its records go, positions return to their state before it and
        the active signals to the previous run's. Returns False when there was no such run."""
        day = _as_date(scan_date, "scan_date")
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
        day = _as_date(scan_date, "scan_date")
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
                book[symbol] = _from_snapshot(state)
        return {s: _to_position(book[s]) for s in sorted(book)}

    def _check_not_stale(self, conn: Connection, day: date) -> None:
        latest = conn.execute(
            sa.select(sa.func.max(scan_runs.c.scan_date)).where(scan_runs.c.status == "complete")
        ).scalar_one_or_none()
        if latest is not None and day < latest:
            raise StaleScanError(
                f"scan date {day} is before the latest recorded scan {latest}: writing it would "
                f"rewind active signals and positions; delete_run() the later scans first"
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
        for table in (position_events, scan_failures, signal_history, signals_t):
            conn.execute(sa.delete(table).where(table.c.run_id == run_id))
        for symbol, state in (snapshot or {}).items():
            conn.execute(sa.delete(positions_t).where(positions_t.c.symbol == symbol))
            if state is not None:
                conn.execute(sa.insert(positions_t).values(**_from_snapshot(state)))
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
            _upsert(conn, signals_t, active, ("symbol", "horizon"))
            conn.execute(sa.insert(signal_history), [{**a, "scan_date": day} for a in active])
        conn.execute(sa.delete(signals_t).where(signals_t.c.run_id != run_id))

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
            q = q.where(signal_history.c.scan_date >= _as_date(since, "since"))
        q = q.order_by(
            signal_history.c.scan_date, signal_history.c.symbol, signal_history.c.horizon
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(rows, cols, dates=("scan_date", "signal_date", "first_seen"))

    def runs(self) -> pd.DataFrame:
        """Every recorded scan, oldest first."""
        q = sa.select(*[scan_runs.c[c] for c in RUN_COLUMNS]).order_by(scan_runs.c.scan_date)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(
            rows, RUN_COLUMNS, dates=("scan_date",), timestamps=("started_at", "finished_at")
        )

    def run(self, scan_date: date) -> ScanRun | None:
        """The run recorded for ``scan_date``, or None."""
        day = _as_date(scan_date, "scan_date")
        q = sa.select(*[scan_runs.c[c] for c in RUN_COLUMNS]).where(scan_runs.c.scan_date == day)
        with self.engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        if row is None:
            return None
        values = dict(row)
        values["started_at"] = _utc(values["started_at"])
        if values["finished_at"] is not None:
            values["finished_at"] = _utc(values["finished_at"])
        return ScanRun(**values)

    def positions(self) -> dict[str, Position]:
        """The current book, by symbol; each Position carries the version to write back."""
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(sa.select(positions_t).order_by(positions_t.c.symbol)).mappings()
            )
        return {r["symbol"]: _to_position(r) for r in rows}

    def position_events(self, symbol: str | None = None) -> list[PositionEvent]:
        """Position events in the order they happened (date, then as recorded)."""
        q = sa.select(*[position_events.c[c] for c in EVENT_FIELDS])
        if symbol is not None:
            q = q.where(position_events.c.symbol == symbol)
        q = q.order_by(position_events.c.date, position_events.c.id)
        with self.engine.connect() as conn:
            return [PositionEvent(**r) for r in conn.execute(q).mappings()]

    def failures(self, scan_date: date) -> dict[str, str]:
        """Symbol → reason for the symbols the scan of ``scan_date`` could not score."""
        day = _as_date(scan_date, "scan_date")
        q = (
            sa.select(scan_failures.c.symbol, scan_failures.c.reason)
            .join(scan_runs, scan_runs.c.id == scan_failures.c.run_id)
            .where(scan_runs.c.scan_date == day)
            .order_by(scan_failures.c.symbol)
        )
        with self.engine.connect() as conn:
            return {s: r for s, r in conn.execute(q)}

    # ---- training samples -------------------------------------------------------------------

    def add_training_samples(self, rows: pd.DataFrame | Iterable[Mapping[Any, Any]]) -> int:
        """Upsert resolved signals for the feedback loop, keyed on (symbol, horizon,
        signal_date): re-adding a sample updates it (e.g. its exit, once known) and is not
        counted. Returns how many samples were new."""
        records: Sequence[Mapping[Any, Any]] = (
            rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
        )
        clean = [_training_row(r, i) for i, r in enumerate(records)]
        if not clean:
            return 0
        keys = [tuple(r[k] for k in TRAINING_KEY) for r in clean]
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        if dupes:
            raise InvalidRecordError(
                f"training samples repeat (symbol, horizon, signal_date): {sorted(dupes)[:10]}"
            )
        now = _now()
        for r in clean:
            if r.get("created_at") is None:
                r["created_at"] = now
        lo, hi = min(k[2] for k in keys), max(k[2] for k in keys)
        with self._write() as conn:
            existing = {
                tuple(k)
                for k in conn.execute(
                    sa.select(*[training_samples.c[c] for c in TRAINING_KEY]).where(
                        training_samples.c.signal_date.between(lo, hi)
                    )
                )
            }
            _upsert(conn, training_samples, clean, TRAINING_KEY, keep=("created_at",))
        return sum(1 for k in keys if k not in existing)

    def training_samples(self, since: date | None = None) -> pd.DataFrame:
        """Stored samples with ``signal_date >= since`` (all when None), oldest first."""
        q = sa.select(*[training_samples.c[c] for c in TRAINING_COLUMNS])
        if since is not None:
            q = q.where(training_samples.c.signal_date >= _as_date(since, "since"))
        q = q.order_by(
            training_samples.c.signal_date, training_samples.c.symbol, training_samples.c.horizon
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(
            rows,
            TRAINING_COLUMNS,
            dates=("signal_date", "exit_date"),
            timestamps=("created_at",),
        )

    # ---- the outcome loop -------------------------------------------------------------------

    def register_outcomes(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Add issued signals as pending outcomes; ones already known are left as they are
        (a re-run registers nothing twice). Returns how many were new."""
        if not rows:
            return 0
        key = ("symbol", "horizon", "signal_date")
        clean: list[dict[str, Any]] = []
        for r in rows:
            row: dict[str, Any] = {c: r.get(c) for c in OUTCOME_COLUMNS if c != "id"}
            row.update(status="pending", sampled=False)
            clean.append(row)
        with self._write() as conn:
            lo = min(r["signal_date"] for r in clean)
            known = {
                tuple(k)
                for k in conn.execute(
                    sa.select(*[signal_outcomes.c[c] for c in key]).where(
                        signal_outcomes.c.signal_date >= lo
                    )
                )
            }
            new = [r for r in clean if tuple(r[c] for c in key) not in known]
            if new:
                conn.execute(signal_outcomes.insert(), new)
        return len(new)

    def outcomes(self, status: str | None = None) -> pd.DataFrame:
        """Outcome rows (all, or one status), oldest signal first."""
        q = sa.select(*[signal_outcomes.c[c] for c in OUTCOME_COLUMNS])
        if status is not None:
            q = q.where(signal_outcomes.c.status == status)
        q = q.order_by(
            signal_outcomes.c.signal_date, signal_outcomes.c.symbol, signal_outcomes.c.horizon
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(
            rows,
            OUTCOME_COLUMNS,
            dates=("signal_date", "entry_date", "exit_date"),
            timestamps=("resolved_at",),
        )

    def record_outcomes(
        self, resolved: Sequence[Mapping[str, Any]], pending: Mapping[int, str]
    ) -> int:
        """One transaction: resolved outcomes written (only rows still pending, so a second
        run changes nothing), their signals leave the active table, and the reason a pending
        one waits is updated. Returns how many were resolved now."""
        now = _now()
        done = 0
        with self._write() as conn:
            for r in resolved:
                values = {k: v for k, v in r.items() if k in OUTCOME_COLUMNS and k != "id"}
                values.update(status="resolved", reason=None, resolved_at=now)
                res = conn.execute(
                    signal_outcomes.update()
                    .where(signal_outcomes.c.id == int(r["id"]))
                    .where(signal_outcomes.c.status == "pending")
                    .values(**values)
                )
                if res.rowcount:
                    done += 1
                    conn.execute(
                        signals_t.delete()
                        .where(signals_t.c.symbol == r["symbol"])
                        .where(signals_t.c.horizon == int(r["horizon"]))
                        .where(signals_t.c.signal_date == r["signal_date"])
                    )
            for oid, reason in pending.items():
                conn.execute(
                    signal_outcomes.update()
                    .where(signal_outcomes.c.id == int(oid))
                    .where(signal_outcomes.c.status == "pending")
                    .values(reason=reason)
                )
        return done

    def resolved_keys(self, since: date | None = None) -> set[tuple[str, int, date]]:
        """(symbol, horizon, signal_date) of every resolved signal: no longer active."""
        c = signal_outcomes.c
        q = sa.select(c.symbol, c.horizon, c.signal_date).where(c.status == "resolved")
        if since is not None:
            q = q.where(c.signal_date >= _as_date(since, "since"))
        with self.engine.connect() as conn:
            return {(str(s), int(h), d) for s, h, d in conn.execute(q)}

    def add_samples_from_outcomes(
        self, samples: Sequence[Mapping[str, Any]], outcome_ids: Sequence[int]
    ) -> int:
        """One transaction: the samples are inserted (a key already present is skipped, never
        duplicated) and their outcomes marked sampled. Returns how many samples were new."""
        clean = [_training_row(r, i) for i, r in enumerate(samples)]
        now = _now()
        for r in clean:
            r["created_at"] = r.get("created_at") or now
        with self._write() as conn:
            new = 0
            for r in clean:
                exists = conn.execute(
                    sa.select(training_samples.c.id).where(
                        sa.and_(*[training_samples.c[k] == r[k] for k in TRAINING_KEY])
                    )
                ).first()
                if exists is None:
                    conn.execute(training_samples.insert(), [r])
                    new += 1
            if outcome_ids:
                conn.execute(
                    signal_outcomes.update()
                    .where(signal_outcomes.c.id.in_([int(i) for i in outcome_ids]))
                    .values(sampled=True)
                )
        return new

    def samples_after(self, sample_id: int) -> pd.DataFrame:
        """Training samples with id > ``sample_id`` (new since a retrain), oldest first."""
        q = (
            sa.select(*[training_samples.c[c] for c in TRAINING_COLUMNS])
            .where(training_samples.c.id > int(sample_id))
            .order_by(training_samples.c.id)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(
            rows, TRAINING_COLUMNS, dates=("signal_date", "exit_date"), timestamps=("created_at",)
        )

    def start_retrain(
        self, pointers_before: Mapping[str, str | None], n_new_samples: int, max_sample_id: int
    ) -> int:
        """Record a retrain as running, with the production pointers it may change."""
        with self._write() as conn:
            res = conn.execute(
                retrain_runs.insert().values(
                    started_at=_now(),
                    status="running",
                    n_new_samples=int(n_new_samples),
                    max_sample_id=int(max_sample_id),
                    pointers_before=dict(pointers_before),
                    report={},
                )
            )
            assert res.inserted_primary_key is not None
            return int(res.inserted_primary_key[0])

    def finish_retrain(self, run_id: int, status: str, report: Mapping[str, Any]) -> None:
        """Close a retrain run with its outcome and report."""
        with self._write() as conn:
            conn.execute(
                retrain_runs.update()
                .where(retrain_runs.c.id == int(run_id))
                .values(status=status, finished_at=_now(), report=_jsonable(report, "report"))
            )

    def retrain_runs(self) -> pd.DataFrame:
        """Every retrain run, oldest first."""
        q = sa.select(*[retrain_runs.c[c] for c in RETRAIN_COLUMNS]).order_by(retrain_runs.c.id)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(rows, RETRAIN_COLUMNS, timestamps=("started_at", "finished_at"))

    # ---- paper wallet (issue #9) --------------------------------------------------------------
    # The wallet's section of the store; its tables are in the PAPER WALLET block above.

    def create_wallet(self, name: str, rules: str, initial_cash: float) -> Wallet:
        """Record a new wallet; a name already taken raises :class:`WalletExistsError`."""
        if not isinstance(name, str) or not _WALLET_NAME.match(name):
            raise InvalidRecordError(
                f"wallet name {name!r}: 1–64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        _one_of(rules, WALLET_RULES, "wallet rules")
        cash = _req_float(initial_cash, "initial cash")
        if cash <= 0:
            raise InvalidRecordError(f"initial cash must be > 0, got {cash}")
        try:
            with self._write() as conn:
                conn.execute(
                    sa.insert(wallets_t).values(
                        name=name, rules=rules, initial_cash=cash, created_at=_now(), version=0
                    )
                )
        except IntegrityError as exc:
            raise WalletExistsError(f"a wallet named {name!r} exists already") from exc
        return self.wallet(name)

    def wallet(self, name: str) -> Wallet:
        """The wallet called ``name``; :class:`UnknownWalletError` when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(wallets_t).where(wallets_t.c.name == name)).first()
        if row is None:
            raise UnknownWalletError(f"no wallet named {name!r}: create it first")
        return _to_wallet(row._mapping)

    def wallets(self) -> list[Wallet]:
        """Every wallet, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(wallets_t).order_by(wallets_t.c.name)).mappings()
            return [_to_wallet(r) for r in rows]

    def wallet_book(self, name: str, day: date) -> WalletBook:
        """The state a run of ``day`` starts from (see :class:`WalletBook`); a day before the
        wallet's last run raises :class:`StaleWalletDayError`."""
        d = _as_date(day, "day")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(wallets_t).where(wallets_t.c.name == name)).first()
            if row is None:
                raise UnknownWalletError(f"no wallet named {name!r}: create it first")
            wallet = _to_wallet(row._mapping)
            self._check_wallet_day(wallet, d)
            q = sa.select(*[wallet_positions.c[c] for c in WALLET_POSITION_COLUMNS]).where(
                wallet_positions.c.wallet_id == wallet.id
            )
            rows = {int(r["trade_id"]): dict(r) for r in conn.execute(q).mappings()}
            snap = conn.execute(
                sa.select(wallet_equity.c.positions_before).where(
                    wallet_equity.c.wallet_id == wallet.id, wallet_equity.c.date == d
                )
            ).first()
            prev = conn.execute(
                sa.select(wallet_equity.c.cash, wallet_equity.c.equity, wallet_equity.c.date)
                .where(wallet_equity.c.wallet_id == wallet.id, wallet_equity.c.date < d)
                .order_by(wallet_equity.c.date.desc())
                .limit(1)
            ).first()
        for trade_id, state in (snap[0] if snap else {}).items():
            if state is None:
                rows.pop(int(trade_id), None)
            else:
                rows[int(trade_id)] = _wallet_row_from_json(state)
        cash, equity = (
            (float(prev[0]), float(prev[1]))
            if prev is not None
            else (wallet.initial_cash, wallet.initial_cash)
        )
        return WalletBook(
            wallet=wallet,
            day=d,
            cash=cash,
            equity=equity,
            positions=[rows[t] for t in sorted(rows) if rows[t]["status"] == "open"],
            next_trade_id=max(rows, default=0) + 1,
            rerun=snap is not None,
            previous_day=None if prev is None else prev[2],
        )

    def write_wallet_day(
        self,
        name: str,
        day: date,
        *,
        version: int,
        positions: Sequence[Mapping[str, Any]],
        fills: Sequence[Mapping[str, Any]],
        equity: Mapping[str, Any],
    ) -> None:
        """Record one wallet day atomically: the changed position rows (each carrying the
        ``version`` it was read at, 0 for a new one), the day's fills in order and the equity
        at the close. ``version`` is the wallet's, as :meth:`wallet_book` read it. A day that
        was written before is undone first, so a re-run replaces it; a stale read raises
        :class:`ConcurrentUpdateError`, a day before the last run :class:`StaleWalletDayError`,
        and either way nothing is written."""
        d = _as_date(day, "day")
        rows = [_wallet_position_values(p, d) for p in positions]
        dupes = sorted(k for k, n in Counter(r["trade_id"] for r in rows).items() if n > 1)
        if dupes:
            raise InvalidRecordError(f"wallet day {d}: trade(s) {dupes} given more than once")
        fill_rows = []
        for seq, f in enumerate(fills):
            values = _jsonable(
                {c: f[c] for c in WALLET_FILL_COLUMNS if c not in ("date", "seq")}, "fill"
            )
            _one_of(values["action"], ("buy", "sell"), f"fill {seq}: action")
            fill_rows.append({**values, "date": d, "seq": seq})
        eq = _jsonable({c: equity[c] for c in WALLET_EQUITY_COLUMNS if c != "date"}, "equity")
        for c in ("cash", "long_value", "short_value", "market_value", "equity", "commission"):
            _req_float(eq[c], f"wallet day {d}: {c}")
        with self._write() as conn:
            found = conn.execute(
                sa.select(wallets_t).where(wallets_t.c.name == name).with_for_update()
            ).first()
            if found is None:
                raise UnknownWalletError(f"no wallet named {name!r}: create it first")
            wallet = _to_wallet(found._mapping)
            self._check_wallet_day(wallet, d)
            if wallet.version != int(version):
                raise ConcurrentUpdateError(
                    f"wallet {name!r} changed since it was read (version {version}, now "
                    f"{wallet.version}); nothing from {d} was saved — run the day again"
                )
            self._undo_wallet_day(conn, wallet.id, d)
            ids = [r["trade_id"] for r in rows]
            stored = {
                int(r["trade_id"]): dict(r)
                for r in conn.execute(
                    sa.select(wallet_positions).where(
                        wallet_positions.c.wallet_id == wallet.id,
                        wallet_positions.c.trade_id.in_(ids),
                    )
                ).mappings()
            }
            before = {
                str(t): _wallet_row_json(stored[t]) if t in stored else None for t in sorted(ids)
            }
            for r in rows:
                self._save_wallet_position(conn, wallet.id, r, stored.get(r["trade_id"]))
            if fill_rows:
                conn.execute(
                    sa.insert(wallet_fills), [{**f, "wallet_id": wallet.id} for f in fill_rows]
                )
            conn.execute(
                sa.insert(wallet_equity).values(
                    **eq, wallet_id=wallet.id, date=d, positions_before=before, created_at=_now()
                )
            )
            done = conn.execute(
                sa.update(wallets_t)
                .where(wallets_t.c.id == wallet.id, wallets_t.c.version == wallet.version)
                .values(last_date=d, version=wallet.version + 1)
            )
            if done.rowcount != 1:
                raise ConcurrentUpdateError(f"wallet {name!r} changed while {d} was written")

    def wallet_positions(self, name: str, status: str | None = None) -> pd.DataFrame:
        """The wallet's trades (all, or 'open'/'closed'), by trade id; policy state as dicts."""
        wallet = self.wallet(name)
        q = sa.select(*[wallet_positions.c[c] for c in WALLET_POSITION_COLUMNS]).where(
            wallet_positions.c.wallet_id == wallet.id
        )
        if status is not None:
            q = q.where(wallet_positions.c.status == _one_of(status, ("open", "closed"), "status"))
        with self.engine.connect() as conn:
            rows = list(conn.execute(q.order_by(wallet_positions.c.trade_id)).mappings())
        return _frame(rows, WALLET_POSITION_COLUMNS, dates=tuple(sorted(_WALLET_DATE_COLUMNS)))

    def wallet_fills(self, name: str) -> pd.DataFrame:
        """The wallet's ledger: every fill, by date then the order it happened in."""
        wallet = self.wallet(name)
        q = (
            sa.select(*[wallet_fills.c[c] for c in WALLET_FILL_COLUMNS])
            .where(wallet_fills.c.wallet_id == wallet.id)
            .order_by(wallet_fills.c.date, wallet_fills.c.seq)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(rows, WALLET_FILL_COLUMNS, dates=("date",))

    def wallet_equity(self, name: str) -> pd.DataFrame:
        """The wallet's daily marks at the close, oldest first."""
        wallet = self.wallet(name)
        q = (
            sa.select(*[wallet_equity.c[c] for c in WALLET_EQUITY_COLUMNS])
            .where(wallet_equity.c.wallet_id == wallet.id)
            .order_by(wallet_equity.c.date)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return _frame(rows, WALLET_EQUITY_COLUMNS, dates=("date",))

    @staticmethod
    def _check_wallet_day(wallet: Wallet, day: date) -> None:
        if wallet.last_date is not None and day < wallet.last_date:
            raise StaleWalletDayError(
                f"wallet {wallet.name!r} last ran on {wallet.last_date}; {day} is in its past "
                "and acting on it would rewrite its history"
            )

    @staticmethod
    def _undo_wallet_day(conn: Connection, wallet_id: int, day: date) -> None:
        """Delete a written day's fills and equity row and restore the positions it changed."""
        snap = conn.execute(
            sa.select(wallet_equity.c.positions_before).where(
                wallet_equity.c.wallet_id == wallet_id, wallet_equity.c.date == day
            )
        ).first()
        if snap is None:
            return
        for trade_id, state in (snap[0] or {}).items():
            conn.execute(
                sa.delete(wallet_positions).where(
                    wallet_positions.c.wallet_id == wallet_id,
                    wallet_positions.c.trade_id == int(trade_id),
                )
            )
            if state is not None:
                conn.execute(
                    sa.insert(wallet_positions).values(
                        **_wallet_row_from_json(state), wallet_id=wallet_id
                    )
                )
        for table in (wallet_fills, wallet_equity):
            conn.execute(
                sa.delete(table).where(table.c.wallet_id == wallet_id, table.c.date == day)
            )

    @staticmethod
    def _save_wallet_position(
        conn: Connection, wallet_id: int, row: dict[str, Any], stored: Mapping[str, Any] | None
    ) -> None:
        """Insert a new trade or update it conditionally on the version it was read at."""
        read = int(row["version"])
        values = {**row, "wallet_id": wallet_id, "version": read + 1}
        if stored is None:
            if read != 0:
                raise ConcurrentUpdateError(
                    f"wallet trade {row['trade_id']} ({row['symbol']}) read at version {read} "
                    "is no longer stored; nothing was saved"
                )
            try:
                conn.execute(sa.insert(wallet_positions).values(values))
            except IntegrityError as exc:
                raise ConcurrentUpdateError(
                    f"wallet trade {row['trade_id']} ({row['symbol']}) was written by another "
                    "run; nothing was saved"
                ) from exc
            return
        done = conn.execute(
            sa.update(wallet_positions)
            .where(
                wallet_positions.c.wallet_id == wallet_id,
                wallet_positions.c.trade_id == row["trade_id"],
                wallet_positions.c.version == read,
            )
            .values(values)
        )
        if done.rowcount != 1:
            raise ConcurrentUpdateError(
                f"wallet trade {row['trade_id']} ({row['symbol']}) changed after version {read} "
                "was read; nothing was saved"
            )


def _training_row(record: Mapping[Any, Any], i: int) -> dict[str, Any]:
    where = f"training sample {i}"
    unknown = sorted(set(record) - set(TRAINING_COLUMNS))
    if unknown:
        raise InvalidRecordError(f"{where}: unknown column(s) {unknown}")
    missing = [c for c in TRAINING_REQUIRED if c not in record or _is_missing(record[c])]
    if missing:
        raise InvalidRecordError(f"{where}: missing required value(s) {missing}")
    where = f"{where} ({record['symbol']!r}, horizon {record['horizon']!r})"
    out: dict[str, Any] = {
        "symbol": _as_str(record["symbol"], f"{where}: symbol"),
        "sector": _as_str(record["sector"], f"{where}: sector"),
        "horizon": _as_int(record["horizon"], f"{where}: horizon", minimum=1),
        "signal_date": _as_date(record["signal_date"], f"{where}: signal_date"),
        "side": _one_of(record["side"], SIDES, f"{where}: side"),
        "confidence": _req_float(record["confidence"], f"{where}: confidence"),
        "entry_price": _req_float(record["entry_price"], f"{where}: entry_price"),
        "label": _one_of(_as_int(record["label"], f"{where}: label"), LABELS, f"{where}: label"),
    }
    for name in ("exit_price", "realized_return"):
        out[name] = _as_float(record.get(name), f"{where}: {name}", optional=True)
    exit_date = record.get("exit_date")
    out["exit_date"] = (
        None if _is_missing(exit_date) else _as_date(exit_date, f"{where}: exit_date")
    )
    outcome = record.get("outcome")
    out["outcome"] = (
        None if _is_missing(outcome) else _one_of(outcome, OUTCOMES, f"{where}: outcome")
    )
    feats = record.get("features")
    if feats is None or (isinstance(feats, float) and math.isnan(feats)):
        out["features"] = None
    elif isinstance(feats, Mapping):
        out["features"] = {str(k): None if _is_missing(v) else float(v) for k, v in feats.items()}
    else:
        raise InvalidRecordError(f"{where}: features must be a {{name: value}} mapping")
    created = record.get("created_at")
    if not _is_missing(created):
        if not isinstance(created, datetime):
            raise InvalidRecordError(f"{where}: created_at must be a datetime, got {created!r}")
        out["created_at"] = _utc(created)
    return out


def _upsert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    key: Sequence[str],
    keep: Sequence[str] = (),
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE every other column except ``keep``."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    skip = {*key, *keep, *(c.name for c in table.primary_key if c.autoincrement is True)}
    update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in skip}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update), rows)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets the dashboard read while a scan writes; foreign keys are off by default in
    SQLite; SQLAlchemy, not the driver, decides where transactions begin (see _sqlite_on_begin)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """The sqlite3 driver's own BEGIN skips SELECT and DDL, so reads and migrations would not
    be transactional; emit BEGIN ourselves (IMMEDIATE for writers)."""
    write = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
