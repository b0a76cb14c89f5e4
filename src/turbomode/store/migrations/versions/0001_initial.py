"""The signals store: scan runs, failures, active signals, history, positions, events, samples.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _signal_columns() -> list[sa.Column]:
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


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["scan_runs.id"], name=f"fk_{table}_run_id_scan_runs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("scan_date", sa.Date, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_symbols", sa.Integer, nullable=False),
        sa.Column("n_scored", sa.Integer, nullable=False),
        sa.Column("n_failed", sa.Integer, nullable=False),
        sa.Column("n_signals", sa.Integer, nullable=False),
        sa.Column("model_versions", sa.JSON, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("positions_before", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scan_runs"),
        sa.UniqueConstraint("scan_date", name="uq_scan_runs_scan_date"),
        sa.CheckConstraint(
            "status IN ('running', 'complete', 'failed')", name="ck_scan_runs_status"
        ),
    )
    op.create_table(
        "scan_failures",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scan_failures"),
        _run_fk("scan_failures"),
        sa.UniqueConstraint("run_id", "symbol", name="uq_scan_failures_run_id_symbol"),
    )
    op.create_index("ix_scan_failures_run_id", "scan_failures", ["run_id"])
    op.create_table(
        "signals",
        *_signal_columns(),
        sa.Column("first_seen", sa.Date, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "horizon", name="pk_signals"),
        _run_fk("signals"),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_signals_side"),
    )
    op.create_index("ix_signals_run_id", "signals", ["run_id"])
    op.create_table(
        "signal_history",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scan_date", sa.Date, nullable=False),
        *_signal_columns(),
        sa.Column("first_seen", sa.Date, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signal_history"),
        _run_fk("signal_history"),
        sa.UniqueConstraint(
            "scan_date", "symbol", "horizon", name="uq_signal_history_scan_date_symbol_horizon"
        ),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_signal_history_side"),
    )
    op.create_index("ix_signal_history_run_id", "signal_history", ["run_id"])
    op.create_index("ix_signal_history_symbol_scan_date", "signal_history", ["symbol", "scan_date"])
    op.create_table(
        "positions",
        sa.Column("symbol", sa.String(32), nullable=False),
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
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("symbol", name="pk_positions"),
        sa.CheckConstraint("state IN ('flat', 'long', 'short')", name="ck_positions_state"),
    )
    op.create_table(
        "position_events",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("scan_date", sa.Date, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("date", sa.Date, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("price", sa.Float, nullable=True),
        sa.Column("size_change", sa.Float, nullable=False),
        sa.Column("size_after", sa.Float, nullable=False),
        sa.Column("stop_after", sa.Float, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_position_events"),
        _run_fk("position_events"),
        sa.UniqueConstraint(
            "symbol", "date", "kind", "seq", name="uq_position_events_symbol_date_kind_seq"
        ),
    )
    op.create_index("ix_position_events_run_id", "position_events", ["run_id"])
    op.create_table(
        "training_samples",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("sector", sa.String(64), nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("signal_date", sa.Date, nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("entry_price", sa.Float, nullable=False),
        sa.Column("exit_price", sa.Float, nullable=True),
        sa.Column("exit_date", sa.Date, nullable=True),
        sa.Column("realized_return", sa.Float, nullable=True),
        sa.Column("label", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_training_samples"),
        sa.UniqueConstraint(
            "symbol",
            "horizon",
            "signal_date",
            name="uq_training_samples_symbol_horizon_signal_date",
        ),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_training_samples_side"),
        sa.CheckConstraint("label IN (0, 1, 2)", name="ck_training_samples_label"),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('win', 'loss', 'flat')",
            name="ck_training_samples_outcome",
        ),
    )
    op.create_index("ix_training_samples_signal_date", "training_samples", ["signal_date"])


def downgrade() -> None:
    for table in (
        "training_samples",
        "position_events",
        "positions",
        "signal_history",
        "signals",
        "scan_failures",
        "scan_runs",
    ):
        op.drop_table(table)
