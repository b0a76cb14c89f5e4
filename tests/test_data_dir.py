"""``--data-dir`` moves everything: each command run from another working directory reads and
writes only under the data directory (stores, registry, scans, reports, smart state)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from turbomode.cli.main import app
from turbomode.cli.serve import server_environment
from turbomode.config import Settings, load_settings
from turbomode.workspace import Workspace, with_data_dir

SMALL = {"synthetic": {"n_symbols": 11, "n_days": 300}}

# Each command, after ingest → features build → materialize; every one must leave the
# working directory empty and exit 0 (scan: no models yet, so nothing is scored — but the run
# is recorded under the data directory, and `signals` reads it back from there).
COMMANDS = [
    ["scan"],
    ["signals"],
    ["outcomes", "track"],
    ["outcomes", "samples"],
    ["wallet", "create", "paper", "--rules", "atr"],
    ["wallet", "list"],
    ["ranking", "update"],
    ["universe", "curate"],
    ["models", "list"],
    ["smart-scan"],
    ["retrain", "--no-ray"],
    ["regime"],
]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for name in list(os.environ):
        if name == "TURBOMODE_CONFIG" or (name.startswith("TURBOMODE_") and "__" in name):
            monkeypatch.delenv(name)
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    monkeypatch.setenv("TURBOMODE_CONFIG", str(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path / "d", elsewhere


def test_every_command_honours_data_dir_from_another_directory(
    isolated: tuple[Path, Path],
) -> None:
    data, elsewhere = isolated
    runner = CliRunner()
    for args in (["ingest"], ["features", "build"], ["features", "materialize"], *COMMANDS):
        res = runner.invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)
        assert not list(elsewhere.iterdir()), (args, list(elsewhere.iterdir()))
    ws = Workspace.of(with_data_dir(load_settings(), data))
    assert ws.latest_scan.exists() and (data / "signals.db").exists()
    assert (ws.clean_dir / "prices.parquet").exists() and ws.feast_dir.is_dir()
    assert ws.smart_dir.is_dir()
    res = runner.invoke(app, ["--data-dir", str(data), "config", "show"])
    shown = yaml.safe_load(res.output)
    assert shown["stores"]["signals_url"] == f"sqlite:///{data}/signals.db"
    assert shown["stores"]["model_registry_uri"] == f"{data}/models"


def test_serve_hands_the_workers_the_whole_workspace(
    isolated: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = isolated
    settings = with_data_dir(load_settings(), data)
    env = server_environment(settings, None, None, {})
    monkeypatch.setenv("TURBOMODE_DATA__DATA_DIR", env["TURBOMODE_DATA__DATA_DIR"])
    worker = Settings()  # what a worker builds from its environment
    ws = Workspace.of(worker)
    assert ws.signals_url == f"sqlite:///{data.resolve()}/signals.db"
    assert ws.model_registry_uri == f"{data.resolve()}/models"
    from turbomode.serving.context import scan_path

    assert scan_path(worker, None) == data.resolve() / "scans" / "latest_scan.json"
