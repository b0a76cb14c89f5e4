"""The `turbomode` command end to end: ingest into a clean store, re-run idempotently,
universe and config views, and errors that name the problem (exit code 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from turbomode.cli.main import app

from ..data.test_files import write_dir

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
        (("--data-dir", "{tmp}/a-file", "ingest"), "Not a directory: '{tmp}/a-file/clean'"),
    ],
)
def test_errors_name_the_problem(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    args = tuple(a.format(tmp=tmp_path) for a in args)
    message = message.format(tmp=tmp_path)
    code, out = invoke("--data-dir", str(tmp_path), *args)
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def one_line_error(out: str) -> str:
    """The whole output, when it is the one line a failed command should print."""
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def spoil_prices(data: Path, how: str) -> str:
    """Spoil a CSV data directory the way a hostile input would; the text the error must say."""
    prices = data / "prices.csv"
    if how == "header_only":
        prices.write_text(prices.read_text().splitlines()[0] + "\n")
        return f"no price rows in {prices}"
    if how == "empty":
        prices.write_bytes(b"")
        return f"price file {prices} is empty"
    if how == "binary":
        prices.write_bytes(bytes(range(256)) * 8)
        return f"price file {prices} is not text"
    if how == "corrupt_parquet":
        (data / "prices.parquet").write_bytes(b"PAR1" + bytes(range(200)))
        prices.unlink()
        return f"cannot read price file {data / 'prices.parquet'}"
    if how == "empty_constituents":
        (data / "constituents.csv").write_bytes(b"")
        return f"universe file {data / 'constituents.csv'} is empty"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how", ["header_only", "empty", "binary", "corrupt_parquet", "empty_constituents"]
)
def test_unusable_files_fail_in_one_line_naming_the_file(tmp_path: Path, how: str) -> None:
    data = write_dir(tmp_path / "src", "csv")
    message = spoil_prices(data, how)
    code, out = invoke("--data-dir", str(tmp_path / "store"), "ingest", str(data))
    assert code == 2
    assert one_line_error(out).startswith(f"error: {message}"), out
    assert not (tmp_path / "store" / "clean").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", "2030-01-01"), "no price rows in {prices} from 2030-01-01"),
        (
            ("--start", "2024-01-05", "--end", "2024-01-02"),
            "start 2024-01-05 is after end 2024-01-02",
        ),
        (("--start", "someday"), "start/end must be dates YYYY-MM-DD"),
    ],
)
def test_a_date_range_without_rows_is_named(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    data = write_dir(tmp_path / "src", "csv")
    code, out = invoke("--data-dir", str(tmp_path / "store"), "ingest", str(data), *args)
    assert code == 2
    assert one_line_error(out).startswith("error: " + message.format(prices=data / "prices.csv"))


def test_a_directory_without_market_file_ingests_every_row(tmp_path: Path) -> None:
    data = write_dir(tmp_path / "src", "csv")
    (data / "market.csv").unlink()
    prices = pd.read_csv(data / "prices.csv")
    bar = ["open", "high", "low", "close"]
    prices.loc[3, bar] = prices.loc[3, bar] * 10  # one corrupted bar; the next one is normal
    prices.to_csv(data / "prices.csv", index=False)
    code, out = invoke("--data-dir", str(tmp_path / "store"), "ingest", str(data), "--json")
    assert code == 0, out
    s = json.loads(out)
    assert s["rows_in"] == len(prices) == s["rows_clean"] + s["rows_quarantined"]
    assert s["rows_quarantined"] == 1
    assert s["rules"]["prices"] == {"extreme_move": 1, "calendar_gap": 1}  # the gap it leaves
    assert s["market_rows_in"] == 0 and s["market_symbols"] == []


def test_an_unreachable_signals_database_is_one_line_naming_it(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("--data-dir", str(tmp_path), "ingest")[0] == 0
    url = f"postgresql+psycopg://turbo:pw-secret@127.0.0.1:{closed_port}/test"
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", url)
    shown = url.replace("pw-secret", "***")
    for command in (["scan"], ["outcomes", "track"], ["outcomes", "samples"]):
        code, out = invoke("--data-dir", str(tmp_path), *command)
        assert code == 2, out
        assert one_line_error(out).startswith(
            f"error: cannot connect to the signals store {shown}: "
        )
        assert "pw-secret" not in out


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
