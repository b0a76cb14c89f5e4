"""The Ray Tune search: valid search spaces, no out-of-time row ever scored, a tiny search
that finds a planted signal, and tuned parameters that load back as settings."""

from __future__ import annotations

import inspect
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import ModelSettings, Settings, load_settings
from turbomode.models.ensemble import BASE_MODELS, TrainingDataError, _make
from turbomode.models.tune import (
    TuneResult,
    search_space,
    training_rows,
    tune_task,
    tuning_folds,
    write_params,
)
from turbomode.models.validation import trading_calendar

FEATURES = [f"f{i}" for i in range(10)]


def frame(n_days: int = 300, n_sym: int = 8, seed: int = 0, signal: float = 0.6) -> pd.DataFrame:
    """(symbol, date) rows; the 1-day forward return loads on f0, labels are its terciles."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2021-01-01", periods=n_days)
    df = pd.DataFrame(
        {
            "date": np.repeat(days.values, n_sym),
            "symbol": np.tile([f"S{i}" for i in range(n_sym)], n_days),
        }
    )
    X = rng.standard_normal((len(df), len(FEATURES))).astype(np.float32)
    df[FEATURES] = X
    df["fwd_ret_1"] = 0.01 * (signal * X[:, 0] + rng.standard_normal(len(df)))
    df["label_1"] = np.digitize(df["fwd_ret_1"], np.quantile(df["fwd_ret_1"], [0.3, 0.7]))
    return df


def _sample(model: str, seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {k: d.sample(random_state=rng) for k, d in search_space(model).items()}


def _accepted(est: object) -> set[str]:
    names: set[str] = set()
    for cls in type(est).__mro__:
        if "__init__" in vars(cls):
            names |= set(inspect.signature(vars(cls)["__init__"]).parameters)
    return names


@pytest.mark.parametrize("model", BASE_MODELS)
def test_search_space_samples_build_and_fit_the_ensembles_model(model: str) -> None:
    params = _sample(model)
    assert params and set(params) <= _accepted(_make(model, {}, 1, "cpu", 0))
    # every name is one the configured defaults or the estimator knows, and a fit accepts it
    est = _make(model, {**getattr(ModelSettings(), model), **params}, 1, "cpu", 0)
    df = frame(n_days=30, n_sym=4)
    est.fit(df[FEATURES].to_numpy(), df["label_1"].to_numpy())
    assert est.predict_proba(df[FEATURES].to_numpy()).shape == (len(df), 3)


def test_unknown_model_is_named() -> None:
    with pytest.raises(ValueError, match="unknown model 'svm'"):
        search_space("svm")


def test_scored_folds_stay_before_the_window_minus_the_purge() -> None:
    df = frame()
    cal = np.sort(df["date"].unique())
    before = pd.Timestamp(cal[240])
    for horizon in (1, 2, 5):
        rows = training_rows(df, horizon, before)
        # last kept day + horizon trading days is still before the out-of-time window
        assert np.searchsorted(cal, rows["date"].max().to_datetime64()) + horizon < 240
        for fold in tuning_folds(rows["date"].to_numpy(), horizon, Settings(), folds=3):
            scored = rows["date"].iloc[fold.test_idx]
            assert scored.max() < before and fold.test_end < before
            assert rows["date"].iloc[fold.train_idx].max() < fold.test_start
    # rows already cut at the window (no row reaches it) still lose the purge: never trusted
    pre = df[df["date"] < before]
    kept = training_rows(pre, 2, before)
    n_days = len(trading_calendar(pre["date"])[0])
    assert kept["date"].nunique() == n_days - 2
    with pytest.raises(ValueError, match="no training rows"):
        training_rows(df[df["date"] >= before], 1, before)


def test_missing_columns_are_named_before_ray_starts() -> None:
    df = frame().drop(columns=["fwd_ret_1"])
    with pytest.raises(TrainingDataError, match="fwd_ret_1"):
        tune_task(df, FEATURES, 1, Settings(), before="2021-12-01")


def test_write_params_round_trips_through_load_settings(tmp_path: Path) -> None:
    result = TuneResult(
        model="lightgbm",
        best_params={"n_estimators": np.int64(70), "learning_rate": np.float64(0.05)},
        best_score=0.04,
        n_trials=3,
        n_stopped_early=1,
        trials=pd.DataFrame(),
        seconds=1.0,
    )
    rf = TuneResult("random_forest", {"max_features": 0.2}, 0.01, 2, 0, pd.DataFrame(), 1.0)
    path = write_params([result, rf], tmp_path / "tuned.yaml")
    settings = load_settings(path)
    default = ModelSettings()
    assert settings.models.lightgbm == {
        **default.lightgbm,
        "n_estimators": 70,
        "learning_rate": 0.05,
    }
    assert settings.models.random_forest == {**default.random_forest, "max_features": 0.2}
    assert settings.models.catboost == default.catboost


@pytest.mark.slow
def test_tiny_search_finds_the_planted_signal_on_training_folds(tmp_path: Path) -> None:
    df = frame()
    before = pd.Timestamp(np.sort(df["date"].unique())[250])
    result = tune_task(
        df,
        FEATURES,
        1,
        Settings(),
        model="lightgbm",
        num_samples=3,
        time_budget_s=120,
        folds=2,
        seed=1,
        before=before,
        storage_path=tmp_path / "ray",
    )
    assert result.n_trials == 3 and len(result.trials) == 3
    assert set(result.best_params) == set(search_space("lightgbm"))
    assert type(result.best_params["n_estimators"]) is int  # YAML-ready, never 140.0
    assert math.isfinite(result.best_score) and result.best_score > 0.1  # signal IC ≈ 0.5
    assert result.trials["iterations"].between(1, 2).all()
    assert result.n_rows == len(training_rows(df, 1, before))
    assert all(pd.Timestamp(f["test_end"]) < before for f in result.folds)
    assert (tmp_path / "ray" / "lightgbm_1d").is_dir()  # a caller's directory is kept


def test_cli_tunes_the_sectors_training_rows_and_writes_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from turbomode.cli import tune as cli_tune
    from turbomode.models import train, tune

    df = frame().assign(sector="Energy")
    df = pd.concat([df, frame(seed=1).assign(sector="Utilities")], ignore_index=True)
    seen: dict[str, object] = {}

    def fake_tune(
        rows: pd.DataFrame, features: list[str], horizon: int, settings: Settings, **kw: object
    ) -> TuneResult:
        seen.update(rows=rows, **kw)
        trials = pd.DataFrame({"n_estimators": [50], "score": [0.1], "iterations": [2]})
        folds = [{"test_start": "2021-06-01", "test_end": "2021-10-01"}]
        best = {"n_estimators": 50}
        return TuneResult(str(kw["model"]), best, 0.1, 1, 0, trials, 0.1, horizon, folds=folds)

    monkeypatch.setattr(train, "training_set", lambda settings: df)
    monkeypatch.setattr(tune, "tune_task", fake_tune)
    monkeypatch.setattr(tune, "ray_session", lambda settings: nullcontext())
    app = typer.Typer()
    app.command()(cli_tune.tune_command)
    out = tmp_path / "t.yaml"
    res = CliRunner().invoke(app, ["--sector", "Energy", "--trials", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert set(seen["rows"]["sector"]) == {"Energy"}  # type: ignore[index]
    assert seen["before"] == train.oot_window_start(df["date"], Settings())
    assert load_settings(out).models.lightgbm["n_estimators"] == 50
    bad = CliRunner().invoke(app, ["--sector", "Energy", "--model", "svm"])
    assert bad.exit_code == 2 and "unknown model" in bad.output
