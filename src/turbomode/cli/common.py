"""What the command modules share: the global options and the settings they give, the one
error handler, the consoles, and the small helpers more than one group uses."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar, overload

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from turbomode.config import Settings, load_settings
from turbomode.errors import TurboModeError
from turbomode.redaction import redact
from turbomode.workspace import with_data_dir

# Piped or logged output is as wide as its lines: rich would cut tables at 80 columns, and an
# identifier cut to "202612…" is useless. COLUMNS, when set, still decides.
PIPED_WIDTH = 240


def _width(stream: Any) -> int | None:
    if stream.isatty() or os.environ.get("COLUMNS"):
        return None
    return PIPED_WIDTH


console = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))
# What a command reports in one line through :func:`fail` rather than as a traceback: the
# platform's own errors, bad values, and the OS's file and network errors (a --data-dir that
# is a file, a missing or unreadable path, a refused connection).
EXPECTED: tuple[type[Exception], ...] = (TurboModeError, ValueError, OSError)

P = ParamSpec("P")
R = TypeVar("R")


def global_options(ctx: typer.Context) -> tuple[Path | None, Path | None]:
    """The root command's ``--config`` and ``--data-dir`` (None when not given, or when the
    group runs standalone, without the root app)."""
    params = ctx.find_root().params
    config, data_dir = params.get("config"), params.get("data_dir")
    return (Path(config) if config else None), (Path(data_dir) if data_dir else None)


def settings_from(ctx: typer.Context) -> Settings:
    """The settings of this invocation: defaults < the --config file < TURBOMODE_* environment
    variables, with the global --data-dir on top. Mounted under the main app it honours its
    options; standalone, the environment."""
    config, data_dir = global_options(ctx)
    return with_data_dir(load_settings(config), data_dir)


def fail(exc: BaseException) -> NoReturn:
    """Print the error (it names the problem; secrets in it redacted) and exit 2, without a
    traceback."""
    err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A command whose expected errors (:data:`EXPECTED`) end in :func:`fail`'s one line and
    exit code 2 instead of a traceback. Typer reads the options from the wrapped signature."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except EXPECTED as exc:
            fail(exc)

    return run


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


def progress_bar(transient: bool) -> Progress:
    """A progress bar on stderr (stdout stays for tables and JSON); off when not a terminal."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


def stage_lines(what: str) -> Callable[[str], None]:
    """A callback that prints each stage of a long step as a line on stderr, with the seconds
    since the step began: a newcomer sees it working, and a log shows where the time went."""
    start = time.perf_counter()

    def stage(name: str) -> None:
        err.print(f"{what}: {name} ({time.perf_counter() - start:.0f} s)", highlight=False)

    return stage


def print_frame(frame: Any, title: str) -> None:
    """A data frame as a table, floats to three decimals, missing values blank; cells wrap
    rather than being cut."""
    table = Table(title=escape(title))
    for col in frame.columns:
        table.add_column(escape(str(col)), overflow="fold")
    for rec in frame.itertuples(index=False):
        table.add_row(*(_cell(v) for v in rec))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.3f}" if isinstance(value, float) else escape(str(value))


def print_json(value: Any) -> None:
    """What a listing command prints with --json: plain JSON on stdout, dates as strings."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
