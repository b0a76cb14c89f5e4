"""Shared test fixtures: where real data lives, and when a missing resource is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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
