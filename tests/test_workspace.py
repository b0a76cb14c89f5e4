"""The Workspace: every path and store location follows the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbomode.config import load_settings
from turbomode.workspace import Workspace, with_data_dir


def test_defaults_live_under_data() -> None:
    ws = Workspace.of(load_settings())
    assert ws.signals_url == "sqlite:///data/signals.db"
    assert ws.model_registry_uri == "data/models"
    assert ws.latest_scan == Path("data/scans/latest_scan.json")


def test_data_dir_moves_every_store(tmp_path: Path) -> None:
    s = with_data_dir(load_settings(), tmp_path / "d")
    ws = Workspace.of(s)
    assert ws.signals_url == f"sqlite:///{tmp_path}/d/signals.db"
    assert ws.model_registry_uri == f"{tmp_path}/d/models"
    assert Path(s.yfinance.cache_dir) == tmp_path / "d" / "cache" / "yfinance"
    assert Path(s.fred.cache_dir) == tmp_path / "d" / "cache" / "fred"
    for path in (ws.clean_dir, ws.feast_dir, ws.scans_dir, ws.reports_dir, ws.smart_dir):
        assert path.is_relative_to(tmp_path / "d")
    # moving again follows (the derived values are recognised as derived)
    s = with_data_dir(s, tmp_path / "e")
    assert Workspace.of(s).signals_url == f"sqlite:///{tmp_path}/e/signals.db"


def test_environment_data_dir_moves_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURBOMODE_DATA__DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.stores.signals_url == f"sqlite:///{tmp_path}/signals.db"
    assert s.stores.model_registry_uri == f"{tmp_path}/models"


def test_explicit_stores_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", "postgresql+psycopg://x@db/signals")
    monkeypatch.setenv("TURBOMODE_STORES__MODEL_REGISTRY_URI", "s3://bucket/models")
    s = with_data_dir(load_settings(), tmp_path)
    assert s.stores.signals_url == "postgresql+psycopg://x@db/signals"
    assert s.stores.model_registry_uri == "s3://bucket/models"
