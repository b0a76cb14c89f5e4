"""The store's engine: one connection to SQLite (the embedded default) or PostgreSQL (a
cluster), its transactions and migrations, the store's errors, and the checks every repository
runs on what it is handed.

The repositories (scans, positions, outcomes, retrains, wallets) are mixins over
:class:`StoreBase`; :class:`turbomode.store.SignalStore` composes them. The schema is owned by
the Alembic environment shipped in ``turbomode/store/migrations`` and applied with
:meth:`StoreBase.migrate`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from turbomode.errors import TurboModeError
from turbomode.redaction import redact

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Not Alembic's default "alembic_version": the signals store may share a database with other
# Alembic-managed schemas (Feast's registry lives in the same PostgreSQL).
VERSION_TABLE = "signals_alembic_version"

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
# Validation: bad input fails before the transaction opens, with the record named.


def as_date(value: Any, what: str) -> date:
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


def is_missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def as_float(value: Any, what: str, *, optional: bool = False) -> float | None:
    if is_missing(value):
        if optional:
            return None
        raise InvalidRecordError(f"{what} is missing (None/NaN)")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidRecordError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidRecordError(f"{what} must be finite, got {out}")
    return out


def req_float(value: Any, what: str) -> float:
    out = as_float(value, what)
    assert out is not None
    return out


def as_int(value: Any, what: str, *, minimum: int | None = None) -> int:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidRecordError(f"{what} must be an integer, got {value!r}")
    out = int(value)
    if minimum is not None and out < minimum:
        raise InvalidRecordError(f"{what} must be >= {minimum}, got {out}")
    return out


def as_str(value: Any, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise InvalidRecordError(f"{what} must be a non-empty string, got {value!r}")
    return value


def one_of(value: Any, allowed: Sequence[Any], what: str) -> Any:
    if value not in allowed:
        raise InvalidRecordError(
            f"{what} must be one of {', '.join(map(str, allowed))}; got {value!r}"
        )
    return value


def jsonable(obj: Any, where: str) -> Any:
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
        return {str(k): jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | np.ndarray):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise InvalidRecordError(f"{where}: {type(obj).__name__} is not JSON-serializable")


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_frame(
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


def upsert(
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


class StoreBase:
    """The engine every repository works through; call :meth:`migrate` once before use.

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
        return f"{type(self).__name__}({self.url!r}, schema={self.schema!r})"

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
