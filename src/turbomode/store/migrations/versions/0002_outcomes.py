"""The outcome loop: signal outcomes, sample features, retrain runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signal_outcomes",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
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
        sa.Column("status", sa.String(16), nullable=False),
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
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("sampled", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signal_outcomes"),
        sa.UniqueConstraint(
            "symbol", "horizon", "signal_date", name="uq_signal_outcomes_symbol_horizon_signal_date"
        ),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_signal_outcomes_side"),
        sa.CheckConstraint("status IN ('pending', 'resolved')", name="ck_signal_outcomes_status"),
    )
    op.create_index("ix_signal_outcomes_status", "signal_outcomes", ["status"])
    op.create_table(
        "retrain_runs",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_new_samples", sa.Integer, nullable=False),
        sa.Column("max_sample_id", sa.Integer, nullable=False),
        sa.Column("pointers_before", sa.JSON, nullable=False),
        sa.Column("report", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_retrain_runs"),
        sa.CheckConstraint(
            "status IN ('running', 'promoted', 'kept', 'skipped', 'failed', 'aborted')",
            name="ck_retrain_runs_status",
        ),
    )
    with op.batch_alter_table("training_samples") as batch:
        batch.add_column(sa.Column("features", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_samples") as batch:
        batch.drop_column("features")
    op.drop_table("retrain_runs")
    op.drop_index("ix_signal_outcomes_status", "signal_outcomes")
    op.drop_table("signal_outcomes")
