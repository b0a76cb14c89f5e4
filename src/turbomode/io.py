"""Atomic file writes (a reader sees the old file or the new one, never half of either), and
table reads whose errors name the file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from turbomode.errors import UnreadableFileError


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it over the target.

    The rename is atomic on POSIX, so a crash mid-write leaves the previous file intact.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with tmp_path.open("rb") as fh:
            os.fsync(fh.fileno())
        tmp_path.chmod(0o644)  # mkstemp makes 0600; stores are read by other processes
        tmp_path.replace(target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_parquet(frame: pd.DataFrame, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")


def atomic_write_text(text: str, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(obj: Any, target: Path | str) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", target)


@contextmanager
def reading(path: Path | str, what: str = "file") -> Iterator[None]:
    """Read ``path`` inside this block: a parser's error (pandas, pyarrow, a decode error on a
    binary file) becomes one :class:`UnreadableFileError` that says which file and why."""
    path = Path(path)
    try:
        if path.exists() and path.stat().st_size == 0:
            raise UnreadableFileError(f"{what} {path} is empty (0 bytes)")
        yield
    except UnicodeDecodeError:
        raise UnreadableFileError(f"{what} {path} is not text (binary?); expected CSV") from None
    except (ValueError, OSError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(f"cannot read {what} {path}: {reason}") from None


def read_table(path: Path | str, what: str = "file") -> pd.DataFrame:
    """A .parquet or .csv (or .txt, read as CSV) file as a frame; other suffixes are refused."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv", ".txt"):
        raise UnreadableFileError(
            f"{what} {path}: unsupported file type {path.suffix!r}; use .csv or .parquet"
        )
    with reading(path, what):
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
