"""Every skip goes through ``tests.conftest.need``, so CI (``TURBOMODE_REQUIRE_SERVICES=1``, set
by ``.ci/run``) turns a missing service, tool or data set into a failure. A direct skip would
let CI pass green with the thing it tests gone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO, need

# A skip or expected failure decided outside need(): pytest's functions and marks, unittest's.
BYPASS = re.compile(
    r"\bpytest\s*\.\s*(skip|importorskip|xfail)\s*\("
    r"|\bmark\s*\.\s*(skip|skipif|xfail)\b"
    r"|\bunittest\s*\.\s*skip|\bSkipTest\b"
)
CENTRAL = REPO / "tests" / "conftest.py"


def bypasses(root: Path, allowed: dict[Path, int]) -> list[str]:
    """``path:line: text`` of each bypassing skip under ``root``; ``allowed`` maps a file to how
    many it may hold (need() itself)."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        hits = [
            f"{path.relative_to(root)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if BYPASS.search(line)
        ]
        if len(hits) > allowed.get(path.resolve(), 0):
            found += hits
    return found


def test_no_skip_bypasses_need() -> None:
    assert bypasses(REPO / "tests", {CENTRAL.resolve(): 1}) == [], (
        "skip through tests.conftest.need(condition, reason), which fails instead when "
        "TURBOMODE_REQUIRE_SERVICES=1"
    )


def test_the_scan_finds_each_kind_of_bypass(tmp_path: Path) -> None:
    lines = [
        'pytest.skip("no redis")',
        'psycopg = pytest.importorskip("psycopg")',
        "@pytest.mark.skipif(shutil.which('helm') is None, reason='no helm')",
        "@pytest.mark.skip(reason='later')",
        "pytest.xfail('flaky')",
        "raise unittest.SkipTest('no browser')",
    ]
    (tmp_path / "test_x.py").write_text("\n".join([*lines, "need(ok, 'fine')", "x = 1"]) + "\n")
    found = bypasses(tmp_path, {})
    assert [f.split(": ", 1)[1] for f in found] == lines


def test_need_skips_or_fails_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    need(True, "present: neither skips nor fails")
    monkeypatch.delenv("TURBOMODE_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="gone"):
        need(False, "gone")
    monkeypatch.setenv("TURBOMODE_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match=r"TURBOMODE_REQUIRE_SERVICES=1.*gone"):
        need(False, "gone")
