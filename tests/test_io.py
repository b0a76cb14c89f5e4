"""Atomic writes: a crash mid-write leaves the previous file whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from turbomode.io import atomic_path, atomic_write_json, atomic_write_text


def test_crash_mid_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "pointer.json"
    atomic_write_json({"version": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["pointer.json"]  # no temp file left


def test_replace_is_readable_by_others(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text("one", target)
    atomic_write_text("two", target)
    assert target.read_text() == "two"
    assert target.stat().st_mode & 0o777 == 0o644
