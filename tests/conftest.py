"""Shared test fixtures: where real data lives, and when a missing resource is a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from turbomode.config import ModelSettings
from turbomode.store import SignalStore

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist's workers (make test runs two) inherit COLUMNS=80 and LINES=24 from execnet, which
# a serial run does not have: the CLI would then print 80-column tables where its piped output
# is 240 wide. The CLI tests check what a user's pipe gets, so the workers drop them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

# Five trees per learner: real stacked ensembles, trained in seconds, for tests that need a
# model rather than a good one.
TINY = ModelSettings(
    lightgbm={"n_estimators": 5, "num_leaves": 7, "min_child_samples": 20},
    catboost={"iterations": 5, "depth": 3},
    xgb_hist={"n_estimators": 5, "max_depth": 3},
    xgb_linear={"n_estimators": 5},
    random_forest={"n_estimators": 5, "max_depth": 4},
    meta={"n_estimators": 5, "num_leaves": 7, "min_child_samples": 20},
)
SHARED = Path(os.environ.get("TURBOMODE_SHARED_DIR", REPO.parent / "shared"))


def services_required() -> bool:
    """CI sets TURBOMODE_REQUIRE_SERVICES=1: then an absent resource fails instead of skipping."""
    return os.environ.get("TURBOMODE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def need(condition: bool, reason: str) -> None:
    """Skip with a reason when a resource is absent, or fail when services are required."""
    if condition:
        return
    if services_required():
        pytest.fail(f"required resource missing (TURBOMODE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data: real S&P 500 prices, read in place and never copied into the project."""
    path = SHARED / "data"
    need((path / "prices.parquet").exists(), f"real market data not found at {path}")
    return path


def _can_connect(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def closed_port() -> int:
    """A local port nobody listens on (free a moment ago): connecting to it is refused, as a
    server that is down or a wrong port would be."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (production online store); skip or fail when it is not running."""
    url = os.environ.get("TURBOMODE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    need(_can_connect("127.0.0.1", 6379), "Redis is not running on 127.0.0.1:6379")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL (registry and signals store); skip or fail when absent."""
    url = os.environ.get(
        "TURBOMODE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    need(_can_connect("127.0.0.1", 5432), "PostgreSQL is not running on 127.0.0.1:5432")
    return url


# ---- the signals store on both backends (signals, wallet and other store tests) -------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SignalStore]:
    """An empty, unmigrated store; on PostgreSQL in a schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        store = SignalStore(f"sqlite:///{tmp_path}/signals.db")
        yield store
        store.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    store = SignalStore(url, schema=schema)
    try:
        yield store
    finally:
        store.dispose()
        admin = sa.create_engine(url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(fresh: SignalStore) -> SignalStore:
    """A migrated store on either backend."""
    fresh.migrate()
    return fresh


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SignalStore]:
    """A migrated SQLite store only."""
    store = SignalStore(f"sqlite:///{tmp_path}/v.db")
    store.migrate()
    yield store
    store.dispose()


from tests.ray_cluster import ray_client_address, ray_cluster  # noqa: E402, F401  (fixtures)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts the multi-node Ray ``ray_cluster``, before ``-m`` selects:
    ``make test`` runs those alone, after the parallel part."""
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray_cluster)
