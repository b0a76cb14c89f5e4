"""Explanations: what each feature contributed to a score, summing exactly to the score.

The explained output is the one the signal rules and drift read, the margin
**P(BUY) − P(SELL)**. An explanation of a row is a base value plus one contribution per
feature, and ``base + Σ contributions`` equals the model's margin for that row (to float
rounding; the tests check every family and the stacked output).

**Inside each model: exact TreeSHAP from each library's own routine.** LightGBM
``predict(pred_contrib=True)``, XGBoost ``pred_contribs=True``, CatBoost ``ShapValues`` give
every feature's path-dependent Shapley contribution to each class's raw score (logit). The
RandomForest has no native routine, so :func:`forest_shap` computes path-dependent TreeSHAP
of its class probabilities exactly (each leaf's conditional expectation is a product game
over its path's features; its Shapley values are weighted elementary symmetric polynomials
— tested against brute-force Shapley values). XGBoost's ``gblinear`` reads standardized
inputs whose training mean is 0, so its ``pred_contribs`` (weight × input) are the exact
Shapley values of its logits against the training mean.

**Through the softmax: the average gradient along the path.** Probabilities are a softmax of
the logits, not a sum. For logits moving from the expected ``b`` to ``z = b + Σ_f φ_f``, the
output ``g`` (the margin, or one class's probability) changes by ``g(z) − g(b) = Ḡ·(z − b)``
with ``Ḡ`` the gradient of ``g`` averaged over the straight path (Gauss–Legendre, 64 nodes:
remainder below 1e-12 in the tests); feature ``f`` gets ``Ḡ·φ_f``. These are integrated gradients
over the SHAP logit contributions, so they sum to ``g(z) − g(b)`` whatever the sign pattern.

**The rank model** is one LightGBM regressor; its calibrated classes are a softmax of logits
affine in its score, so each feature's score contribution moves every class logit by the
calibrator's slope and goes through the softmax as above.

**Through the stacking.** The meta-learner (LightGBM on the 15 base probabilities) is
explained like any LightGBM model: ψ_j, the margin contribution of input j = (base model M,
class c). Each ψ_j is then shared among the features in proportion to their contributions
χ_{M,c,f} to that base probability (the *rescale rule*: ψ_j × χ_f / Σ_f χ_f, with
Σ_f χ_f = p_{M,c} − E p_{M,c}). A meta-learner's expectation need not sit where a base
model's does, so Σ_f χ_f can be near zero while ψ_j is not; the share is damped to
(χ_f·sign(Δ) + α|χ_f|) / (|Δ| + α Σ|χ|) with α = 0.1, which sums to 1 in every case, equals
the rescale rule when |Δ| ≫ α Σ|χ|, and never amplifies a contribution more than 11×.
The final base value is the margin at the meta-learner's expected logits.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from turbomode.errors import TurboModeError
from turbomode.models.ensemble import BASE_MODELS, N_CLASSES, StackedEnsemble, _proba3
from turbomode.models.ranker import RankEnsemble

OUTPUT = "P(BUY) - P(SELL)"
MARGIN = np.array([[-1.0, 0.0, 1.0]])  # SELL, HOLD, BUY
PROBABILITIES = np.eye(N_CLASSES)
DAMPING = 0.1
NODES = 64
_T, _W = np.polynomial.legendre.leggauss(NODES)
PATH_T, PATH_W = (_T + 1) / 2, _W / 2  # the nodes and weights on [0, 1]
_ROW_BLOCK = 2_000_000  # RandomForest TreeSHAP: elements of a row chunk's working array


@dataclass(frozen=True)
class Explanation:
    """Rows' margins as ``base + Σ contributions``."""

    features: list[str]
    base: np.ndarray  # (n,)
    contributions: np.ndarray  # (n, F)
    value: np.ndarray  # (n,) the model's own P(BUY) − P(SELL)

    def residual(self) -> np.ndarray:
        """|base + Σ contributions − value| per row: what additivity leaves over."""
        return np.abs(self.base + self.contributions.sum(axis=1) - self.value)


# ---- native contributions to each class's logit -----------------------------------------


def _booster(model: Any) -> Any:
    """The LightGBM Booster of a fitted LGBMClassifier or a loaded ``LightGBMModel``."""
    return model.booster_ if hasattr(model, "booster_") else model.booster


def _split_bias(raw: np.ndarray, n_out: int, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(bias (n, K), contributions (n, K, F)) from an (n, K, F + 1) array."""
    raw = np.asarray(raw, dtype=np.float64).reshape(len(raw), n_out, n_features + 1)
    return raw[:, :, -1], raw[:, :, :-1]


def logit_contributions(model: Any, X: np.ndarray, threads: int = 1) -> tuple[Any, Any]:
    """Each class logit's expected value and its features' exact Shapley contributions,
    from the library's own TreeSHAP (linear SHAP for gblinear)."""
    n_features = X.shape[1]
    root = type(model).__module__.split(".", 1)[0]
    if root == "catboost":
        from catboost import Pool

        raw = model.get_feature_importance(Pool(X), type="ShapValues", thread_count=threads)
        return _split_bias(raw, N_CLASSES, n_features)
    if root == "xgboost":
        import xgboost as xgb

        raw = model.get_booster().predict(xgb.DMatrix(X, nthread=threads), pred_contribs=True)
        return _split_bias(raw, N_CLASSES, n_features)
    booster = _booster(model)
    raw = booster.predict(X, pred_contrib=True, num_threads=threads)
    return _split_bias(raw, int(booster.num_model_per_iteration()), n_features)


# ---- the RandomForest: path-dependent TreeSHAP of its probabilities ---------------------


@dataclass(frozen=True)
class _Paths:
    """Every root-to-leaf path of one tree, its splits merged per feature (padded with null
    players z = o = 1, which change no other player's Shapley value)."""

    value: np.ndarray  # (L, K) class fractions at each leaf
    feature: np.ndarray  # (L, D) the path's distinct features (pad: n_features)
    zero: np.ndarray  # (L, D) product of cover ratios of the feature's splits (pad: 1)
    node: np.ndarray  # (L, S) split nodes along the path (pad: -1)
    left: np.ndarray  # (L, S) whether the path goes left there
    slot: np.ndarray  # (L, S) the feature slot of each split (pad: D)


def _paths(tree: Any, n_features: int) -> _Paths:
    t = tree.tree_
    value = t.value[:, 0, :] / np.maximum(t.value[:, 0, :].sum(axis=1, keepdims=True), 1e-300)
    cover = t.weighted_n_node_samples
    leaves: list[tuple[int, list[tuple[int, bool]]]] = []
    stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if t.children_left[node] == -1:
            leaves.append((node, path))
            continue
        stack.append((t.children_left[node], [*path, (node, True)]))
        stack.append((t.children_right[node], [*path, (node, False)]))
    depth = max(1, max(len(p) for _, p in leaves))
    distinct = max(1, max(len({t.feature[n] for n, _ in p}) for _, p in leaves))
    n_leaves = len(leaves)
    out = _Paths(
        value=value[[leaf for leaf, _ in leaves]],
        feature=np.full((n_leaves, distinct), n_features),
        zero=np.ones((n_leaves, distinct)),
        node=np.full((n_leaves, depth), -1),
        left=np.zeros((n_leaves, depth), dtype=bool),
        slot=np.full((n_leaves, depth), distinct),
    )
    for i, (_leaf, path) in enumerate(leaves):
        slots: dict[int, int] = {}
        for s, (node, left) in enumerate(path):
            f = int(t.feature[node])
            d = slots.setdefault(f, len(slots))
            child = t.children_left[node] if left else t.children_right[node]
            out.feature[i, d] = f
            out.zero[i, d] *= cover[child] / cover[node]
            out.node[i, s], out.left[i, s], out.slot[i, s] = node, left, d
    return out


def _shapley_weights(d: int) -> np.ndarray:
    """k!(d − k − 1)!/d! for k = 0 … d − 1: the Shapley weight of a coalition of size k."""
    from math import factorial

    return np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)])


def _tree_shap(paths: _Paths, left: np.ndarray, n_features: int) -> np.ndarray:
    """(n, K, F + 1) contributions of one tree's probabilities for rows whose split
    directions are ``left``; the last column is the tree's expected value."""
    n, (n_leaves, d) = len(left), paths.feature.shape
    follow = np.where(
        paths.node[None] >= 0, left[:, np.maximum(paths.node, 0)] == paths.left[None], True
    )  # (n, L, S)
    one = np.ones((n, n_leaves, d + 1))
    for s in range(paths.node.shape[1]):
        one[:, np.arange(n_leaves), paths.slot[:, s]] *= follow[:, :, s]
    one = one[:, :, :d]
    zero = np.broadcast_to(paths.zero[None], one.shape)
    # poly[..., k]: coefficient of t^k in Π_j (z_j + o_j t)
    poly = np.zeros((n, n_leaves, d + 1))
    poly[..., 0] = 1.0
    for j in range(d):
        shifted = np.concatenate([np.zeros_like(poly[..., :1]), poly[..., :-1]], axis=-1)
        poly = poly * zero[:, :, j, None] + shifted * one[:, :, j, None]
    # Σ_k w_k × coefficient of t^k in Π_{j ≠ i}: P / (z_i + t) by synthetic division from the
    # top when o_i = 1 (stable: each step multiplies the error by z_i ≤ 1), P / z_i when 0.
    weights = _shapley_weights(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        absent = (poly[..., :d] @ weights)[:, :, None] / zero
    absent = np.where(zero > 0, absent, 0.0)
    q = np.broadcast_to(poly[..., d, None], one.shape).copy()  # q_{d-1}
    present = weights[d - 1] * q
    for k in range(d - 1, 0, -1):
        q = poly[..., k, None] - zero * q  # q_{k-1}
        present = present + weights[k - 1] * q
    total = np.where(one > 0, present, absent)
    phi = (one - zero) * total  # (n, L, D)
    onehot = np.zeros((n_leaves * d, n_features + 1))
    onehot[np.arange(n_leaves * d), paths.feature.ravel()] = 1.0
    weighted = phi[..., None] * paths.value[None, :, None, :]  # (n, L, D, K)
    out = np.swapaxes(weighted.reshape(n, n_leaves * d, -1), 1, 2) @ onehot
    expected = (paths.value * paths.zero.prod(axis=1)[:, None]).sum(axis=0)
    out[:, :, -1] = expected[None, :]
    return out


@dataclass(frozen=True)
class _Forest:
    """Every tree's paths side by side (node ids made global) and every node's split, so
    one call explains the whole forest; built once per fitted forest."""

    paths: _Paths
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    n_trees: int


_FORESTS: weakref.WeakKeyDictionary[Any, _Forest] = weakref.WeakKeyDictionary()


def _pad(a: np.ndarray, width: int, fill: Any) -> np.ndarray:
    out = np.full((a.shape[0], width), fill, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _forest(forest: Any, n_features: int) -> _Forest:
    cached = _FORESTS.get(forest)
    if cached is not None:
        return cached
    trees = [tree.tree_ for tree in forest.estimators_]
    parts = [_paths(tree, n_features) for tree in forest.estimators_]
    d = max(p.feature.shape[1] for p in parts)
    depth = max(p.node.shape[1] for p in parts)
    offsets = np.cumsum([0] + [t.node_count for t in trees])
    paths = _Paths(
        value=np.vstack([p.value for p in parts]),
        feature=np.vstack([_pad(p.feature, d, n_features) for p in parts]),
        zero=np.vstack([_pad(p.zero, d, 1.0) for p in parts]),
        node=np.vstack(
            [
                _pad(np.where(p.node >= 0, p.node + o, -1), depth, -1)
                for p, o in zip(parts, offsets[:-1], strict=True)
            ]
        ),
        left=np.vstack([_pad(p.left, depth, False) for p in parts]),
        slot=np.vstack([_pad(p.slot, depth, d) for p in parts]),
    )
    missing = [getattr(t, "missing_go_to_left", np.zeros(t.node_count)) for t in trees]
    built = _Forest(
        paths=paths,
        feature=np.concatenate([np.maximum(t.feature, 0) for t in trees]),
        threshold=np.concatenate([t.threshold for t in trees]),
        missing_left=np.concatenate(missing).astype(bool),
        n_trees=len(trees),
    )
    _FORESTS[forest] = built
    return built


def work_per_row(model: Any) -> float:
    """What exact TreeSHAP of ``model`` costs a row, in path steps: its scikit-learn forest's
    leaves × the longest path squared (0 without a forest: the other libraries' native
    routines cost a small fraction of it). A forest grown without a depth limit costs a
    hundred times one of depth 8."""
    forest = getattr(model, "base_", {}).get("random_forest")
    if forest is None:
        return 0.0
    trees = [e.tree_ for e in forest.estimators_]
    return float(sum(t.n_leaves for t in trees) * max(t.max_depth for t in trees) ** 2)


def thin_forest(model: Any, work: float) -> tuple[int, int]:
    """Keep evenly spaced trees of ``model``'s forest, in place, until a row costs at most
    ``work`` (:func:`work_per_row`); returns (trees kept, trees grown). A forest's TreeSHAP is
    the mean of its trees', each exact, so a thinned forest's contributions estimate the whole
    one's at a bounded cost: for a global view (mean |contribution| over rows), not for one
    signal's explanation. Only for a throwaway copy of a loaded model: its predictions change."""
    import copy

    forest = getattr(model, "base_", {}).get("random_forest")
    if forest is None:
        return 0, 0
    grown = len(forest.estimators_)
    per_row = work_per_row(model)
    if per_row <= work:
        return grown, grown
    keep = max(1, int(grown * work / per_row))
    picks = np.unique(np.linspace(0, grown - 1, keep).round().astype(int))
    thinned = copy.copy(forest)
    thinned.estimators_ = [forest.estimators_[i] for i in picks]
    thinned.n_estimators = len(picks)
    model.base_["random_forest"] = thinned
    return len(picks), grown


def forest_shap(forest: Any, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact path-dependent TreeSHAP of a scikit-learn forest's class probabilities:
    (expected probabilities (n, 3), contributions (n, 3, F))."""
    n, n_features = X.shape
    f = _forest(forest, n_features)
    # each row's direction at every node, as sklearn's own traversal goes (float32 inputs
    # against float64 thresholds; NaN where the tree sends missing values)
    x = X.astype(np.float32).astype(np.float64)[:, f.feature]
    left = np.where(np.isnan(x), f.missing_left[None, :], x <= f.threshold[None, :])
    rows = max(1, _ROW_BLOCK // max(1, f.paths.feature.size))
    total = np.zeros((n, f.paths.value.shape[1], n_features + 1))
    for lo in range(0, n, rows):
        total[lo : lo + rows] = _tree_shap(f.paths, left[lo : lo + rows], n_features)
    total /= f.n_trees
    classes = np.asarray(forest.classes_).astype(int)
    out = np.zeros((n, N_CLASSES, n_features + 1))
    out[:, classes] = total
    return out[:, :, -1], out[:, :, :-1]


# ---- through the softmax ---------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def softmax_attribution(
    start: np.ndarray, contributions: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``weights @ softmax(logits)`` explained: (their values at ``start`` (n, O),
    each feature's share of the change (n, O, F)) for logits ``start + Σ_f contributions``,
    by the output's gradient averaged along the straight path (see the module notes)."""
    delta = contributions.sum(axis=2)
    p = _softmax(start[None] + PATH_T[:, None, None] * delta[None])  # (T, n, K)
    out = p @ weights.T  # (T, n, O)
    # d(Σ_c W_oc p_c)/dL_k = p_k (W_ok − Σ_c W_oc p_c), averaged over the path
    grad = np.einsum("t,tnk,tnok->nok", PATH_W, p, weights[None, None] - out[..., None])
    return _softmax(start) @ weights.T, np.einsum("nok,nkf->nof", grad, contributions)


def probability_contributions(
    name: str, model: Any, X: np.ndarray, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A base model's (expected probabilities (n, 3), contributions to each (n, 3, F))."""
    if name == "random_forest":
        return forest_shap(model, X)
    bias, contrib = logit_contributions(model, X, threads)
    return softmax_attribution(bias, contrib, PROBABILITIES)


def damped_shares(chi: np.ndarray) -> np.ndarray:
    """Each feature's share (n, F) of a base input's meta contribution; rows sum to 1."""
    delta = chi.sum(axis=1, keepdims=True)
    spread = np.abs(chi).sum(axis=1, keepdims=True)
    sign = np.where(delta >= 0, 1.0, -1.0)
    denom = np.abs(delta) + DAMPING * spread
    flat = np.full_like(chi, 1.0 / chi.shape[1])  # a base output no feature moves
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = (chi * sign + DAMPING * np.abs(chi)) / denom
    return np.where(denom > 0, shares, flat)


# ---- the two model kinds -----------------------------------------------------------------


def _margin(proba: np.ndarray) -> np.ndarray:
    return np.asarray(proba @ MARGIN[0], dtype=np.float64)


def explain_stacked(model: StackedEnsemble, X: pd.DataFrame | np.ndarray) -> Explanation:
    """The stacked ensemble's margin: meta TreeSHAP, shared down to the features."""
    learners = model.learners_ or list(BASE_MODELS)
    others = [n for n in learners if n not in BASE_MODELS or n not in model.base_]
    if others or model.settings.voting != "stacking":
        # TreeSHAP shares exist for the trees only; a partial sum would not be the margin.
        raise TurboModeError(
            f"explanations cover stacked tree ensembles only; this one has {others or 'hybrid'}"
        )
    Xa = model._matrix(X)
    inputs = model.base_probabilities(Xa)
    meta_bias, meta_contrib = logit_contributions(model.meta_, inputs, model.threads)
    base, psi = softmax_attribution(meta_bias, meta_contrib, MARGIN)
    contributions = np.zeros(Xa.shape)
    for j, name in enumerate(learners):
        rows = model.scaler_.transform(Xa) if name == "xgb_linear" else Xa
        _p0, chi = probability_contributions(name, model.base_[name], rows, model.threads)
        for c in range(N_CLASSES):
            share = damped_shares(chi[:, c, :])
            contributions += psi[:, 0, j * N_CLASSES + c, None] * share
    value = _margin(_proba3(model.meta_, inputs))  # what predict_proba gives, inputs reused
    return Explanation(list(model.features), base[:, 0], contributions, value)


def explain_ranker(model: RankEnsemble, X: pd.DataFrame | np.ndarray) -> Explanation:
    """The rank model's margin: its score's TreeSHAP through the calibrator's softmax."""
    Xa = model._matrix(X)
    raw = np.asarray(
        model.model_.predict(Xa, pred_contrib=True, num_threads=model.threads), dtype=np.float64
    )
    phi, expected = raw[:, :-1], raw[:, -1]
    cal, (mean, spread) = model.calibrator_, model.scale_
    slope = cal.coef / (cal.std * spread)  # d logit_k / d score
    offset = cal.intercept - cal.coef * (mean / spread + cal.mean) / cal.std
    start = offset[None, :] + expected[:, None] * slope[None, :]
    base, attr = softmax_attribution(start, slope[None, :, None] * phi[:, None, :], MARGIN)
    value = _margin(model.predict_proba(Xa))
    return Explanation(list(model.features), base[:, 0], attr[:, 0, :], value)


def explain(model: Any, X: pd.DataFrame | np.ndarray) -> Explanation:
    """Explain either model kind's margin for the rows ``X``."""
    if isinstance(model, RankEnsemble):
        return explain_ranker(model, X)
    if isinstance(model, StackedEnsemble):
        return explain_stacked(model, X)
    raise TurboModeError(f"cannot explain a {type(model).__name__}")


# ---- global views --------------------------------------------------------------------------


def importance(explanation: Explanation, groups: Mapping[str, str]) -> dict[str, Any]:
    """Mean |contribution| per feature and per feature group (a group's contribution to a
    row is the sum of its features'): what the manifest keeps (JSON keeps no order: readers
    sort)."""
    c = explanation.contributions
    names = explanation.features
    per_feature = np.abs(c).mean(axis=0) if len(c) else np.zeros(len(names))
    group_of = [groups.get(f, "other") for f in names]
    per_group: dict[str, float] = {}
    for g in dict.fromkeys(group_of):
        cols = [i for i, name in enumerate(group_of) if name == g]
        per_group[g] = float(np.abs(c[:, cols].sum(axis=1)).mean()) if len(c) else 0.0
    return {
        "output": OUTPUT,
        "rows": len(c),
        "features": {name: float(v) for name, v in zip(names, per_feature, strict=True)},
        "groups": per_group,
    }


def top_features(contributions: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` largest |contributions| (ties by feature order)."""
    c = np.abs(np.asarray(contributions, dtype=np.float64))
    return [int(i) for i in np.argsort(-c, kind="stable")[:k]]
