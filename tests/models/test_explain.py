"""Explanations: the RandomForest's TreeSHAP equals brute-force Shapley values, every base
family's contributions sum to its probabilities, and the stacked ensemble's and the rank
model's contributions sum to their margin, after a save/load round trip too; the planted
feature is the one the contributions name."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from turbomode.models import explain as ex
from turbomode.models.ensemble import BASE_MODELS, StackedEnsemble
from turbomode.models.loading import load_ensemble

from .test_ensemble import FAST, panel
from .test_ranker import _fit

warnings.filterwarnings("ignore", category=DeprecationWarning)
TOLERANCE = 1e-6  # XGBoost's contributions are float32
EXPLAIN_FAST = FAST.model_copy(
    update={"random_forest": {"n_estimators": 20, "max_depth": 6, "min_samples_leaf": 5}}
)


def _conditional(tree: Any, x: np.ndarray, known: set[int]) -> np.ndarray:
    """E[tree(x) | x_known], path-dependent: unknown splits follow both children by cover."""
    t = tree.tree_

    def walk(node: int) -> np.ndarray:
        if t.children_left[node] == -1:
            v = t.value[node, 0]
            return np.asarray(v / v.sum())
        left, right = t.children_left[node], t.children_right[node]
        f = int(t.feature[node])
        if f in known:
            return walk(left if x[f] <= t.threshold[node] else right)
        c = t.weighted_n_node_samples
        return (c[left] * walk(left) + c[right] * walk(right)) / c[node]

    return walk(0)


def _brute_force(forest: Any, x: np.ndarray) -> np.ndarray:
    """Shapley values (F, K) of the forest's path-dependent conditional expectation."""
    n = len(x)
    out = np.zeros((n, forest.n_classes_))
    for tree in forest.estimators_:
        for i in range(n):
            others = [j for j in range(n) if j != i]
            for size in range(n):
                w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                for subset in itertools.combinations(others, size):
                    s = set(subset)
                    out[i] += w * (_conditional(tree, x, s | {i}) - _conditional(tree, x, s))
    return out / len(forest.estimators_)


def test_forest_treeshap_equals_brute_force_shapley_values() -> None:
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 5)).astype(np.float32)
    y = np.digitize(X[:, 0] + X[:, 1] * X[:, 2] + rng.standard_normal(400), [-0.5, 0.5])
    forest = RandomForestClassifier(n_estimators=3, max_depth=5, random_state=0).fit(X, y)
    base, contrib = ex.forest_shap(forest, X[:4])
    for row in range(4):
        want = _brute_force(forest, X[row])
        np.testing.assert_allclose(contrib[row].T, want, atol=1e-12)
    np.testing.assert_allclose(base + contrib.sum(axis=2), forest.predict_proba(X[:4]), atol=1e-12)


def test_forest_treeshap_routes_missing_values_as_sklearn_does() -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((600, 4)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    y = np.digitize(np.nan_to_num(X[:, 0]) + rng.standard_normal(600), [-0.5, 0.5])
    forest = RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0).fit(X, y)
    base, contrib = ex.forest_shap(forest, X)
    np.testing.assert_allclose(base + contrib.sum(axis=2), forest.predict_proba(X), atol=1e-12)


@pytest.fixture(scope="module")
def stacked() -> tuple[StackedEnsemble, Any]:
    X, y, dates, names = panel(signal=1.5)
    X.iloc[::7, 3] = np.nan  # missing values take every library's own route
    return StackedEnsemble(names, horizon=2, settings=EXPLAIN_FAST).fit(X, y, dates), X


@pytest.mark.parametrize("name", BASE_MODELS)
def test_each_family_sums_to_its_probabilities(
    stacked: tuple[StackedEnsemble, Any], name: str
) -> None:
    ens, X = stacked
    Xa = ens._matrix(X.iloc[:300])
    rows = ens.scaler_.transform(Xa) if name == "xgb_linear" else Xa
    base, contrib = ex.probability_contributions(name, ens.base_[name], rows)
    proba = ens._predict_base(name, ens.base_[name], Xa)
    np.testing.assert_allclose(base + contrib.sum(axis=2), proba, atol=TOLERANCE)
    assert np.abs(contrib).sum() > 0


def test_stacked_margin_is_explained_exactly_and_names_the_planted_feature(
    stacked: tuple[StackedEnsemble, Any], tmp_path: Path
) -> None:
    ens, X = stacked
    e = ex.explain(ens, X.iloc[:300])
    proba = ens.predict_proba(X.iloc[:300])
    np.testing.assert_allclose(e.value, proba[:, 2] - proba[:, 0])
    assert e.residual().max() < TOLERANCE
    assert np.ptp(e.base) == 0  # one base value: the margin at the meta's expected logits
    mean_abs = np.abs(e.contributions).mean(axis=0)
    assert int(np.argmax(mean_abs)) == 0 and mean_abs[0] > 3 * np.sort(mean_abs)[-2]
    ens.save(tmp_path)
    again = ex.explain(load_ensemble(tmp_path), X.iloc[:300])
    np.testing.assert_allclose(again.contributions, e.contributions, atol=TOLERANCE)


def test_rank_model_margin_is_explained_exactly() -> None:
    model, X, *_ = _fit(signal=1.0)
    e = ex.explain(model, X.iloc[:500])
    proba = model.predict_proba(X.iloc[:500])
    np.testing.assert_allclose(e.value, proba[:, 2] - proba[:, 0])
    assert e.residual().max() < 1e-9
    mean_abs = np.abs(e.contributions).mean(axis=0)
    assert int(np.argmax(mean_abs)) == 0


def test_softmax_attribution_sums_to_the_change_of_every_output() -> None:
    rng = np.random.default_rng(5)
    start = rng.normal(size=(50, 3)) * 2
    contrib = rng.normal(size=(50, 3, 9)) * 1.5
    base, attr = ex.softmax_attribution(start, contrib, ex.PROBABILITIES)
    end = ex._softmax(start + contrib.sum(axis=2))
    np.testing.assert_allclose(base + attr.sum(axis=2), end, atol=1e-12)


def test_damped_shares_sum_to_one_and_follow_the_rescale_rule_when_well_conditioned() -> None:
    chi = np.array([[0.3, 0.1, -0.05], [0.01, -0.01, 0.0], [0.0, 0.0, 0.0]])
    shares = ex.damped_shares(chi)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    rescale = chi[0] / chi[0].sum()
    np.testing.assert_allclose(shares[0], rescale, atol=0.1)
    assert np.abs(shares).max() <= 1 + 1 / ex.DAMPING  # bounded when Σχ ≈ 0
    np.testing.assert_allclose(shares[2], 1 / 3)


def test_importance_ranks_features_and_sums_groups_per_row() -> None:
    e = ex.Explanation(
        ["a", "b", "c"],
        np.zeros(2),
        np.array([[0.1, -0.3, 0.3], [-0.1, 0.1, -0.1]]),
        np.array([0.1, -0.1]),
    )
    out = ex.importance(e, {"a": "trend", "b": "volume", "c": "volume"})
    assert out["features"]["b"] == pytest.approx(0.2)
    assert out["groups"] == {"trend": pytest.approx(0.1), "volume": pytest.approx(0.0)}


def test_thinned_forest_meets_the_work_budget_and_stays_exact_and_close(
    stacked: tuple[StackedEnsemble, Any], tmp_path: Path
) -> None:
    """The global view's bound: a thinned forest costs at most the budget a row, is explained
    exactly (contributions sum to its own margin), and ranks the features as the whole does."""
    ens, X = stacked
    ens.save(tmp_path)
    whole, thin = load_ensemble(tmp_path), load_ensemble(tmp_path)
    per_row = ex.work_per_row(whole)
    assert ex.thin_forest(thin, per_row) == (20, 20)  # within the budget: untouched
    kept, grown = ex.thin_forest(thin, per_row / 4)
    assert grown == 20 and 1 <= kept <= 5 and ex.work_per_row(thin) <= per_row / 4
    trees = thin.base_["random_forest"].estimators_
    grown_splits = [w.tree_.threshold.tolist() for w in whole.base_["random_forest"].estimators_]
    assert all(t.tree_.threshold.tolist() in grown_splits for t in trees)  # trees of the whole
    assert len(whole.base_["random_forest"].estimators_) == 20  # the other copy is unchanged
    e = ex.explain(thin, X.iloc[:200])
    assert e.residual().max() < TOLERANCE
    full = np.abs(ex.explain(whole, X.iloc[:200]).contributions).mean(axis=0)
    assert int(np.argmax(np.abs(e.contributions).mean(axis=0))) == int(np.argmax(full))
