"""The platform's database: the signals store in SQLite (embedded) or PostgreSQL (a cluster).

``engine`` holds the connection, transactions, migrations, errors and the checks every write
runs; ``tables`` the schema the migrations in ``migrations/`` create; one repository module
per aggregate — ``scans`` (runs, active signals, history), ``positions`` (the book and its
events), ``outcomes`` (outcomes and training samples), ``retrains``, ``wallets`` — each a mixin
that :class:`SignalStore` composes. The store sits just above ``records``: it imports nothing
from the layers that use it (signals, outcomes, smart, wallet).
"""

from turbomode.store.engine import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    ConcurrentUpdateError,
    InvalidRecordError,
    StaleScanError,
    StoreError,
    StoreUnavailableError,
)
from turbomode.store.outcomes import (
    LABELS,
    OUTCOME_COLUMNS,
    OUTCOMES,
    TRAINING_COLUMNS,
    TRAINING_KEY,
    TRAINING_OPTIONAL,
    TRAINING_REQUIRED,
)
from turbomode.store.retrains import RETRAIN_COLUMNS
from turbomode.store.scans import RUN_COLUMNS, RUN_STATUSES, ScanRun
from turbomode.store.signal_store import SignalStore
from turbomode.store.tables import metadata
from turbomode.store.wallets import (
    WALLET_EQUITY_COLUMNS,
    WALLET_FILL_COLUMNS,
    WALLET_POSITION_COLUMNS,
    WALLET_RULES,
    StaleWalletDayError,
    UnknownWalletError,
    Wallet,
    WalletBook,
    WalletExistsError,
)

__all__ = [
    "LABELS",
    "MIGRATIONS_DIR",
    "OUTCOMES",
    "OUTCOME_COLUMNS",
    "RETRAIN_COLUMNS",
    "RUN_COLUMNS",
    "RUN_STATUSES",
    "TRAINING_COLUMNS",
    "TRAINING_KEY",
    "TRAINING_OPTIONAL",
    "TRAINING_REQUIRED",
    "VERSION_TABLE",
    "WALLET_EQUITY_COLUMNS",
    "WALLET_FILL_COLUMNS",
    "WALLET_POSITION_COLUMNS",
    "WALLET_RULES",
    "ConcurrentUpdateError",
    "InvalidRecordError",
    "ScanRun",
    "SignalStore",
    "StaleScanError",
    "StaleWalletDayError",
    "StoreError",
    "StoreUnavailableError",
    "UnknownWalletError",
    "Wallet",
    "WalletBook",
    "WalletExistsError",
    "metadata",
]
