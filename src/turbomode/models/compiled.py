"""The stacked ensemble compiled to flat arrays: every tree of every learner evaluated at once.

Why: one row through five libraries' ``predict_proba`` costs about 2.5 ms, nearly all of it
per-call overhead (the RandomForest's joblib dispatch over 25 trees alone is 1.2 ms), while
the arithmetic is a few hundred node comparisons. Here each learner's trees become rows of the
same node arrays (feature, threshold, left, right, NaN direction, leaf value), walked level by
level with numpy for all rows and trees together; gblinear is a matrix product. One call costs
a few numpy operations per tree level, whatever the number of trees (docs/serving.md has the
measurements and the options compared).

Each library's comparison is kept exactly:

* LightGBM: ``double(x) <= threshold``; NaN goes the ``default_left`` way when the node's
  missing type is NaN, otherwise NaN reads as 0 (and a Zero missing type sends |x| ≤ 1e-35
  the default way).
* XGBoost: ``float32(x) < float32(split)``, stored as ``x <= the float32 just below split``;
  NaN goes ``default_left``. gblinear: ``x · W + bias`` (its input is standardized, no NaN).
* CatBoost: oblivious trees, bit i = ``x > border_i`` (float32), leaf = Σ bit_i 2^i, unrolled
  here into a full binary tree; NaN per the feature's treatment (AsTrue: bit set).
* scikit-learn: ``float32(x) <= threshold``; NaN per ``missing_go_to_left``; a leaf's class
  fractions averaged over the trees.

Margins are summed in float64 and turned into probabilities as each library does (softmax for
the boosters, the mean for the forest); the result equals the native path within
:data:`TOLERANCE`. The arrays are saved as ``compiled.npz`` (loaded with ``allow_pickle=False``)
beside the native files, with the sha256 of each native file they were built from, so a stale
or missing file is rebuilt from the native models rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMPILED_FILE = "compiled.npz"
FORMAT = 1
TOLERANCE = 1e-6
"""Largest absolute difference allowed between compiled and native probabilities."""

_ZERO = 1e-35  # LightGBM's kZeroThreshold
_LEARNERS = ("lightgbm", "catboost", "xgb_hist", "random_forest")
_SOFTMAX, _MEAN = 0, 1


class CompileError(ValueError):
    """A model holds something the compiled form does not cover (e.g. a categorical split)."""


class _Nodes:
    """Node arrays under construction; trees are appended one by one."""

    def __init__(self, n_out: int) -> None:
        self.n_out = n_out
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.left: list[int] = []
        self.right: list[int] = []
        self.nan_left: list[bool] = []
        self.zero_left: list[int] = []  # -1: no special zero rule; 0/1: direction of |x| ≤ 1e-35
        self.value: list[np.ndarray] = []
        self.roots: list[int] = []
        self.depths: list[int] = []
        self.groups: list[int] = []

    def node(self, feature: int, threshold: float, nan_left: bool, zero_left: int = -1) -> int:
        self.feature.append(feature)
        self.threshold.append(threshold)
        self.left.append(-1)
        self.right.append(-1)
        self.nan_left.append(nan_left)
        self.zero_left.append(zero_left)
        self.value.append(np.zeros(self.n_out))
        return len(self.feature) - 1

    def leaf(self, value: np.ndarray) -> int:
        i = self.node(0, np.inf, True)
        self.left[i] = self.right[i] = i  # a leaf points to itself: extra levels stay put
        self.value[i] = np.asarray(value, dtype=np.float64)
        return i

    def tree(self, root: int, depth: int, group: int) -> None:
        self.roots.append(root)
        self.depths.append(depth)
        self.groups.append(group)


def _unit(k: int, v: float, n: int = 3) -> np.ndarray:
    out = np.zeros(n)
    out[k] = v
    return out


def _add_lightgbm(nodes: _Nodes, model_dump: Mapping[str, Any], group: int) -> None:
    n_class = int(model_dump["num_tree_per_iteration"])
    if n_class != 3:
        raise CompileError(f"LightGBM model with {n_class} trees per round; expected 3 classes")

    def walk(t: Mapping[str, Any], k: int) -> tuple[int, int]:
        if "leaf_value" in t:
            return nodes.leaf(_unit(k, float(t["leaf_value"]))), 0
        if t["decision_type"] != "<=":
            raise CompileError(f"LightGBM split {t['decision_type']!r} (categorical) unsupported")
        missing = t["missing_type"]
        thr = float(t["threshold"])
        if missing == "NaN":
            nan_left, zero_left = bool(t["default_left"]), -1
        elif missing == "Zero":
            nan_left = zero_left_b = bool(t["default_left"])
            zero_left = int(zero_left_b)
        else:  # None: NaN reads as 0
            nan_left, zero_left = thr >= 0.0, -1
        i = nodes.node(int(t["split_feature"]), thr, nan_left, zero_left)
        left, dl = walk(t["left_child"], k)
        right, dr = walk(t["right_child"], k)
        nodes.left[i], nodes.right[i] = left, right
        return i, 1 + max(dl, dr)

    for j, info in enumerate(model_dump["tree_info"]):
        root, depth = walk(info["tree_structure"], j % n_class)
        nodes.tree(root, depth, group)


def _xgb_json(booster: Any) -> dict[str, Any]:
    return dict(json.loads(booster.save_raw("json")))


def _xgb_base(model: Mapping[str, Any]) -> np.ndarray:
    raw = model["learner"]["learner_model_param"]["base_score"]
    base = np.atleast_1d(np.asarray(json.loads(raw) if raw.startswith("[") else float(raw)))
    return np.broadcast_to(base.astype(np.float32).astype(np.float64), (3,)).copy()


@dataclass(frozen=True)
class _Indexed:
    """One tree as a library's parallel node arrays (a leaf's left child is -1)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # already in ``x <= threshold`` form
    nan_left: np.ndarray
    leaf: np.ndarray  # n_nodes × 3, read at leaves only


def _walk(nodes: _Nodes, tree: _Indexed, n: int) -> tuple[int, int]:
    """Append node ``n`` and its subtree; return its new index and its depth."""
    if tree.left[n] == -1:
        return nodes.leaf(tree.leaf[n]), 0
    i = nodes.node(int(tree.feature[n]), float(tree.threshold[n]), bool(tree.nan_left[n]))
    left, dl = _walk(nodes, tree, int(tree.left[n]))
    right, dr = _walk(nodes, tree, int(tree.right[n]))
    nodes.left[i], nodes.right[i] = left, right
    return i, 1 + max(dl, dr)


def _add_xgb_trees(nodes: _Nodes, model: Mapping[str, Any], group: int) -> np.ndarray:
    gb = model["learner"]["gradient_booster"]
    if gb["name"] != "gbtree":
        raise CompileError(f"XGBoost booster {gb['name']!r}; expected gbtree")
    for t, k in zip(gb["model"]["trees"], gb["model"]["tree_info"], strict=True):
        if any(int(s) != 0 for s in t["split_type"]):
            raise CompileError("XGBoost categorical split unsupported")
        cond = np.asarray(t["split_conditions"], dtype=np.float32)
        leaf = np.zeros((len(cond), 3))
        leaf[:, int(k)] = cond  # a leaf's split condition holds its value
        tree = _Indexed(
            left=np.asarray(t["left_children"]),
            right=np.asarray(t["right_children"]),
            feature=np.asarray(t["split_indices"]),
            # x < c in float32 is x <= the float32 just below c.
            threshold=np.nextafter(cond, np.float32(-np.inf)).astype(np.float64),
            nan_left=np.asarray(t["default_left"], dtype=bool),
            leaf=leaf,
        )
        root, depth = _walk(nodes, tree, 0)
        nodes.tree(root, depth, group)
    return _xgb_base(model)


def _unroll(
    nodes: _Nodes, splits: list[tuple[int, float, bool]], leaves: np.ndarray, level: int, index: int
) -> int:
    """CatBoost's oblivious tree from ``level`` down as a binary tree; ``index``: the leaf bits
    set so far (split i is bit i, its right branch the bit set)."""
    if level == len(splits):
        return nodes.leaf(leaves[index])
    feature, border, nan_left = splits[level]
    i = nodes.node(feature, border, nan_left)
    nodes.left[i] = _unroll(nodes, splits, leaves, level + 1, index)
    nodes.right[i] = _unroll(nodes, splits, leaves, level + 1, index | (1 << level))
    return i


def _add_catboost(nodes: _Nodes, model: Mapping[str, Any], group: int) -> np.ndarray:
    floats = model["features_info"]["float_features"]
    if model["features_info"].get("categorical_features"):
        raise CompileError("CatBoost categorical features unsupported")
    scale, bias = model["scale_and_bias"]
    for tree in model["oblivious_trees"]:
        leaves = np.asarray(tree["leaf_values"], dtype=np.float64).reshape(-1, 3) * float(scale)
        if len(leaves) != 2 ** len(tree["splits"]):
            raise CompileError("CatBoost tree with a leaf count other than 2^depth")
        splits = []
        for s in tree["splits"]:
            if s["split_type"] != "FloatFeature":
                raise CompileError(f"CatBoost split {s['split_type']!r} unsupported")
            info = floats[int(s["float_feature_index"])]
            # The bit is x > border (float32), so x <= border goes left; NaN sets it only
            # under AsTrue.
            nan_left = info["nan_value_treatment"] != "AsTrue"
            border = float(np.float32(s["border"]))
            splits.append((int(info["flat_feature_index"]), border, nan_left))
        nodes.tree(_unroll(nodes, splits, leaves, 0, 0), len(splits), group)
    return np.asarray(bias, dtype=np.float64).reshape(3)


def _add_forest(nodes: _Nodes, forest: Any, group: int) -> None:
    classes = np.asarray(forest.classes_).astype(int)
    n_trees = len(forest.estimators_)
    for est in forest.estimators_:
        t = est.tree_
        value = t.value[:, 0, :]
        leaf = np.zeros((t.node_count, 3))
        leaf[:, classes] = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300) / n_trees
        tree = _Indexed(
            left=np.asarray(t.children_left),
            right=np.asarray(t.children_right),
            feature=np.asarray(t.feature),
            threshold=np.asarray(t.threshold, dtype=np.float64),
            nan_left=np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), bool),
            leaf=leaf,
        )
        root, depth = _walk(nodes, tree, 0)
        nodes.tree(root, depth, group)


_FOREST_ARRAYS = (
    "feature",
    "threshold",
    "left",
    "right",
    "nan_left",
    "zero_left",
    "value",
    "roots",
    "depths",
    "groups",
)
"""The array fields of :class:`Forest`, in the order they are stored."""


@dataclass(frozen=True)
class Forest:
    """Flat node arrays of some tree learners, trees ordered by depth (deepest first) so each
    level only walks the trees that still have one."""

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    nan_left: np.ndarray
    zero_left: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depths: np.ndarray
    groups: np.ndarray
    n_groups: int

    @classmethod
    def of(cls, nodes: _Nodes, n_groups: int) -> Forest:
        order = np.argsort(-np.asarray(nodes.depths, dtype=np.int64), kind="stable")
        return cls(
            feature=np.asarray(nodes.feature, dtype=np.intp),
            threshold=np.asarray(nodes.threshold, dtype=np.float64),
            left=np.asarray(nodes.left, dtype=np.intp),
            right=np.asarray(nodes.right, dtype=np.intp),
            nan_left=np.asarray(nodes.nan_left, dtype=bool),
            zero_left=np.asarray(nodes.zero_left, dtype=np.int8),
            value=np.vstack(nodes.value) if nodes.value else np.zeros((0, 3)),
            roots=np.asarray(nodes.roots, dtype=np.intp)[order],
            depths=np.asarray(nodes.depths, dtype=np.intp)[order],
            groups=np.asarray(nodes.groups, dtype=np.intp)[order],
            n_groups=n_groups,
        )

    def margins(self, X: np.ndarray) -> np.ndarray:
        """n × groups × 3: the summed leaf values of each group's trees for each row."""
        n, width = X.shape
        n_trees = len(self.roots)
        node = np.broadcast_to(self.roots, (n, n_trees)).copy()
        flat = np.ascontiguousarray(X).reshape(-1)
        offset = (np.arange(n) * width)[:, None]
        nan_rows = bool(np.isnan(flat).any())
        has_zero = bool((self.zero_left >= 0).any())
        child = np.stack([self.left, self.right], axis=1).reshape(-1)  # 2i: left, 2i+1: right
        # depths are sorted descending: level d walks only the first `active` trees.
        for d in range(int(self.depths[0]) if n_trees else 0):
            active = int(np.searchsorted(-self.depths, -d, side="left"))
            cur = node[:, :active] if active < n_trees else node
            x = flat.take(self.feature.take(cur) + offset)
            go_left = x <= self.threshold.take(cur)  # NaN compares False: goes right unless…
            if nan_rows:
                go_left |= np.isnan(x) & self.nan_left.take(cur)
            if has_zero:
                zl = self.zero_left.take(cur)
                special = (zl >= 0) & (np.isnan(x) | (np.abs(x) <= _ZERO))
                go_left = np.where(special, zl == 1, go_left)
            step = child.take(2 * cur + 1 - go_left)
            if active < n_trees:
                node[:, :active] = step
            else:
                node = step
        leaf = self.value[node]  # n × trees × 3
        # Plain sums per group, not einsum/matmul: BLAS threads on a busy two-core machine
        # cost more than the arithmetic.
        return np.stack([leaf[:, self.groups == g].sum(axis=1) for g in range(self.n_groups)], 1)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The forest as named arrays (an .npz's entries), each name under ``prefix``."""
        return {f"{prefix}{name}": getattr(self, name) for name in _FOREST_ARRAYS} | {
            f"{prefix}n_groups": np.asarray(self.n_groups)
        }

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], prefix: str) -> Forest:
        fields = {name: np.asarray(data[f"{prefix}{name}"]) for name in _FOREST_ARRAYS}
        return cls(**fields, n_groups=int(data[f"{prefix}n_groups"]))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class CompiledEnsemble:
    """The stacked ensemble's probabilities from flat arrays (see the module notes).

    ``bases``: LightGBM, CatBoost, XGBoost hist and the forest as groups 0–3; ``bias``: each
    group's constant margin (XGBoost's base score, CatBoost's bias); ``linear_w`` /
    ``linear_b``: gblinear's weights (features × 3) and bias; ``mean`` / ``std``: its input
    scaling; ``meta``: the LightGBM meta-learner over the 15 stacked probabilities.
    """

    bases: Forest
    bias: np.ndarray
    linear_w: np.ndarray
    linear_b: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    meta: Forest
    sources: dict[str, str]

    def base_probabilities(self, X: np.ndarray) -> np.ndarray:
        """n × 15 in BASE_MODELS order (lightgbm, catboost, xgb_hist, xgb_linear, forest)."""
        X = np.asarray(X, dtype=np.float32)
        m = self.bases.margins(X) + self.bias
        lgb, cb = _softmax(m[:, 0]), _softmax(m[:, 1])
        # XGBoost answers in float32, and the meta-learner was fitted on those values.
        xgb = _softmax(m[:, 2]).astype(np.float32).astype(np.float64)
        return np.hstack([lgb, cb, xgb, self._linear(X), m[:, 3]])

    def _linear(self, X: np.ndarray) -> np.ndarray:
        """gblinear as XGBoost computes it: bias + Σ x_i w_i accumulated in float32, feature
        by feature (a float64 dot product differs by ~1e-6, enough to flip a meta split)."""
        scaled = np.nan_to_num((X - self.mean) / self.std, nan=0.0, posinf=0.0, neginf=0.0)
        x32 = scaled.astype(np.float32)
        terms = np.empty((len(X), len(self.mean) + 1, 3), dtype=np.float32)
        terms[:, 0] = self.linear_b.astype(np.float32)
        np.multiply(x32[:, :, None], self.linear_w.astype(np.float32)[None], out=terms[:, 1:])
        margin = np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]
        return _softmax(margin.astype(np.float64)).astype(np.float32).astype(np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(SELL), P(HOLD), P(BUY) per row."""
        return _softmax(self.meta.margins(self.base_probabilities(X))[:, 0])

    # ---- storage ------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        arrays = self.bases.arrays("bases_") | self.meta.arrays("meta_")
        arrays |= {
            "bias": self.bias,
            "linear_w": self.linear_w,
            "linear_b": self.linear_b,
            "mean": self.mean,
            "std": self.std,
            "header": np.asarray(json.dumps({"format": FORMAT, "sources": self.sources})),
        }
        with path.open("wb") as fh:
            np.savez(fh, allow_pickle=False, **arrays)
        return path

    @classmethod
    def read(cls, path: Path) -> CompiledEnsemble:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if header.get("format") != FORMAT:
                raise CompileError(f"{path}: compiled format {header.get('format')}, not {FORMAT}")
            return cls(
                bases=Forest.from_arrays(data, "bases_"),
                bias=np.asarray(data["bias"]),
                linear_w=np.asarray(data["linear_w"]),
                linear_b=np.asarray(data["linear_b"]),
                mean=np.asarray(data["mean"]),
                std=np.asarray(data["std"]),
                meta=Forest.from_arrays(data, "meta_"),
                sources=dict(header["sources"]),
            )


def file_digests(directory: Path, files: Mapping[str, str]) -> dict[str, str]:
    """sha256 of each native model file: what a compiled form was built from."""
    return {
        name: hashlib.sha256((directory / file).read_bytes()).hexdigest()
        for name, file in sorted(files.items())
    }


def compile_ensemble(
    base: Mapping[str, Any],
    meta: Any,
    mean: np.ndarray,
    std: np.ndarray,
    sources: Mapping[str, str],
) -> CompiledEnsemble:
    """Compile fitted (or loaded) base models and meta-learner; ``sources``: the native files'
    digests (:func:`file_digests`)."""
    nodes = _Nodes(3)
    bias = np.zeros((4, 3))
    _add_lightgbm(nodes, _lgb_booster(base["lightgbm"]).dump_model(), 0)
    cb_path = _catboost_json(base["catboost"])
    bias[1] = _add_catboost(nodes, cb_path, 1)
    bias[2] = _add_xgb_trees(nodes, _xgb_json(base["xgb_hist"].get_booster()), 2)
    _add_forest(nodes, base["random_forest"], 3)

    linear = _xgb_json(base["xgb_linear"].get_booster())
    lm = linear["learner"]["gradient_booster"]
    if lm["name"] != "gblinear":
        raise CompileError(f"xgb_linear booster {lm['name']!r}; expected gblinear")
    weights = np.asarray(lm["model"]["weights"], dtype=np.float32).astype(np.float64)
    n_features = len(mean)
    weights = weights.reshape(n_features + 1, 3)

    meta_nodes = _Nodes(3)
    _add_lightgbm(meta_nodes, _lgb_booster(meta).dump_model(), 0)
    return CompiledEnsemble(
        bases=Forest.of(nodes, 4),
        bias=bias,
        linear_w=weights[:n_features],
        linear_b=_linear_intercept(base["xgb_linear"], n_features),
        mean=np.asarray(mean, dtype=np.float64),
        std=np.asarray(std, dtype=np.float64),
        meta=Forest.of(meta_nodes, 1),
        sources=dict(sources),
    )


def _linear_intercept(model: Any, n_features: int) -> np.ndarray:
    """gblinear's margin at x = 0, asked of XGBoost itself: whether the base score is part of
    it differs between objectives and versions (3.2's softprob leaves it out)."""
    zero = np.zeros((1, n_features), dtype=np.float32)
    margin = np.asarray(model.predict(zero, output_margin=True), dtype=np.float32)
    return margin.reshape(3).astype(np.float64)


def _lgb_booster(model: Any) -> Any:
    booster = getattr(model, "booster", None) or getattr(model, "booster_", None)
    return model if booster is None else booster


def _catboost_json(model: Any) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="catboost_json_") as tmp:
        path = Path(tmp) / "model.json"
        model.save_model(str(path), format="json")
        return dict(json.loads(path.read_text()))
