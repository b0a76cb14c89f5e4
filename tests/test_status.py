"""``turbomode status``: a fresh data directory (everything missing, said plainly), stale
features (flagged, exit code 1), and the schedules' next runs. The state after a whole
pipeline run (all fresh) is checked in tests/pipelines/test_local_runs.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from turbomode.cli.main import app
from turbomode.cli.status import PROBLEM_EXIT
from turbomode.jobs import JOBS
from turbomode.status import next_cron

SMALL = {"synthetic": {"n_symbols": 11, "n_days": 300}}
NY = "America/New_York"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name == "TURBOMODE_CONFIG" or (name.startswith("TURBOMODE_") and "__" in name):
            monkeypatch.delenv(name)
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    monkeypatch.setenv("TURBOMODE_CONFIG", str(config))
    return tmp_path / "data"


def status(data: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["--data-dir", str(data), "status", *args])
    return res.exit_code, res.output


def test_a_fresh_data_directory_is_missing_everything_and_says_what_to_run(data: Path) -> None:
    code, out = status(data)
    assert code == PROBLEM_EXIT, out
    assert "6 problem(s)" in out
    for part, fix in (
        ("clean store", "turbomode ingest"),
        ("features", "turbomode features build"),
        ("online store", "turbomode features materialize"),
        ("last scan", "turbomode scan"),
        ("models", "turbomode train"),
    ):
        row = next(line for line in out.splitlines() if f"│ {part} " in line)
        assert "missing" in row and fix in row, row
    assert "nightly_scan" in out and "0 23 * * 1-5" in out
    assert not data.exists(), "status must not create anything"

    code, out = status(data, "--json")
    doc = json.loads(out)
    assert code == PROBLEM_EXIT and doc["ok"] is False
    assert {c["part"]: c["state"] for c in doc["checks"]} == {
        "clean store": "missing",
        "features": "missing",
        "online store": "missing",
        "last scan": "missing",
        "models": "missing",
        "signals store": "missing",
    }
    assert doc["clean_last_bar"] is None and doc["models"] == []
    assert [s["job"] for s in doc["schedules"]] == list(JOBS)


@pytest.mark.slow
def test_features_behind_the_clean_store_are_flagged_stale(data: Path) -> None:
    runner = CliRunner()

    def ok(*args: str) -> None:
        res = runner.invoke(app, ["--data-dir", str(data), *args])
        assert res.exit_code == 0, (args, res.output)

    ok("ingest", "--end", "2019-02-01")
    ok("features", "build")
    ok("features", "materialize")
    ok("ingest")  # newer bars arrive; nobody rebuilds the features
    code, out = status(data, "--json")
    assert code == PROBLEM_EXIT, out
    doc = json.loads(out)
    checks = {c["part"]: c for c in doc["checks"]}
    assert checks["clean store"]["state"] == "ok"
    assert doc["offline_last_bar"] < doc["clean_last_bar"]
    features = checks["features"]
    assert features["state"] == "stale" and features["fix"] == "turbomode features build"
    assert doc["clean_last_bar"] in features["detail"]
    # The online store holds what the offline tables hold: level with them, not stale.
    assert checks["online store"]["state"] == "ok"
    assert doc["online_last_bar"] == doc["offline_last_bar"]
    # No scan yet: missing, and the scan is what fixes it.
    assert checks["last scan"] == {
        "part": "last scan",
        "state": "missing",
        "detail": "no last scan yet",
        "fix": "turbomode scan",
    }


def test_next_cron_follows_cron_rules_in_the_schedules_timezone() -> None:
    friday_night = datetime(2026, 12, 4, 23, 30, tzinfo=UTC).astimezone()  # 18:30 in New York
    weeknights = next_cron("0 23 * * 1-5", friday_night, NY)
    assert weeknights is not None and weeknights.isoformat() == "2026-12-04T23:00:00-05:00"
    after = next_cron("0 23 * * 1-5", weeknights, NY)
    assert after is not None and after.isoformat() == "2026-12-07T23:00:00-05:00"  # Monday
    # Day of month and day of week both restricted: either matches (the 1st, or a Sunday).
    either = next_cron("0 4 1 * 0", datetime(2026, 12, 1, 12, tzinfo=UTC), NY)
    assert either is not None and either.date().isoformat() == "2026-12-06"
    quarters = next_cron("0 2 1 1,4,7,10 *", datetime(2026, 12, 7, tzinfo=UTC), NY)
    assert quarters is not None and quarters.isoformat() == "2027-01-01T02:00:00-05:00"
    steps = next_cron("*/15 * * * *", datetime(2026, 12, 7, 10, 7, tzinfo=UTC), "UTC")
    assert steps is not None and steps.minute == 15
    with pytest.raises(ValueError, match="five fields"):
        next_cron("0 23 * *", friday_night, NY)
    with pytest.raises(ValueError, match="outside"):
        next_cron("0 25 * * *", friday_night, NY)
