"""`turbomode research` on a small synthetic clean store, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from turbomode.cli.main import app

runner = CliRunner()
WINDOW = ("--start", "2023-02-01", "--end", "2023-10-31")


def invoke(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["--data-dir", str(data), *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default synthetic market (a planted 1-day reversal), 2023 only."""
    root = tmp_path_factory.mktemp("research")
    code, out = invoke(root, "ingest", "--start", "2023-01-01", "--end", "2023-12-31")
    assert code == 0, out
    return root


def test_reversal_tear_sheet_finds_the_planted_signal(data_dir: Path) -> None:
    code, out = invoke(data_dir, "research", "--score", "reversal:5", *WINDOW)
    assert code == 0, out
    assert "IC, next open" in out and "tearsheet.html" in out
    target = data_dir / "reports" / "research" / "reversal_5"
    assert {"tearsheet.html", "tearsheet.json", "deciles.png"} <= {p.name for p in target.iterdir()}
    doc = json.loads((target / "tearsheet.json").read_text())
    assert doc["name"] == "reversal:5" and doc["counts"]["symbols"] == 80
    assert doc["headline"]["ic_open"] > 0.03 and doc["headline"]["ic_open_t"] > 3


def test_file_score_with_options_and_json(data_dir: Path, tmp_path: Path) -> None:
    prices = pd.read_parquet(data_dir / "clean" / "prices.parquet")
    scores = prices[["symbol", "date"]].assign(score=-prices["close"].pct_change(fill_method=None))
    path = tmp_path / "mine.parquet"
    scores.to_parquet(path)
    out_dir = tmp_path / "sheet"
    code, out = invoke(
        data_dir,
        "research", "--score", f"file:{path}", *WINDOW,
        "--horizon", "2", "--cost-bps", "5", "--smooth", "3", "--out", str(out_dir), "--json",
    )  # fmt: skip
    assert code == 0, out
    doc = json.loads(out)
    assert doc["name"] == "file:mine" and doc["horizon"] == 2
    assert doc["html"] == str(out_dir / "tearsheet.html")
    saved = json.loads((out_dir / "tearsheet.json").read_text())
    assert saved["smooth"] == 3 and saved["cost_bps"] == 5.0


def test_feature_score(data_dir: Path) -> None:
    code, out = invoke(data_dir, "research", "--score", "feature:ret_5", *WINDOW, "--json")
    assert code == 0, out
    assert json.loads(out)["headline"]["ic_open"] < -0.03  # ret_5 is minus the reversal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--score", "bogus:3", *WINDOW), "unknown --score kind 'bogus'"),
        (("--score", "reversal:x", *WINDOW), "whole number of days"),
        (("--score", "feature:", *WINDOW), "needs a feature name"),
        (("--score", "feature:no_such_feature", *WINDOW), "no_such_feature"),
        (("--score", "file:/no/such.parquet", *WINDOW), "does not exist"),
        (("--score", "momentum", "--start", "2023-02-30", "--end", "2023-03-31"), "--start"),
        (("--score", "momentum", "--start", "2023-05-01", "--end", "2023-03-31"), "before"),
        (("--score", "momentum", "--start", "2031-01-01", "--end", "2031-03-31"), "no finite"),
        (("--score", "momentum", *WINDOW, "--smooth", "0"), "--smooth"),
    ],
)
def test_bad_input_gives_one_line_errors(
    data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    code, out = invoke(data_dir, "research", *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_bad_score_files(data_dir: Path, tmp_path: Path) -> None:
    lacking = tmp_path / "lacking.parquet"
    pd.DataFrame({"symbol": ["IT01"], "date": [pd.Timestamp("2023-03-01")]}).to_parquet(lacking)
    code, out = invoke(data_dir, "research", "--score", f"file:{lacking}", *WINDOW)
    assert code == 2 and "lacks column(s) score" in out
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not a parquet file")
    code, out = invoke(data_dir, "research", "--score", f"file:{garbage}", *WINDOW)
    assert code == 2 and "cannot read" in out and "Traceback" not in out


def test_no_clean_store(tmp_path: Path) -> None:
    code, out = invoke(tmp_path, "research", "--score", "reversal", *WINDOW)
    assert code == 2 and "run `turbomode ingest` first" in out
