"""The store's engine on SQLite and on the machine's PostgreSQL: migrations (every revision
up, the wallet's 0003 and the explanations' 0004 down and up again, no drift from the
models), the SQLite file and pragmas, refused URLs, and one clear error for an unreachable
database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from turbomode.store import VERSION_TABLE, SignalStore, StoreUnavailableError, metadata

from .conftest import first_scan

WALLET_TABLES = {"wallets", "wallet_positions", "wallet_fills", "wallet_equity"}


def _alembic(store: SignalStore, action: str, revision: str) -> None:
    cfg = store._alembic_config()
    with store._write() as conn:
        if store.schema is not None:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{store.schema}"'))
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def _tables(store: SignalStore) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names(schema=store.schema))


# ---- migrations -----------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op_and_matches_the_models(fresh: SignalStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert fresh.current_revision() is None
    head = fresh.head_revision()
    assert head is not None
    assert fresh.migrate() == head
    first_scan(fresh)
    assert fresh.migrate() == head  # second upgrade: nothing to do, data kept
    assert fresh.current_revision() == head
    assert len(fresh.runs()) == 1
    with fresh.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(ctx, metadata) == []  # migration and models do not drift


def test_upgrade_from_0002_keeps_data_and_downgrade_removes_the_wallet(
    fresh: SignalStore,
) -> None:
    _alembic(fresh, "upgrade", "0002")
    assert fresh.current_revision() == "0002"
    assert not WALLET_TABLES & _tables(fresh)
    run_id = fresh.start_retrain({"Energy/1": "v1"}, 5, 42)

    head = fresh.head_revision()
    _alembic(fresh, "upgrade", "0003")
    assert fresh.current_revision() == "0003"
    assert _tables(fresh) >= WALLET_TABLES
    assert fresh.retrain_runs()["id"].tolist() == [run_id]  # earlier data kept
    fresh.create_wallet("w", "smart", 10_000.0)
    assert fresh.wallet("w").rules == "smart"

    _alembic(fresh, "downgrade", "0002")
    assert fresh.current_revision() == "0002"
    assert not WALLET_TABLES & _tables(fresh)
    assert fresh.retrain_runs()["id"].tolist() == [run_id]
    assert fresh.migrate() == head  # and up again, to the newest revision
    assert fresh.wallets() == []


def test_relative_sqlite_url_creates_its_directory_with_wal_and_foreign_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SignalStore("sqlite:///data/nested/signals.db")
    store.migrate()
    assert (tmp_path / "data" / "nested" / "signals.db").exists()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.dispose()


def test_unsupported_url_and_schema_on_sqlite_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="sqlite and postgresql"):
        SignalStore("mysql://u@h/db")
    with pytest.raises(Exception, match="only for PostgreSQL"):
        SignalStore(f"sqlite:///{tmp_path}/x.db", schema="abc")


def test_an_unreachable_database_is_one_error_naming_it_without_the_password(
    tmp_path: Path, closed_port: int
) -> None:
    url = f"postgresql+psycopg://turbo:pw-secret@127.0.0.1:{closed_port}/test"
    with pytest.raises(StoreUnavailableError) as caught:
        SignalStore(url).migrate()
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to the signals store postgresql+psycopg://turbo:***@127.0.0.1:"
        f"{closed_port}/test: connection failed: "
    )
    assert "Connection refused" in message and "pw-secret" not in message
    assert "\n" not in message
    (tmp_path / "signals.db").mkdir()  # a directory where the SQLite file should be
    with pytest.raises(StoreUnavailableError, match=r"signals\.db: unable to open database"):
        SignalStore(f"sqlite:///{tmp_path}/signals.db").runs()


def test_upgrade_from_0003_keeps_data_and_downgrade_removes_the_explanations(
    fresh: SignalStore,
) -> None:
    _alembic(fresh, "upgrade", "0003")
    assert "signal_explanations" not in _tables(fresh)
    run_id = first_scan(fresh)
    _alembic(fresh, "upgrade", "0004")
    assert "signal_explanations" in _tables(fresh)
    assert fresh.runs()["id"].tolist() == [run_id]  # earlier data kept
    assert fresh.explanations() == {}
    _alembic(fresh, "downgrade", "0003")
    assert "signal_explanations" not in _tables(fresh)
    assert fresh.runs()["id"].tolist() == [run_id]
    assert fresh.migrate() == fresh.head_revision()  # and up again
    assert "signal_explanations" in _tables(fresh)
