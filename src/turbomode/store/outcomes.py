"""The outcomes repository: issued signals tracked to their outcome, and the training samples
resolved outcomes become (the feedback loop's data, read back by the retrainer).

An outcome is registered pending and resolved once its hold period is over; resolving it
removes its signal from the active table in the same transaction. Samples are keyed on
(symbol, horizon, signal_date), so adding one twice updates it instead of duplicating it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from turbomode.records.signals import SIDES
from turbomode.store.engine import (
    InvalidRecordError,
    StoreBase,
    as_date,
    as_float,
    as_int,
    as_str,
    is_missing,
    one_of,
    req_float,
    to_frame,
    upsert,
    utc,
    utc_now,
)
from turbomode.store.tables import signal_outcomes, signals_t, training_samples

OUTCOMES = ("win", "loss", "flat")
LABELS = (0, 1, 2)  # SELL, HOLD, BUY
OUTCOME_COLUMNS: tuple[str, ...] = tuple(c.name for c in signal_outcomes.columns)

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


def _training_row(record: Mapping[Any, Any], i: int) -> dict[str, Any]:
    where = f"training sample {i}"
    unknown = sorted(set(record) - set(TRAINING_COLUMNS))
    if unknown:
        raise InvalidRecordError(f"{where}: unknown column(s) {unknown}")
    missing = [c for c in TRAINING_REQUIRED if c not in record or is_missing(record[c])]
    if missing:
        raise InvalidRecordError(f"{where}: missing required value(s) {missing}")
    where = f"{where} ({record['symbol']!r}, horizon {record['horizon']!r})"
    out: dict[str, Any] = {
        "symbol": as_str(record["symbol"], f"{where}: symbol"),
        "sector": as_str(record["sector"], f"{where}: sector"),
        "horizon": as_int(record["horizon"], f"{where}: horizon", minimum=1),
        "signal_date": as_date(record["signal_date"], f"{where}: signal_date"),
        "side": one_of(record["side"], SIDES, f"{where}: side"),
        "confidence": req_float(record["confidence"], f"{where}: confidence"),
        "entry_price": req_float(record["entry_price"], f"{where}: entry_price"),
        "label": one_of(as_int(record["label"], f"{where}: label"), LABELS, f"{where}: label"),
    }
    for name in ("exit_price", "realized_return"):
        out[name] = as_float(record.get(name), f"{where}: {name}", optional=True)
    exit_date = record.get("exit_date")
    out["exit_date"] = None if is_missing(exit_date) else as_date(exit_date, f"{where}: exit_date")
    outcome = record.get("outcome")
    out["outcome"] = None if is_missing(outcome) else one_of(outcome, OUTCOMES, f"{where}: outcome")
    feats = record.get("features")
    if feats is None or (isinstance(feats, float) and math.isnan(feats)):
        out["features"] = None
    elif isinstance(feats, Mapping):
        out["features"] = {str(k): None if is_missing(v) else float(v) for k, v in feats.items()}
    else:
        raise InvalidRecordError(f"{where}: features must be a {{name: value}} mapping")
    created = record.get("created_at")
    if not is_missing(created):
        if not isinstance(created, datetime):
            raise InvalidRecordError(f"{where}: created_at must be a datetime, got {created!r}")
        out["created_at"] = utc(created)
    return out


class OutcomeRepository(StoreBase):
    """Pending and resolved outcomes, and the training samples made from them."""

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
        now = utc_now()
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
            upsert(conn, training_samples, clean, TRAINING_KEY, keep=("created_at",))
        return sum(1 for k in keys if k not in existing)

    def training_samples(self, since: date | None = None) -> pd.DataFrame:
        """Stored samples with ``signal_date >= since`` (all when None), oldest first."""
        q = sa.select(*[training_samples.c[c] for c in TRAINING_COLUMNS])
        if since is not None:
            q = q.where(training_samples.c.signal_date >= as_date(since, "since"))
        q = q.order_by(
            training_samples.c.signal_date, training_samples.c.symbol, training_samples.c.horizon
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return to_frame(
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
        return to_frame(
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
        now = utc_now()
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
            q = q.where(c.signal_date >= as_date(since, "since"))
        with self.engine.connect() as conn:
            return {(str(s), int(h), d) for s, h, d in conn.execute(q)}

    def add_samples_from_outcomes(
        self, samples: Sequence[Mapping[str, Any]], outcome_ids: Sequence[int]
    ) -> int:
        """One transaction: the samples are inserted (a key already present is skipped, never
        duplicated) and their outcomes marked sampled. Returns how many samples were new."""
        clean = [_training_row(r, i) for i, r in enumerate(samples)]
        now = utc_now()
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
        return to_frame(
            rows, TRAINING_COLUMNS, dates=("signal_date", "exit_date"), timestamps=("created_at",)
        )
