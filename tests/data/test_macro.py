"""The macro vintage table: its validation, the synthetic market's macro series, and the
ingest's macro step (which series a data directory keeps, whatever the market source)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.data.fake_http import FakeClock
from tests.data.test_fred import KEY, T0, FakeFred, closed_port, make_settings
from turbomode.cli.main import app
from turbomode.config import MACRO_ROLES, Settings, SyntheticSettings
from turbomode.data import macro as dm
from turbomode.data.ingest import ingest, ingest_macro, load_clean
from turbomode.data.sources import get_source
from turbomode.data.sources import synthetic as syn
from turbomode.data.sources.fred import FredSource

from .test_files import write_dir

runner = CliRunner()


def vintage(rows: list[tuple[str, str, str, object]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(s, f"id:{s}", d, r, v) for s, d, r, v in rows], columns=list(dm.MACRO_COLUMNS)
    )


def test_validation_charges_each_bad_row_to_its_first_rule() -> None:
    frame = vintage(
        [
            ("money", "2024-01-01", "2024-02-27", 20765.8),
            ("money", "2024-01-01", "2024-02-27", 20765.8),  # an exact copy: one is kept
            ("money", "2023-12-01", "2024-01-23", 20797.2),
            ("money", "2023-12-01", "2024-01-23", 20790.0),  # two values for one release
            ("money", "2023-11-01", "2023-10-31", 20741.2),  # public before its period
            ("claims", "2024-01-06", "not a date", 202000),
            ("claims", "2024-01-13", "2024-01-18", "abc"),
            ("claims", "2024-01-20", "2024-01-25", float("inf")),
            ("gdp", "2024-01-01", "2024-02-01", 1.0),
            ("claims", "2024-01-27", "2024-02-08", np.nan),  # a withdrawal passes
        ]
    )
    checked = dm.validate_macro(frame)
    assert checked.counts() == {
        "duplicate_conflict": 2,
        "released_before_period": 1,
        "unparseable": 2,
        "non_finite": 1,
        "unknown_series": 1,
    }
    assert len(checked.clean) == 2 and checked.rows_in == 10
    assert checked.clean["value"].isna().sum() == 1
    assert list(checked.clean.columns) == list(dm.MACRO_COLUMNS)


def test_final_values_dated_by_a_release_lag() -> None:
    frame = vintage([("money", "2024-01-01", None, 1.0), ("claims", "2024-01-06", None, 2.0)])
    dated = dm.dated_by_release_lag(frame, {"money": 60, "claims": 5})
    assert dated["realtime_start"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-01", "2024-01-11"]
    with pytest.raises(ValueError, match="no release lag"):
        dm.dated_by_release_lag(frame, {"money": 60})


@pytest.fixture(scope="module")
def market():
    return syn.generate_market(SyntheticSettings())


def test_synthetic_macro_is_published_late_and_revised(market) -> None:
    m = market.macro
    assert dm.validate_macro(m).quarantine.empty
    assert set(m["series"]) == set(MACRO_ROLES)
    lag = (m["realtime_start"] - m["date"]).dt.days
    assert (lag >= 1).all()  # nothing is known on or before its own period's first day
    last = market.prices["date"].max()
    assert m["realtime_start"].max() <= last
    first = m.groupby(["series", "date"])["realtime_start"].min()
    revised = m.groupby(["series", "date"]).size() > 1
    assert revised.groupby(level="series").mean().to_dict() == pytest.approx(
        {"claims": 1.0, "curve": 0.0, "manufacturing": 1.0, "money": 1.0}, abs=0.02
    )
    # the documented schedules: claims on the Thursday after the week, M2 on the fourth
    # Tuesday of the next month, the survey on the third Thursday of its own month
    claims = first["claims"]
    assert ((claims.index + pd.Timedelta(days=5)) == claims.to_numpy()).all()
    money = pd.DatetimeIndex(first["money"].to_numpy())
    assert (money.dayofweek == 1).all() and money.day.isin(range(22, 29)).all()
    survey = pd.DatetimeIndex(first["manufacturing"].to_numpy())
    assert (survey.dayofweek == 3).all() and survey.day.isin(range(15, 22)).all()
    assert (survey.month == first["manufacturing"].index.month).all()


def test_synthetic_macro_comes_from_the_market_factor(market) -> None:
    """The curve steepens on down days (as its generator says), so it moves with SPY."""
    spy = market.market[market.market["symbol"] == "SPY"].set_index("date")["close"]
    curve = market.macro[market.macro["series"] == "curve"].set_index("date")["value"]
    both = pd.concat([np.log(spy).diff(), curve.diff()], axis=1, join="inner").dropna()
    assert both.corr().iloc[0, 1] < -0.3


def test_macro_series_leave_the_prices_of_a_seed_alone(monkeypatch, market) -> None:
    monkeypatch.setattr(syn, "MACRO_STREAM", syn.MACRO_STREAM + 1)
    other = syn.generate_market(SyntheticSettings())
    pd.testing.assert_frame_equal(other.prices, market.prices)
    pd.testing.assert_frame_equal(other.market, market.market)
    assert not np.allclose(other.macro["value"], market.macro["value"])


def test_a_synthetic_load_as_of_a_date_leaves_out_later_releases(tmp_path: Path) -> None:
    settings = Settings(data={"data_dir": tmp_path}, synthetic={"n_symbols": 11, "n_days": 300})
    md = get_source(settings).load(end="2018-06-29")
    assert md.macro is not None and md.macro["realtime_start"].max() <= pd.Timestamp("2018-06-29")


def _small(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        data={"data_dir": tmp_path},
        synthetic={"n_symbols": 11, "n_days": 300},
        **extra,  # type: ignore[arg-type]
    )


def test_the_macro_step_never_mixes_markets(tmp_path: Path) -> None:
    settings = _small(tmp_path)
    clean = settings.data.clean_dir
    report = ingest(settings)
    assert report.macro is not None and report.macro.action == "written"
    assert dm.stored_macro_source(clean) == "synthetic"
    assert load_clean(settings).macro is not None
    saved = json.loads((clean / "ingest_report.json").read_text())
    assert saved["macro"]["source"] == "synthetic" and set(saved["macro"]["series"]) == set(
        MACRO_ROLES
    )
    # real market files have no macro series: the synthetic ones must not stay beside them
    files = get_source(settings, "parquet", write_dir(tmp_path / "files"))
    report = ingest(settings, files)
    assert report.macro is not None and report.macro.action == "removed"
    assert load_clean(settings).macro is None and not (clean / dm.MACRO_REPORT).exists()


def test_fred_series_stay_through_market_ingests(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    clock = FakeClock(T0)
    fake = FakeFred(clock)
    src = FredSource(settings, session=fake.session(), sleep=clock.sleep, clock=clock.time)
    got = ingest_macro(settings, src)
    assert got.summary()["series"]["money"]["source_id"] == "M2SL"
    files = get_source(settings, "parquet", write_dir(tmp_path / "files"))
    report = ingest(settings, files)
    assert report.macro is not None and report.macro.action == "kept"
    macro = load_clean(settings).macro
    assert macro is not None and set(macro["source_id"]) == {
        "T10Y2Y",
        "ICSA",
        "M2SL",
        "GACDFSA066MSFRBPHI",
    }
    none = make_settings(tmp_path)
    none.macro.source = "none"
    report = ingest(none, files)
    assert report.macro is not None and report.macro.action == "removed"
    assert load_clean(none).macro is None


def test_a_failed_fred_refresh_keeps_the_stored_series(tmp_path: Path) -> None:
    ingest(_small(tmp_path))  # synthetic macro series stored
    offline = {"api_key": KEY, "base_url": f"http://127.0.0.1:{closed_port()}/fred"}
    settings = _small(tmp_path, macro={"source": "fred"}, fred={**offline, "max_retries": 0})
    before = (settings.data.clean_dir / dm.MACRO_FILE).read_bytes()
    report = ingest(settings)  # the market data does not wait for FRED
    assert report.prices.rows_out > 0
    assert report.macro is not None and report.macro.action == "kept"
    assert report.macro.error is not None and "FRED cannot be reached" in report.macro.error
    assert (settings.data.clean_dir / dm.MACRO_FILE).read_bytes() == before
    assert KEY not in json.dumps(report.summary())


def test_cli_ingest_fred_offline_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TURBOMODE_FRED__API_KEY", KEY)
    monkeypatch.setenv("TURBOMODE_FRED__BASE_URL", f"http://127.0.0.1:{closed_port()}/fred")
    monkeypatch.setenv("TURBOMODE_FRED__MAX_RETRIES", "0")
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "ingest", "--source", "fred"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: FRED cannot be reached"), lines
    assert KEY not in result.output and "Traceback" not in result.output
    bad = runner.invoke(app, ["--data-dir", str(tmp_path), "ingest", "--source", "fred", "x"])
    assert bad.exit_code == 2 and "no PATH" in bad.output


def test_cli_lists_the_macro_group() -> None:
    result = runner.invoke(app, ["features", "list", "--group", "macro"])
    assert result.exit_code == 0, result.output
    assert "14 features" in result.output
    for name in ("macro_curve_chg_20", "macro_claims_4wk_chg", "macro_m2_yoy"):
        assert name in result.output
