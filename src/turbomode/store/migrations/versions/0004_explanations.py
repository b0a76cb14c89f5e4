"""Signal explanations: each feature's contribution to the score that issued a signal.

One row per issued signal (symbol, horizon, signal date), written by the run that issued it
and removed with it (``run_id`` cascades, and a re-run undoes it first); a signal carried
over to later nights keeps the explanation of the night it was issued.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signal_explanations",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("signal_date", sa.Date, nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_signal_explanations"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["scan_runs.id"],
            name="fk_signal_explanations_run_id_scan_runs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "symbol",
            "horizon",
            "signal_date",
            name="uq_signal_explanations_symbol_horizon_signal_date",
        ),
    )
    op.create_index("ix_signal_explanations_run_id", "signal_explanations", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_signal_explanations_run_id", "signal_explanations")
    op.drop_table("signal_explanations")
