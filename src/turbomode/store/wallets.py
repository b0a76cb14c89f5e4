"""The wallets repository (the paper wallet, issue #9): wallets, their trades with the exit
policy's state, the fill ledger and the daily equity.

A wallet's day is one transaction (:meth:`WalletRepository.write_wallet_day`); its equity row
is the day's commit marker and keeps, in ``positions_before``, the rows the day changed, so a
re-run of the same day first restores them (no fill is ever recorded twice). The wallet row's
``version`` makes two runs of one wallet at once collide instead of both committing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from turbomode.store.engine import (
    ConcurrentUpdateError,
    InvalidRecordError,
    StoreBase,
    StoreError,
    as_date,
    jsonable,
    one_of,
    req_float,
    to_frame,
    utc,
    utc_now,
)
from turbomode.store.tables import wallet_equity, wallet_fills, wallet_positions, wallets_t

WALLET_RULES = ("atr", "smart")
_WALLET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

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
        created_at=utc(row["created_at"]),
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
    out = jsonable({c: r[c] for c in WALLET_POSITION_COLUMNS if c != "updated_on"}, where)
    for c in _WALLET_DATE_COLUMNS:
        out[c] = None if r.get(c) is None else as_date(r[c], f"{where}: {c}")
    one_of(out["status"], ("open", "closed"), f"{where}: status")
    one_of(out["side"], ("long", "short"), f"{where}: side")
    for c in ("entry_price", "entry_fill", "shares", "shares_open", "last_close", "strength"):
        req_float(out[c], f"{where}: {c}")
    out["updated_on"] = day
    return out


class WalletRepository(StoreBase):
    """Creates wallets, hands a day its starting book, records the day, reads the ledger."""

    def create_wallet(self, name: str, rules: str, initial_cash: float) -> Wallet:
        """Record a new wallet; a name already taken raises :class:`WalletExistsError`."""
        if not isinstance(name, str) or not _WALLET_NAME.match(name):
            raise InvalidRecordError(
                f"wallet name {name!r}: 1–64 letters, digits, '_', '.' or '-', starting with a "
                "letter or digit"
            )
        one_of(rules, WALLET_RULES, "wallet rules")
        cash = req_float(initial_cash, "initial cash")
        if cash <= 0:
            raise InvalidRecordError(f"initial cash must be > 0, got {cash}")
        try:
            with self._write() as conn:
                conn.execute(
                    sa.insert(wallets_t).values(
                        name=name, rules=rules, initial_cash=cash, created_at=utc_now(), version=0
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
        d = as_date(day, "day")
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
        d = as_date(day, "day")
        rows = [_wallet_position_values(p, d) for p in positions]
        dupes = sorted(k for k, n in Counter(r["trade_id"] for r in rows).items() if n > 1)
        if dupes:
            raise InvalidRecordError(f"wallet day {d}: trade(s) {dupes} given more than once")
        fill_rows = []
        for seq, f in enumerate(fills):
            values = jsonable(
                {c: f[c] for c in WALLET_FILL_COLUMNS if c not in ("date", "seq")}, "fill"
            )
            one_of(values["action"], ("buy", "sell"), f"fill {seq}: action")
            fill_rows.append({**values, "date": d, "seq": seq})
        eq = jsonable({c: equity[c] for c in WALLET_EQUITY_COLUMNS if c != "date"}, "equity")
        for c in ("cash", "long_value", "short_value", "market_value", "equity", "commission"):
            req_float(eq[c], f"wallet day {d}: {c}")
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
                    **eq, wallet_id=wallet.id, date=d, positions_before=before, created_at=utc_now()
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
            q = q.where(wallet_positions.c.status == one_of(status, ("open", "closed"), "status"))
        with self.engine.connect() as conn:
            rows = list(conn.execute(q.order_by(wallet_positions.c.trade_id)).mappings())
        return to_frame(rows, WALLET_POSITION_COLUMNS, dates=tuple(sorted(_WALLET_DATE_COLUMNS)))

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
        return to_frame(rows, WALLET_FILL_COLUMNS, dates=("date",))

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
        return to_frame(rows, WALLET_EQUITY_COLUMNS, dates=("date",))

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
