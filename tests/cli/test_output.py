"""Output a person can read: long steps say what they are doing, no library warnings that are
not the user's business, no "nan" where nothing happened yet, and the sector overview with
named columns in a useful order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, need
from turbomode.cli.main import app
from turbomode.store import SignalStore

SMALL = {"synthetic": {"n_symbols": 11, "n_days": 300}}


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURBOMODE_")}
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    env["TURBOMODE_CONFIG"] = str(config)
    return env


def turbomode(env: dict[str, str], data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a fresh process, so every import-time warning shows."""
    done = subprocess.run(
        [sys.executable, "-m", "turbomode", "--data-dir", str(data), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.mark.slow
def test_features_say_what_they_do_and_no_library_warning_shows(tmp_path: Path) -> None:
    env, data = clean_env(tmp_path), tmp_path / "data"
    turbomode(env, data, "ingest")
    built = turbomode(env, data, "features", "build")
    stages = [ln for ln in built.stderr.splitlines() if ln.startswith("features: ")]
    assert [s.split(" (")[0] for s in stages] == [
        "features: loading Feast",
        "features: reading the clean store",
        "features: computing 215 features for 11 symbols",
        "features: writing the offline tables",
        "features: applying the feature definitions",
    ], built.stderr
    loaded = turbomode(env, data, "features", "materialize")
    tracked = turbomode(env, data, "outcomes", "track")
    for done in (built, loaded, tracked):
        assert "Warning" not in done.stderr + done.stdout, done.stderr
    assert "no outcomes resolved yet" in tracked.stdout and "nan" not in tracked.stdout


def test_the_sector_overview_has_named_columns_most_bullish_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TURBOMODE_CONFIG", raising=False)
    data = tmp_path / "data"
    SignalStore(f"sqlite:///{data / 'signals.db'}").migrate()
    sector = {"mean_eff_buy": 0.61, "mean_eff_sell": None, "stance": "neutral"}
    doc = {
        "scan_date": "2024-05-03",
        "n_symbols": 3,
        "n_scored": 3,
        "n_failed": 0,
        "thresholds": {"buy": 0.5, "sell": 0.5},
        "missing_models": [],
        "signals": [],
        "sectors": [
            {**sector, "sector": "Energy", "n_buy": 0, "n_sell": 3, "net": -3, "buy_share": 0.0},
            {
                **sector,
                "sector": "Communication Services",
                "n_buy": 4,
                "n_sell": 1,
                "net": 3,
                "buy_share": 0.8,
                "stance": "bullish",
            },
            {**sector, "sector": "Utilities", "n_buy": 1, "n_sell": 1, "net": 0, "buy_share": 0.5},
        ],
    }
    (data / "scans").mkdir(parents=True)
    (data / "scans" / "latest_scan.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(app, ["--data-dir", str(data), "signals"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(ln for ln in lines if ln.startswith("┃"))
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "sector",
        "stance",
        "BUY",
        "SELL",
        "net",
        "BUY share",
        "mean effective BUY",
        "mean effective SELL",
    ]
    rows = [ln.split("│")[1:-1] for ln in lines if ln.startswith("│")]
    assert [r[0].strip() for r in rows] == ["Communication Services", "Utilities", "Energy"]
    assert [c.strip() for c in rows[0]] == [
        "Communication Services",
        "bullish",
        "4",
        "1",
        "3",
        "80%",
        "0.610",
        "",
    ]
    listed = CliRunner().invoke(app, ["--data-dir", str(data), "signals", "--json"])
    assert json.loads(listed.output)["sectors"] == doc["sectors"]


def test_the_browser_install_says_what_it_would_do_as_root_and_can_be_skipped(
    tmp_path: Path,
) -> None:
    """No dpkg-query on the PATH: both packages count as missing."""
    need(
        os.geteuid() == 0 and shutil.which("apt-get") is not None,
        "the install path runs only as root where apt-get exists",
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "id", "apt-get"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    done = subprocess.run(
        ["bash", str(REPO / "tools" / "install_browser.sh")],
        env={"PATH": str(bin_dir), "SKIP_BROWSER": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "installs them system-wide with apt-get" in done.stderr
    assert "SKIP_BROWSER is set: not installing" in done.stderr
