"""The stacked ensemble: the meta-learner learns only from out-of-fold probabilities, a
save/load round trip predicts identically, and bad input is named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import ModelSettings
from turbomode.models import ensemble as ens_mod
from turbomode.models.ensemble import BASE_MODELS, StackedEnsemble, TrainingDataError
from turbomode.models.evaluation import prior_baseline
from turbomode.models.validation import Fold

FAST = ModelSettings(
    target="class3",  # the stacked ensemble per sector (the rank model: test_ranker.py)
    scope="sector",
    train_years=None,
    oof_folds=3,
    embargo_days=2,
    lightgbm={"n_estimators": 15, "num_leaves": 7, "min_child_samples": 20},
    catboost={"iterations": 15, "depth": 4},
    xgb_hist={"n_estimators": 15, "max_depth": 4},
    xgb_linear={"n_estimators": 10},
    random_forest={"n_estimators": 30, "min_samples_leaf": 1, "max_depth": None},
    meta={"n_estimators": 30, "num_leaves": 7, "min_child_samples": 20},
)


def panel(n_days: int = 240, n_sym: int = 12, n_feat: int = 8, seed: int = 0, signal: float = 0.0):
    """Rows (symbol, date) with random features; labels are noise unless ``signal`` > 0."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.bdate_range("2020-01-01", periods=n_days).values, n_sym)
    X = rng.standard_normal((len(dates), n_feat)).astype(np.float32)
    z = signal * X[:, 0] + rng.standard_normal(len(dates))
    y = np.digitize(z, np.quantile(z, [0.3, 0.7]))
    names = [f"f{i}" for i in range(n_feat)]
    return pd.DataFrame(X, columns=names), y, dates, names


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1))))


def test_meta_inputs_come_from_models_that_never_saw_the_row() -> None:
    X, y, dates, names = panel()
    ens = StackedEnsemble(names, horizon=2, settings=FAST).fit(X, y, dates)
    assert ens.oof_ is not None and ens.oof_fold_ is not None
    for fold in ens.folds_:
        rows = np.flatnonzero(ens.oof_fold_ == fold.index)
        np.testing.assert_array_equal(rows, fold.test_idx)
        assert not np.isin(rows, fold.train_idx).any()
    # Rows before the first test block have no out-of-fold prediction and train no meta row.
    unseen = ens.oof_fold_ < 0
    assert unseen.any() and np.isnan(ens.oof_[unseen]).all()
    assert not np.isnan(ens.oof_[~unseen]).any()


def test_in_sample_stacking_would_be_caught() -> None:
    """On pure noise a full-depth forest memorizes its training rows. Stacked out of fold, the
    meta-learner learns the bases know nothing and stays near the class prior on new data;
    stacked in sample (simulated below) it trusts the memorizer and loses badly."""
    X, y, dates, names = panel(seed=1)
    Xn, yn, _, _ = panel(seed=2)
    prior = log_loss(yn, prior_baseline(y, len(yn)))
    honest = StackedEnsemble(names, horizon=1, settings=FAST).fit(X, y, dates)
    assert log_loss(yn, honest.predict_proba(Xn)) < prior + 0.03

    def in_sample(dates_: np.ndarray, horizon: int, cfg: object) -> list[Fold]:
        every = np.arange(len(dates_))
        t0, t1 = pd.Timestamp(dates_.min()), pd.Timestamp(dates_.max())
        return [Fold(0, every, every, t0, t1, t0, t1, 0)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ens_mod, "walk_forward_splits", in_sample)
        leaky = StackedEnsemble(names, horizon=1, settings=FAST).fit(X, y, dates)
    assert log_loss(yn, leaky.predict_proba(Xn)) > prior + 0.1


def test_learns_a_real_signal_and_round_trips_identically(tmp_path: Path) -> None:
    X, y, dates, names = panel(signal=1.5, seed=3)
    ens = StackedEnsemble(names, horizon=1, settings=FAST).fit(X, y, dates)
    Xn, yn, _, _ = panel(signal=1.5, seed=4)
    p = ens.predict_proba(Xn)
    assert p.shape == (len(Xn), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert log_loss(yn, p) < log_loss(yn, prior_baseline(y, len(yn))) - 0.05
    files = ens.save(tmp_path / "model")
    assert {f.name.split(".")[0] for f in files.values()} >= set(BASE_MODELS) | {"meta", "ensemble"}
    back = StackedEnsemble.load(tmp_path / "model")
    np.testing.assert_array_equal(back.predict_proba(Xn), p)
    assert back.features == names and back.horizon == 1


def test_a_loaded_ensemble_predicts_on_the_threads_it_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files keep no thread count; without pinning, a loaded model predicts on every core."""
    X, y, dates, names = panel(seed=5)
    StackedEnsemble(names, horizon=1, settings=FAST).fit(X, y, dates).save(tmp_path / "m")
    back = StackedEnsemble.load(tmp_path / "m", threads=3)
    assert back.base_["lightgbm"].threads == 3 and back.meta_.threads == 3
    for name in ("xgb_hist", "xgb_linear", "random_forest"):
        assert back.base_[name].get_params()["n_jobs"] == 3, name
    seen: list[object] = []
    cat = type(back.base_["catboost"])
    original = cat.predict_proba

    def spy(self, X, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("thread_count"))
        return original(self, X, *args, **kwargs)

    monkeypatch.setattr(cat, "predict_proba", spy)
    back.predict_proba_native(X.iloc[:10])  # the compiled path calls no library
    assert seen == [3]


def test_bad_input_is_named() -> None:
    X, y, dates, names = panel(n_days=120)
    with pytest.raises(TrainingDataError, match=r"lack class\(es\) \[2\]"):
        StackedEnsemble(names, 1, FAST).fit(X, np.minimum(y, 1), dates)
    with pytest.raises(TrainingDataError, match="labels"):
        StackedEnsemble(names, 1, FAST).fit(X, y[:-1], dates)
    fitted = StackedEnsemble(names, 1, FAST).fit(X, y, dates)
    with pytest.raises(TrainingDataError, match="lacks 1 model feature"):
        fitted.predict_proba(X.drop(columns=["f3"]))
    with pytest.raises(TrainingDataError, match="expected 8 features"):
        fitted.predict_proba(np.zeros((2, 5)))
