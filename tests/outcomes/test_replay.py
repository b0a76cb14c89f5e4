"""Replay of the whole loop on the default synthetic market: twelve months day by day
(nightly scan, daily outcomes, weekly samples, monthly retrain), and no look-ahead — the same
window replayed with every row after it deleted gives identical results."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from turbomode.config import ModelSettings, Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.outcomes.replay import MONTH_COLUMNS, run_replay

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::RuntimeWarning")]


# Small models on a two-year rolling window keep twelve retrains of eleven sectors cheap.
SMALL = ModelSettings(
    lightgbm={"n_estimators": 10, "num_leaves": 7, "min_child_samples": 20},
    catboost={"iterations": 10, "depth": 4},
    xgb_hist={"n_estimators": 10, "max_depth": 3},
    xgb_linear={"n_estimators": 5},
    random_forest={"n_estimators": 10, "max_depth": 6},
    meta={"n_estimators": 10, "num_leaves": 7, "min_child_samples": 20},
    ranker={"n_estimators": 40, "num_leaves": 15, "min_child_samples": 200},
)
TRAIN_DAYS = 500


def settings(tmp: Path) -> Settings:
    """The default synthetic market, 1-day labels."""
    return Settings(
        data={"data_dir": tmp},
        labels={"horizons": [1]},
        models=SMALL.model_dump(),
        signals={"threshold_mode": "quantile"},
        gate={"n_boot": 300},
        outcomes={"min_new_samples": 250},
    )


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = settings(tmp_path_factory.mktemp("replay"))
    ingest(s)
    return s


def test_twelve_months_of_the_loop(market: Settings, tmp_path: Path) -> None:
    res = run_replay(
        market, date(2022, 10, 1), date(2023, 9, 30), tmp_path / "r", train_days=TRAIN_DAYS
    )
    months = res.months
    assert list(months.columns) == MONTH_COLUMNS and len(months) == 12
    assert res.initial["promoted"], res.initial  # the planted 1-day signal passes the gate
    assert months["signals"].sum() > 500 and months["outcomes"].sum() > 500
    assert months["outcomes"].iloc[:-1].eq(months["signals"].iloc[:-1]).all()  # all resolved
    hit = (months["hit_rate"] * months["outcomes"]).sum() / months["outcomes"].sum()
    assert hit > 0.34  # above a coin among three classes: the planted signal pays
    statuses = {r["status"] for r in res.retrains}
    assert len(res.retrains) == 11 and statuses <= {"promoted", "kept", "skipped"}
    assert statuses & {"promoted", "kept"}, res.retrains  # samples accumulated: it retrained
    assert Path(res.files["markdown"]).read_text().startswith("# Replay 2022-10-01")


def _comparable(work: Path) -> dict[str, pd.DataFrame]:
    """What a replay decided, without the ids and timestamps that differ between runs."""
    from turbomode.store import SignalStore

    store = SignalStore(f"sqlite:///{work / 'signals.db'}")
    hist = store.signal_history().drop(columns=["run_id", "model_version"])
    outs = store.outcomes().drop(columns=["id", "model_version", "resolved_at"])
    samples = store.training_samples().drop(columns=["id", "created_at"])
    store.dispose()
    return {"history": hist, "outcomes": outs, "samples": samples}


def test_no_look_ahead(market: Settings, tmp_path: Path) -> None:
    start, end = date(2023, 2, 15), date(2023, 3, 15)  # one month end: one retrain
    full = run_replay(market, start, end, tmp_path / "full", train_days=TRAIN_DAYS)
    md = load_clean(market)
    cut = pd.Timestamp(end)
    truncated = replace(
        md, prices=md.prices[md.prices["date"] <= cut], market=md.market[md.market["date"] <= cut]
    )
    assert len(truncated.prices) < len(md.prices)  # there was later data to delete
    short = run_replay(market, start, end, tmp_path / "cut", md=truncated, train_days=TRAIN_DAYS)
    pd.testing.assert_frame_equal(full.months, short.months)
    assert full.initial == short.initial
    assert full.retrains == short.retrains and len(full.retrains) == 1
    a, b = _comparable(tmp_path / "full"), _comparable(tmp_path / "cut")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    assert len(a["history"]) > 0 and len(a["outcomes"]) > 0
