"""The compiled ensemble gives the native probabilities within compiled.TOLERANCE, is stored
beside the native files at save, and is rebuilt when missing or stale."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from turbomode.config import ModelSettings
from turbomode.models.compiled import COMPILED_FILE, TOLERANCE, CompiledEnsemble
from turbomode.models.ensemble import ENSEMBLE_FILE, FAST_MAX_ROWS, StackedEnsemble
from turbomode.models.loading import load_ensemble

from .test_ensemble import panel

# Default-shaped learners (depth, leaves, feature sampling), fewer rounds: the same kinds of
# splits and missing-value rules as production, in a second or two.
SMALL = ModelSettings(
    target="class3",
    scope="sector",
    train_years=None,
    oof_folds=2,
    embargo_days=2,
    lightgbm={**ModelSettings().lightgbm, "n_estimators": 12, "min_child_samples": 20},
    catboost={**ModelSettings().catboost, "iterations": 12},
    xgb_hist={**ModelSettings().xgb_hist, "n_estimators": 12, "min_child_weight": 2},
    xgb_linear={"n_estimators": 8, "learning_rate": 0.5},
    random_forest={**ModelSettings().random_forest, "n_estimators": 10, "min_samples_leaf": 5},
    meta={**ModelSettings().meta, "n_estimators": 20, "min_child_samples": 20},
)


def awkward_rows(X: np.ndarray, seed: int = 1) -> np.ndarray:
    """Rows with NaN (warm-up), exact zeros and values far outside the training range."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(out.shape) < 0.15] = np.nan
    out[rng.random(out.shape) < 0.05] = 0.0
    out[rng.random(out.shape) < 0.02] *= 100.0
    out[0] = np.nan  # a row with no feature at all
    return out


def rebuilt_reasons(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(
        str(getattr(r, "fields", {}).get("reason"))
        for r in caplog.records
        if r.getMessage() == "ensemble.compiled_rebuilt"
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[StackedEnsemble, np.ndarray]:
    X, y, dates, names = panel(n_days=160, n_sym=10, n_feat=12, signal=1.0)
    X = X.copy()
    X.iloc[::7, 3] = np.nan  # the trees learn a NaN direction for feature 3
    ens = StackedEnsemble(names, horizon=2, settings=SMALL).fit(X, y, dates)
    return ens, awkward_rows(X.to_numpy(dtype=np.float32))


def test_compiled_equals_native_within_tolerance(fitted) -> None:
    ens, X = fitted
    assert ens.compiled_ is not None
    native = ens.predict_proba_native(X)
    fast = ens.compiled_.predict_proba(X)
    assert np.abs(fast - native).max() <= TOLERANCE
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-12)
    # Each base learner too (15 stacked inputs), not only what the meta-learner makes of them.
    assert np.abs(ens.compiled_.base_probabilities(X) - ens.base_probabilities(X)).max() <= 1e-6


def test_predict_proba_takes_the_compiled_path_for_small_calls(fitted) -> None:
    ens, X = fitted
    one = X[5:6]
    assert ens.compiled_ is not None
    np.testing.assert_array_equal(ens.predict_proba(one), ens.compiled_.predict_proba(one))
    many = np.vstack([X] * (FAST_MAX_ROWS // len(X) + 1))[: FAST_MAX_ROWS + 1]
    np.testing.assert_array_equal(ens.predict_proba(many), ens.predict_proba_native(many))


def test_saved_and_loaded_with_checksummed_sources(fitted, tmp_path: Path) -> None:
    ens, X = fitted
    files = ens.save(tmp_path / "m")
    assert files["compiled"].name == COMPILED_FILE
    with np.load(files["compiled"], allow_pickle=False) as data:  # no object arrays
        assert all(data[k].dtype != object for k in data.files)
    loaded = load_ensemble(tmp_path / "m")
    assert isinstance(loaded, StackedEnsemble) and loaded.compiled_ is not None
    stored = CompiledEnsemble.read(files["compiled"])
    assert loaded.compiled_.sources == stored.sources
    assert set(stored.sources) == {"lightgbm", "catboost", "xgb_hist", "xgb_linear",
                                   "random_forest", "meta"}  # fmt: skip
    assert np.abs(loaded.predict_proba(X[:50]) - ens.predict_proba_native(X[:50])).max() <= (
        TOLERANCE
    )
    native = load_ensemble(tmp_path / "m", inference="native")
    assert isinstance(native, StackedEnsemble) and native.compiled_ is None
    np.testing.assert_array_equal(native.predict_proba(X[:3]), ens.predict_proba_native(X[:3]))


def test_missing_or_stale_compiled_form_is_rebuilt(
    fitted, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # logs.configure (run by other tests' commands) stops propagation to caplog's handler.
    monkeypatch.setattr(logging.getLogger("turbomode"), "propagate", True)
    ens, X = fitted
    files = ens.save(tmp_path / "m")
    want = ens.predict_proba_native(X[:40])

    files["compiled"].unlink()  # a version registered before the compiled form existed
    with caplog.at_level("INFO", logger="turbomode"):
        rebuilt = load_ensemble(tmp_path / "m")
    assert "missing" in rebuilt_reasons(caplog)
    assert isinstance(rebuilt, StackedEnsemble) and rebuilt.compiled_ is not None
    assert np.abs(rebuilt.predict_proba(X[:40]) - want).max() <= TOLERANCE

    # A compiled form built from other native files, or an unreadable one, is not trusted.
    stale = dataclasses.replace(
        CompiledEnsemble.read(ens.save(tmp_path / "other")["compiled"]),
        sources={"lightgbm": "0" * 64},
    )
    for content, reason in ((stale, "other native files"), (b"not an npz", "unreadable")):
        path = tmp_path / "m" / COMPILED_FILE
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path)
        caplog.clear()
        with caplog.at_level("INFO", logger="turbomode"):
            again = load_ensemble(tmp_path / "m")
        assert reason in rebuilt_reasons(caplog)
        assert isinstance(again, StackedEnsemble) and again.compiled_ is not None
        assert again.compiled_.sources != {"lightgbm": "0" * 64}
        assert np.abs(again.predict_proba(X[:40]) - want).max() <= TOLERANCE


def test_only_a_stacking_of_the_five_trees_is_compiled(tmp_path: Path) -> None:
    """An ensemble whose tree learner is lost (or with neural learners, or hybrid voting)
    has no compiled form: its inputs are not the five trees' that the form walks."""
    X, y, dates, names = panel(signal=1.5)
    ens = StackedEnsemble(names, horizon=1, settings=SMALL).fit(X, y, dates)
    assert ens.compilable and ens.compiled_ is not None
    hybrid = ens.settings.model_copy(update={"voting": "hybrid"})
    assert not dataclasses.replace(ens, settings=hybrid).compilable
    ens.save(tmp_path)
    spec = json.loads((tmp_path / ENSEMBLE_FILE).read_text())
    spec["files"]["random_forest"] = "gone.skops"  # the forest's file lost
    (tmp_path / ENSEMBLE_FILE).write_text(json.dumps(spec))
    broken = StackedEnsemble.load(tmp_path)
    assert "random_forest" in broken.dropped_ and not broken.compilable
    assert broken.compiled_ is None
    rows = X.iloc[:20]
    np.testing.assert_allclose(broken.predict_proba(rows), broken.predict_proba_native(rows))
