"""The `turbomode` command end to end: ingest into a clean store, re-run idempotently,
universe and config views, and errors that name the problem (exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from turbomode.cli import app

from .data.test_files import write_dir

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_ingest_synthetic_writes_clean_store_and_is_idempotent(tmp_path: Path) -> None:
    code, out = invoke("--data-dir", str(tmp_path), "ingest", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["source"] == "synthetic"
    assert summary["rows_in"] == summary["rows_clean"] == 118_240
    assert summary["symbols"] == 80 and len(summary["market_symbols"]) == 15
    clean = tmp_path / "clean"
    first = {p.name: p.read_bytes() for p in clean.iterdir() if p.suffix != ".json"}
    assert {"prices.parquet", "market.parquet", "universe.parquet", "quarantine.csv"} <= set(first)
    code, _ = invoke("--data-dir", str(tmp_path), "ingest", "--json")
    assert code == 0
    second = {p.name: p.read_bytes() for p in clean.iterdir() if p.suffix != ".json"}
    assert first == second  # re-running gives the same state
    assert not [p for p in clean.iterdir() if p.name.startswith(".")]  # no temp files


def test_ingest_parquet_quarantines_and_saves_report(tmp_path: Path) -> None:
    data = write_dir(tmp_path / "src")
    prices = pd.read_parquet(data / "prices.parquet")
    prices.loc[2, "close"] = -1.0
    prices.to_parquet(data / "prices.parquet", index=False)
    code, out = invoke(
        "--data-dir", str(tmp_path / "store"), "ingest", "--source", "parquet", str(data)
    )
    assert code == 0, out
    assert "quarantined" in out and "non_positive_price" in out
    report = pd.read_csv(tmp_path / "store" / "clean" / "quarantine.csv")
    assert report[["table", "symbol", "rule"]].values.tolist() == [
        ["prices", "AAA", "non_positive_price"]
    ]
    saved = json.loads((tmp_path / "store" / "clean" / "ingest_report.json").read_text())
    assert saved["rows_in"] == saved["rows_clean"] + saved["rows_quarantined"]


def test_symbols_and_dates_select(tmp_path: Path) -> None:
    code, out = invoke(
        "--data-dir",
        str(tmp_path),
        "ingest",
        "--symbols",
        "IT01,EN02",
        "--start",
        "2020-01-01",
        "--end",
        "2020-12-31",
        "--json",
    )
    assert code == 0, out
    s = json.loads(out)
    assert s["symbols"] == 2 and s["first_date"].startswith("2020-01")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "--source", "parquet"), "needs a path"),
        (("ingest", "--source", "parquet", "/nonexistent/dir"), "not found"),
        (("ingest", "--symbols", "IT01,NOPE"), "NOPE"),
        (("universe", "show"), "run `turbomode ingest` first"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, out = invoke("--data-dir", str(tmp_path), *args)
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_universe_and_config_views(tmp_path: Path) -> None:
    assert invoke("--data-dir", str(tmp_path), "ingest")[0] == 0
    code, out = invoke("--data-dir", str(tmp_path), "universe", "show")
    assert code == 0 and "Utilities" in out and "large" in out
    code, out = invoke(
        "--data-dir", str(tmp_path), "universe", "show", "--sector", "Energy", "--cap", "large"
    )
    assert code == 0 and "EN01" in out
    code, out = invoke("config", "show")
    assert code == 0 and "nightly_scan: 0 23 * * 1-5" in out
    cfg = tmp_path / "c.yaml"
    cfg.write_text("synthetic:\n  n_symbols: 22\n")
    code, out = invoke("--config", str(cfg), "--data-dir", str(tmp_path / "b"), "ingest", "--json")
    assert code == 0 and json.loads(out)["symbols"] == 22


def test_evaluate_reads_the_latest_training_report(tmp_path: Path) -> None:
    code, out = invoke("--data-dir", str(tmp_path), "evaluate")
    assert code == 2 and "run `turbomode train` first" in out
    reports = tmp_path / "reports"
    reports.mkdir()
    payload = {
        "run_id": "r1",
        "evaluation": [{"sector": "Energy", "horizon": 1, "model": "ensemble", "rank_ic": 0.05}],
        "gates": {},
        "versions": {},
    }
    (reports / "train_latest.json").write_text(json.dumps(payload))
    code, out = invoke("--data-dir", str(tmp_path), "evaluate")
    assert code == 0 and "Energy" in out and "0.050" in out
    code, out = invoke("--data-dir", str(tmp_path), "evaluate", "--json")
    assert json.loads(out)["run_id"] == "r1"
