"""The root app: every command module's commands are mounted on it, and the one error handler
turns the expected errors into one line and exit code 2 (anything else still raises)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

import turbomode.cli
from turbomode.cli.common import handles_errors, settings_from
from turbomode.cli.main import app
from turbomode.errors import TurboModeError

runner = CliRunner()


def _commands(group: typer.Typer) -> dict[str, object]:
    """name → callback of every command, and → app of every sub-group, registered on an app."""
    found: dict[str, object] = {}
    for info in group.registered_commands:
        assert info.callback is not None
        found[info.name or info.callback.__name__.replace("_", "-")] = info.callback
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name is not None
        found[sub.name] = sub.typer_instance
    return found


def _mounted(group: typer.Typer) -> set[object]:
    """Every command callback and sub-group app reachable from ``group``."""
    seen: set[object] = set()
    for thing in _commands(group).values():
        seen.add(thing)
        if isinstance(thing, typer.Typer):
            seen |= _mounted(thing)
    return seen


def _group_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(turbomode.cli.__path__)]
    return sorted(n for n in names if n not in ("common", "main"))


@pytest.mark.parametrize("name", _group_modules())
def test_every_command_module_is_mounted_on_the_root_app(name: str) -> None:
    """Each module's groups (Typer apps) and ``*_command`` functions are reachable from the
    root app — serve's standalone app (``python -m turbomode.cli.serve``) aside: its one
    command is mounted as ``turbomode serve``."""
    module = importlib.import_module(f"turbomode.cli.{name}")
    standalone = getattr(module, "app", None) if name == "serve" else None
    groups = [
        v for v in vars(module).values() if isinstance(v, typer.Typer) and v is not standalone
    ]
    commands = [
        v
        for k, v in vars(module).items()
        if k.endswith("_command") and getattr(v, "__module__", None) == module.__name__
    ]
    assert groups or commands, f"turbomode.cli.{name} defines no command"
    mounted = _mounted(app)
    for thing in (*groups, *commands):
        assert thing in mounted, f"{thing} of turbomode.cli.{name} is not on the root app"


def test_help_lists_every_group_and_command() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in _commands(app):
        assert f" {name} " in result.output, name


def _app_with(command: object) -> typer.Typer:
    """A root app like the real one (--config, --data-dir) with one command."""
    root = typer.Typer(pretty_exceptions_enable=False)

    @root.callback()
    def main(
        config: Annotated[Path | None, typer.Option("--config")] = None,
        data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    ) -> None:
        del config, data_dir

    root.command("boom")(command)  # type: ignore[arg-type]
    return root


@handles_errors
def _raises(
    ctx: typer.Context,
    what: Annotated[str, typer.Option("--what", help="Which error to raise.")] = "platform",
) -> None:
    """Raise the chosen error, after resolving the settings as every command does."""
    settings_from(ctx)
    if what == "platform":
        raise TurboModeError("the thing is broken")
    if what == "value":
        raise ValueError("a bad value")
    if what == "os":
        raise FileNotFoundError("no such file: /nowhere")
    raise KeyError("not an expected error")


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("platform", "error: the thing is broken"),
        ("value", "error: a bad value"),
        ("os", "error: no such file: /nowhere"),
    ],
)
def test_the_handler_turns_expected_errors_into_one_line_and_exit_2(
    what: str, message: str, tmp_path: Path
) -> None:
    result = runner.invoke(
        _app_with(_raises), ["--data-dir", str(tmp_path), "boom", "--what", what]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.startswith(message)
    assert len(result.output.strip().splitlines()) == 1


def test_the_handler_lets_unexpected_errors_through() -> None:
    result = runner.invoke(_app_with(_raises), ["boom", "--what", "other"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


def test_the_handler_keeps_the_commands_options() -> None:
    result = runner.invoke(_app_with(_raises), ["boom", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--what" in result.output and "Which error to raise." in result.output
    assert "Raise the chosen error" in result.output


def test_an_unexpected_platform_error_in_a_real_command_is_one_line(tmp_path: Path) -> None:
    """`turbomode evaluate` on an empty data directory: a TurboModeError, one line, exit 2."""
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "evaluate"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.startswith("error: no training report")
    assert len(result.output.strip().splitlines()) == 1


def test_python_dash_m_turbomode_is_the_command() -> None:
    import runpy
    import sys

    argv = sys.argv
    sys.argv = ["turbomode", "version"]
    try:
        with pytest.raises(SystemExit) as exit_:
            runpy.run_module("turbomode", run_name="__main__")
    finally:
        sys.argv = argv
    assert exit_.value.code in (0, None)
