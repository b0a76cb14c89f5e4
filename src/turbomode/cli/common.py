"""What the sub-command modules share: settings from the root command, and error exits."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import NoReturn, overload

import typer
from rich.console import Console
from rich.markup import escape

from turbomode.config import Settings, load_settings
from turbomode.errors import TurboModeError
from turbomode.redaction import redact
from turbomode.workspace import with_data_dir

err = Console(stderr=True)
# What a command reports in one line through :func:`fail` rather than as a traceback: the
# platform's own errors, bad values, and the OS's file and network errors (a --data-dir that
# is a file, a missing or unreadable path, a refused connection).
EXPECTED: tuple[type[Exception], ...] = (TurboModeError, ValueError, OSError)


def settings_from(ctx: typer.Context) -> Settings:
    """Mounted under the main app: honour its --config and --data-dir; standalone: the
    environment."""
    params = ctx.find_root().params
    config, data_dir = params.get("config"), params.get("data_dir")
    return with_data_dir(load_settings(Path(config) if config else None), data_dir)


def fail(exc: BaseException) -> NoReturn:
    """Print the error (it names the problem; secrets in it redacted) and exit 2, without a
    traceback."""
    err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


@overload
def parse_day(value: str, option: str = "--date") -> date: ...
@overload
def parse_day(value: None, option: str = "--date") -> None: ...
def parse_day(value: str | None, option: str = "--date") -> date | None:
    """A command-line date (YYYY-MM-DD); an error that names the option when it is not one."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} must be a date YYYY-MM-DD, got {value!r}") from None
