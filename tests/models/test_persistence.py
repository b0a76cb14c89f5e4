"""Every model kind survives save → load with identical probabilities, and skops refuses
anything outside its allow-list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import catboost
import lightgbm as lgb
import numpy as np
import pytest
import skops.io as sio
import xgboost as xgb

from turbomode.models.persistence import (
    CATBOOST_SUFFIX,
    LIGHTGBM_SUFFIX,
    SKOPS_SUFFIX,
    XGBOOST_SUFFIX,
    LightGBMModel,
    UnsupportedModelError,
    UntrustedTypeError,
    load_model,
    model_format,
    save_model,
)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """A small 3-class problem with some signal so the trees actually split."""
    rng = np.random.default_rng(42)
    X = rng.normal(size=(300, 6))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=300), [-0.5, 0.5])
    return X, y


def _lightgbm_classifier(X: np.ndarray, y: np.ndarray) -> Any:
    return lgb.LGBMClassifier(n_estimators=5, num_leaves=7, n_jobs=1, verbose=-1).fit(X, y)


def _lightgbm_booster(X: np.ndarray, y: np.ndarray) -> Any:
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "verbose": -1}
    return lgb.train({**params, "num_threads": 1}, lgb.Dataset(X, y), num_boost_round=5)


def _xgboost_hist(X: np.ndarray, y: np.ndarray) -> Any:
    return xgb.XGBClassifier(n_estimators=5, max_depth=3, tree_method="hist", n_jobs=1).fit(X, y)


def _xgboost_linear(X: np.ndarray, y: np.ndarray) -> Any:
    return xgb.XGBClassifier(n_estimators=5, booster="gblinear", n_jobs=1).fit(X, y)


def _catboost(X: np.ndarray, y: np.ndarray) -> Any:
    return catboost.CatBoostClassifier(
        iterations=5, depth=3, thread_count=1, verbose=False, allow_writing_files=False
    ).fit(X, y)


def _random_forest(X: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=5, n_jobs=1, random_state=0).fit(X, y)


@pytest.mark.parametrize(
    ("build", "suffix"),
    [
        (_lightgbm_classifier, LIGHTGBM_SUFFIX),
        (_lightgbm_booster, LIGHTGBM_SUFFIX),
        (_xgboost_hist, XGBOOST_SUFFIX),
        (_xgboost_linear, XGBOOST_SUFFIX),
        (_catboost, CATBOOST_SUFFIX),
        (_random_forest, SKOPS_SUFFIX),
    ],
    ids=["lgbm-classifier", "lgbm-booster", "xgb-hist", "xgb-gblinear", "catboost", "rf-skops"],
)
def test_round_trip_gives_identical_probabilities(
    build: Any, suffix: str, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    model = build(X, y)
    path = save_model(model, tmp_path, "m")
    assert path == tmp_path / f"m{suffix}"
    assert model_format(model) == suffix

    loaded = load_model(path)
    if suffix == LIGHTGBM_SUFFIX:
        assert isinstance(loaded, LightGBMModel)
        before = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
    else:
        assert type(loaded) is type(model)
        before = model.predict_proba(X)
    after = loaded.predict_proba(X)
    assert after.shape == (len(X), 3)
    # Exact: every format stores doubles losslessly (LightGBM text uses 17 digits).
    assert np.array_equal(before, after)
    assert list(np.asarray(loaded.classes_)) == [0, 1, 2]
    assert np.array_equal(loaded.predict(X).ravel(), np.argmax(after, axis=1))


def test_xgboost_keeps_objective_and_classes(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    loaded = load_model(save_model(_xgboost_linear(X, y), tmp_path, "lin"))
    assert loaded.n_classes_ == 3
    assert loaded.objective == "multi:softprob"
    assert loaded.booster == "gblinear"


def test_lightgbm_binary_is_expanded_to_two_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=3, n_jobs=1, verbose=-1).fit(X, y)
    loaded = load_model(save_model(model, tmp_path, "bin"))
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_lightgbm_refuses_labels_it_cannot_restore(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    X, y = data
    model = lgb.LGBMClassifier(n_estimators=2, n_jobs=1, verbose=-1).fit(X, y - 1)
    with pytest.raises(UnsupportedModelError, match=r"0\.\.K-1"):
        save_model(model, tmp_path, "m")


class _Payload:
    """A class skops does not know: loading it would construct arbitrary code's objects."""

    def __init__(self) -> None:
        self.value = 1


def _hook() -> None:  # pragma: no cover - never called; only its type is dumped
    pass


@pytest.mark.parametrize("payload", [_Payload(), _hook], ids=["custom-class", "function"])
def test_skops_refuses_types_outside_the_allow_list(payload: Any, tmp_path: Path) -> None:
    path = tmp_path / f"evil{SKOPS_SUFFIX}"
    sio.dump({"model": "x", "payload": payload}, path)
    with pytest.raises(UntrustedTypeError, match=r"_Payload|_hook") as info:
        load_model(path)
    assert "allow-list" in str(info.value)
    assert info.value.types


def test_skops_save_refuses_a_model_holding_an_untrusted_object(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = data
    model = LogisticRegression(max_iter=200).fit(X, y)
    model.extra_ = _Payload()
    with pytest.raises(UntrustedTypeError, match="refusing to save"):
        save_model(model, tmp_path, "lr")
    assert not (tmp_path / f"lr{SKOPS_SUFFIX}").exists()


def test_unknown_model_type_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"cannot persist a builtins\.dict"):
        save_model({"not": "a model"}, tmp_path, "m")
    from sklearn.linear_model import LinearRegression  # sklearn, but no predict_proba

    with pytest.raises(UnsupportedModelError, match="LinearRegression"):
        model_format(LinearRegression())


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    odd = tmp_path / "m.pkl"
    odd.write_bytes(b"\x80\x04")
    with pytest.raises(UnsupportedModelError, match="unknown model file suffix"):
        load_model(odd)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.cbm")


def test_bad_model_name_is_refused(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    X, y = data
    with pytest.raises(ValueError, match="model name"):
        save_model(_random_forest(X, y), tmp_path, "../escape")
