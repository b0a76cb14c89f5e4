"""The platform's database as one object: every repository over one engine."""

from __future__ import annotations

from turbomode.store.outcomes import OutcomeRepository
from turbomode.store.retrains import RetrainRepository
from turbomode.store.scans import ScanRepository
from turbomode.store.wallets import WalletRepository


class SignalStore(ScanRepository, OutcomeRepository, RetrainRepository, WalletRepository):
    """Scans and signals, positions, outcomes and training samples, retrain runs and wallets
    in SQLite or PostgreSQL; call :meth:`migrate` once before use.

    One object rather than one per repository: a scan, the outcome tracker and a wallet day
    share the engine (its pool, SQLite's pragmas, the write lock) and one schema version.
    """
