"""The schema as SQLAlchemy Core tables, for the repositories' queries.

The migrations in ``migrations/versions`` are the source of truth for the database; this
metadata mirrors them (a test compares the two so they cannot drift), and the Alembic
environment compares against it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

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

signal_explanations = sa.Table(
    "signal_explanations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, _run_fk(), nullable=False, index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("horizon", sa.Integer, nullable=False),
    sa.Column("signal_date", sa.Date, nullable=False),
    sa.Column("model_version", sa.String(128), nullable=False),
    # turbomode.signals.explain's payload: base, value, every feature's contribution, top five
    sa.Column("explanation", sa.JSON, nullable=False),
    sa.UniqueConstraint("symbol", "horizon", "signal_date"),
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


# ---- the paper wallet (migration 0003) ------------------------------------------------------
# A wallet's day is one transaction; its equity row is the day's commit marker and keeps, in
# ``positions_before``, the rows the day changed, so a re-run of the same day first restores
# them (no fill is ever recorded twice).


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
