"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


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
