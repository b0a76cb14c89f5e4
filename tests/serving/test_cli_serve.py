"""``turbomode serve`` through typer's CliRunner: the server command it hands over to, the
settings it passes on (standalone and mounted under a root app with --config/--data-dir), and
its errors. (The service tests start the same command for real in a subprocess.)"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from turbomode.cli import serve as cli_serve


class HandoverError(Exception):
    """Raised by the stand-in for exec: the command got as far as starting the server."""


@pytest.fixture
def handover(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake(path: str, argv: Sequence[str], env: Mapping[str, str]) -> Any:
        seen.update(path=path, argv=list(argv), env=dict(env))
        raise HandoverError

    monkeypatch.setattr(cli_serve, "run_server", fake)
    for name in ("TURBOMODE_CONFIG", "TURBOMODE_SERVE_WORKERS", "TURBOMODE_DATA__DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_standalone_hands_over_to_bentoml_serve(
    handover: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_serve.app, ["--port", "4321", "--workers", "2"])
    assert isinstance(result.exception, HandoverError), result.output
    assert handover["path"] == sys.executable
    assert handover["argv"] == [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "turbomode.serving.service:TurboMode",
        "--host",
        "127.0.0.1",
        "--port",
        "4321",
    ]
    env = handover["env"]
    assert env["TURBOMODE_DATA__DATA_DIR"] == str((tmp_path / "data").resolve())
    assert env["TURBOMODE_SERVE_WORKERS"] == "2" and "TURBOMODE_CONFIG" not in env
    assert "no clean store" in result.output  # warned, still served


def test_mounted_under_a_root_app_passes_its_config_and_data_dir(
    handover: dict[str, Any], tmp_path: Path
) -> None:
    root = typer.Typer()

    @root.callback()
    def main(
        config: Annotated[Path | None, typer.Option("--config")] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    ) -> None:
        """A root like turbomode's own."""

    root.command("serve")(cli_serve.serve_command)
    config = tmp_path / "settings.yaml"
    config.write_text("signals:\n  entry_probability: 0.7\n")
    (tmp_path / "d" / "clean").mkdir(parents=True)
    (tmp_path / "d" / "clean" / "prices.parquet").write_bytes(b"")
    result = CliRunner().invoke(
        root,
        [
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "d"),
            "serve",
            "--reload",
            "--host",
            "0.0.0.0",
        ],
    )
    assert isinstance(result.exception, HandoverError), result.output
    assert handover["env"]["TURBOMODE_CONFIG"] == str(config.resolve())
    assert handover["env"]["TURBOMODE_DATA__DATA_DIR"] == str((tmp_path / "d").resolve())
    assert handover["argv"][-5:] == ["--host", "0.0.0.0", "--port", "3000", "--reload"]
    assert "no clean store" not in result.output


def test_bad_options_and_settings_are_errors(
    handover: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runner = CliRunner()
    assert runner.invoke(cli_serve.app, ["--port", "0"]).exit_code == 2
    assert runner.invoke(cli_serve.app, ["--workers", "0"]).exit_code == 2
    monkeypatch.setenv("TURBOMODE_CONFIG", str(tmp_path / "missing.yaml"))
    result = runner.invoke(cli_serve.app, [])
    assert result.exit_code == 2 and "missing.yaml" in result.output
    assert handover == {}
    helped = runner.invoke(cli_serve.app, ["--help"])
    assert helped.exit_code == 0 and "--port" in helped.output and "/predict" in helped.output
