"""The paper wallet: wallets, their positions, the fill ledger and the daily equity.

A wallet's day is written in one transaction; ``uq_wallet_equity_wallet_id_date`` and
``uq_wallet_fills_wallet_id_date_seq`` make a second write of the same day collide instead of
stacking fills, and ``wallet_equity.positions_before`` keeps what a re-run must restore.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _wallet_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["wallet_id"], ["wallets.id"], name=f"fk_{table}_wallet_id_wallets", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "wallets",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("rules", sa.String(8), nullable=False),
        sa.Column("initial_cash", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_date", sa.Date, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_wallets"),
        sa.UniqueConstraint("name", name="uq_wallets_name"),
        sa.CheckConstraint("rules IN ('atr', 'smart')", name="ck_wallets_rules"),
        sa.CheckConstraint("initial_cash > 0", name="ck_wallets_initial_cash"),
    )
    op.create_table(
        "wallet_positions",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("wallet_id", sa.Integer, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_wallet_positions"),
        _wallet_fk("wallet_positions"),
        sa.UniqueConstraint("wallet_id", "trade_id", name="uq_wallet_positions_wallet_id_trade_id"),
        sa.UniqueConstraint(
            "wallet_id",
            "symbol",
            "entry_date",
            name="uq_wallet_positions_wallet_id_symbol_entry_date",
        ),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_wallet_positions_status"),
        sa.CheckConstraint("side IN ('long', 'short')", name="ck_wallet_positions_side"),
    )
    op.create_index("ix_wallet_positions_wallet_id", "wallet_positions", ["wallet_id"])
    op.create_table(
        "wallet_fills",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("wallet_id", sa.Integer, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_wallet_fills"),
        _wallet_fk("wallet_fills"),
        sa.UniqueConstraint("wallet_id", "date", "seq", name="uq_wallet_fills_wallet_id_date_seq"),
        sa.CheckConstraint("action IN ('buy', 'sell')", name="ck_wallet_fills_action"),
    )
    op.create_index("ix_wallet_fills_wallet_id", "wallet_fills", ["wallet_id"])
    op.create_table(
        "wallet_equity",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("wallet_id", sa.Integer, nullable=False),
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
        sa.Column("positions_before", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_wallet_equity"),
        _wallet_fk("wallet_equity"),
        sa.UniqueConstraint("wallet_id", "date", name="uq_wallet_equity_wallet_id_date"),
    )
    op.create_index("ix_wallet_equity_wallet_id", "wallet_equity", ["wallet_id"])


def downgrade() -> None:
    for table in ("wallet_equity", "wallet_fills", "wallet_positions"):
        op.drop_index(f"ix_{table}_wallet_id", table)
        op.drop_table(table)
    op.drop_table("wallets")
