"""The rank model: it learns an order, its class probabilities are calibrated only on
out-of-fold scores, and it saves, loads and trains pooled like the stacked ensemble."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from turbomode.config import ModelSettings, Settings
from turbomode.models.loading import load_ensemble
from turbomode.models.ranker import RankEnsemble, ScoreCalibrator, rank_target

from .test_ensemble import FAST, panel

warnings.filterwarnings("ignore", category=DeprecationWarning)

RANK_FAST = FAST.model_copy(
    update={
        "target": "rank",
        "ranker": {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 50},
    }
)


def _fit(signal: float, settings: ModelSettings = RANK_FAST, seed: int = 0):
    X, y, dates, names = panel(n_days=300, n_sym=20, signal=signal, seed=seed)
    # The regression target: the rank of a return that carries the same signal as the label.
    rng = np.random.default_rng(seed + 1)
    ret = signal * X["f0"].to_numpy() + rng.standard_normal(len(X))
    target = rank_target(ret, dates)
    y = np.digitize(ret, np.quantile(ret, [0.3, 0.7]))
    model = RankEnsemble(names, horizon=1, settings=settings).fit(X, y, dates, target)
    return model, X, y, dates, target


def test_rank_target_is_a_centred_percentile_within_date_and_group() -> None:
    dates = np.repeat(pd.to_datetime(["2024-01-02", "2024-01-03"]).values, 4)
    groups = np.array(["a", "a", "b", "b"] * 2)
    ret = np.array([0.01, 0.02, -0.5, 0.5, np.nan, 0.0, 3.0, 1.0])
    got = rank_target(ret, dates, groups)
    np.testing.assert_allclose(got, [0.0, 0.5, 0.0, 0.5, np.nan, 0.5, 0.5, 0.0])


def test_learns_a_planted_order_and_finds_nothing_in_noise() -> None:
    model, *_ = _fit(signal=0.5)
    Xn, _, _, _ = panel(n_days=60, n_sym=20, signal=0.0, seed=9)
    rho = spearmanr(model.predict_score(Xn), Xn["f0"]).statistic
    assert rho > 0.5
    noise, *_ = _fit(signal=0.0)
    assert abs(spearmanr(noise.predict_score(Xn), Xn["f0"]).statistic) < 0.2


def test_probabilities_are_calibrated_and_rank_as_the_score() -> None:
    model, X, y, *_ = _fit(signal=0.5)
    p = model.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    s = model.predict_score(X)
    margin = p[:, 2] - p[:, 0]
    order = np.argsort(s)
    assert np.all(np.diff(margin[order]) >= -1e-12)  # P(BUY) − P(SELL) ranks as the score
    # Calibrated: the mean P(class) matches the class shares the calibrator saw (no balanced
    # weights pulling every class towards 1/3).
    seen = model.calib_rows_
    assert seen is not None
    shares = np.bincount(y[seen], minlength=3) / len(seen)
    np.testing.assert_allclose(p[seen].mean(axis=0), shares, atol=0.03)


def test_calibration_sees_out_of_fold_scores_only() -> None:
    """A model that memorizes noise has in-sample scores that 'predict' the labels; the
    calibrator must not see those, so on noise its probabilities stay at the prior."""
    overfit = RANK_FAST.model_copy(
        update={"ranker": {"n_estimators": 200, "num_leaves": 63, "min_child_samples": 2}}
    )
    model, X, y, dates, _ = _fit(signal=0.0, settings=overfit)
    seen = model.calib_rows_
    assert seen is not None and len(seen) > 0
    blocks = np.concatenate([f.test_idx for f in model.folds_])
    assert np.isin(seen, blocks).all()  # every calibration row was in a test block ...
    for fold in model.folds_:  # ... scored by a model that never trained on it
        assert not np.isin(fold.test_idx, fold.train_idx).any()
    first_test = min(pd.Timestamp(dates[f.test_idx].min()) for f in model.folds_)
    assert pd.Timestamp(dates[seen].min()) >= first_test
    spread = lambda c: abs(c.coef[2] - c.coef[0])  # noqa: E731
    assert spread(model.calibrator_) < 0.1
    # The same calibrator fitted on in-sample scores would have been fooled: the check can fail.
    insample = ScoreCalibrator().fit(model.predict_score(X), y)
    assert spread(insample) > 5 * spread(model.calibrator_)


def test_save_load_predicts_identically_without_pickle(tmp_path: Path) -> None:
    model, X, *_ = _fit(signal=0.5)
    files = model.save(tmp_path / "m")
    assert {p.suffix for p in files.values()} <= {".txt", ".json"}
    spec = json.loads((tmp_path / "m" / "ensemble.json").read_text())
    assert spec["kind"] == "ranker" and spec["features"] == model.features
    loaded = load_ensemble(tmp_path / "m")
    assert isinstance(loaded, RankEnsemble)
    np.testing.assert_array_equal(
        loaded.predict_proba(X.head(100)), model.predict_proba(X.head(100))
    )


@pytest.fixture(scope="module")
def pooled_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from turbomode.data.ingest import ingest
    from turbomode.feature_store import build

    s = Settings(
        data={"data_dir": tmp_path_factory.mktemp("pooled")},
        synthetic={"n_symbols": 22, "n_days": 400},
        models={**RANK_FAST.model_dump(), "scope": "pooled"},
    )
    s.labels.horizons = [1]
    ingest(s)
    build(s, "local")
    return s


def test_pooled_scope_trains_one_model_registers_and_gates_every_key(
    pooled_settings: Settings, tmp_path: Path
) -> None:
    from turbomode.models.pipeline import run_training
    from turbomode.models.registry import ModelRegistry

    s = pooled_settings.model_copy(deep=True)
    s.stores.model_registry_uri = str(tmp_path / "registry")
    run = run_training(s, ["Energy", "Utilities", "Financials"], use_ray=False)
    assert all(r.ok for r in run.results), [r.error for r in run.results]
    assert len({r.model_dir for r in run.results}) == 1  # one pooled model for the horizon
    ics = {r.key: r.evaluation["classification"]["log_loss"] for r in run.results if r.evaluation}
    assert len(set(ics.values())) == 3  # but judged on each sector's own rows
    registry = ModelRegistry(s.stores.model_registry_uri, family="turbomode")
    assert set(run.versions) == {"Energy/1d", "Utilities/1d", "Financials/1d"}
    for key, version in run.versions.items():
        path, manifest = registry.load(key, version)
        assert isinstance(load_ensemble(path), RankEnsemble)
        assert manifest["parameters"]["scope"] == "pooled"
        assert manifest["gate"]["decision"] == run.gates[key].decision
