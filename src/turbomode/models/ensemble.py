"""The stacked ensemble: five base classifiers and a LightGBM meta-learner.

Base learners: LightGBM, CatBoost, XGBoost ``hist``, XGBoost ``gblinear`` and a scikit-learn
RandomForest. The meta-learner sees their stacked class probabilities (5 × 3 = 15 inputs) and
is trained only on **out-of-fold** probabilities: walk-forward folds (purged by the horizon,
embargoed) give, for each row of a test block, predictions from base models that never saw it
or anything whose label overlaps it. Training the meta-learner on in-sample probabilities
would teach it to trust whichever base model memorizes best. The final base models are then
refit on all rows.

Classes are SELL=0, HOLD=1, BUY=2; imbalance is handled with balanced sample weights; thread
counts are pinned to what the task was given; ``device="cuda"`` moves XGBoost
(``device="cuda"``) and CatBoost (``task_type="GPU"``) to the GPU.

``models.neural_learners`` adds neural learners (turbomode.models.neural) beside the trees; the
LSTM and Transformer read point-in-time windows, so X must then carry ``symbol`` and ``date``
columns. A learner that fails to fit is dropped from the ensemble with its reason
(``dropped_``); one that fails to load gives NaN inputs to the meta-learner (LightGBM routes
missing values) and is likewise recorded, so the rest still serve. ``models.voting: hybrid``
replaces the meta-learner's output by the seed's vote of the neural learners.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import ModelSettings
from turbomode.errors import TurboModeError
from turbomode.logs import event
from turbomode.models.compiled import (
    COMPILED_FILE,
    CompiledEnsemble,
    compile_ensemble,
    file_digests,
)
from turbomode.models.validation import WalkForward, walk_forward_splits

if TYPE_CHECKING:
    from turbomode.models.neural import Windows

log = logging.getLogger("turbomode.models.ensemble")

BASE_MODELS: tuple[str, ...] = ("lightgbm", "catboost", "xgb_hist", "xgb_linear", "random_forest")
N_CLASSES = 3
ENSEMBLE_FILE = "ensemble.json"
FAST_MAX_ROWS = 256
"""Above this many rows one native call per library is cheaper than the compiled walk (its
cost grows with rows × trees; docs/serving.md), so larger calls take the native path."""
Inference = Literal["fast", "native"]


class TrainingDataError(TurboModeError):
    """The training rows cannot support the requested fit (too few rows, a missing class)."""


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Weight each row by n / (k × count of its class): every class counts the same."""
    counts = np.bincount(y, minlength=N_CLASSES).astype(float)
    present = counts > 0
    w = np.zeros(N_CLASSES)
    w[present] = len(y) / (present.sum() * counts[present])
    return w[y]


def feature_matrix(X: pd.DataFrame | np.ndarray, features: list[str]) -> np.ndarray:
    """The model's features as a float32 matrix in its order; a frame missing some, or an
    array of the wrong width, is an error that says which."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in features if c not in X.columns]
        if missing:
            raise TrainingDataError(
                f"feature frame lacks {len(missing)} model feature(s): {missing[:10]}"
            )
        return X[features].to_numpy(dtype=np.float32)
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != len(features):
        raise TrainingDataError(f"expected {len(features)} features per row, got shape {arr.shape}")
    return arr


@dataclass
class Standardizer:
    """Mean/std scaling fitted on training rows only (gblinear needs comparable scales);
    NaN becomes 0, the training mean."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    def fit(self, X: np.ndarray) -> Standardizer:
        with np.errstate(all="ignore"):
            self.mean = np.nan_to_num(np.nanmean(X, axis=0))
            std = np.nanstd(X, axis=0)
        self.std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.nan_to_num((X - self.mean) / self.std, nan=0.0, posinf=0.0, neginf=0.0)


def _make(name: str, params: dict[str, Any], threads: int, device: str, seed: int) -> Any:
    """A fresh, unfitted base model with the task's thread count and device."""
    if name in ("lightgbm", "meta"):
        import lightgbm as lgb

        return lgb.LGBMClassifier(
            objective="multiclass", n_jobs=threads, random_state=seed, verbose=-1, **params
        )
    if name == "catboost":
        from catboost import CatBoostClassifier

        extra = {"task_type": "GPU"} if device == "cuda" else {"thread_count": threads}
        if device == "cuda":
            # CatBoost's GPU mode takes feature subsampling (rsm) only for pairwise losses.
            params = {k: v for k, v in params.items() if k != "rsm"}
        return CatBoostClassifier(
            loss_function="MultiClass",
            random_seed=seed,
            verbose=False,
            allow_writing_files=False,
            **extra,
            **params,
        )
    if name in ("xgb_hist", "xgb_linear"):
        from xgboost import XGBClassifier

        if name == "xgb_hist":
            kind: dict[str, Any] = {"tree_method": "hist", "device": device}
        else:
            kind = {"booster": "gblinear"}  # linear models have no GPU path worth having
        return XGBClassifier(
            objective="multi:softprob", n_jobs=threads, random_state=seed, **kind, **params
        )
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_jobs=threads, random_state=seed, **params)
    raise ValueError(f"unknown model {name!r}; expected one of {BASE_MODELS} or 'meta'")


def _proba3(model: Any, X: np.ndarray, threads: int = -1) -> np.ndarray:
    """n × 3 probabilities whatever subset of classes the model was trained on."""
    kwargs: dict[str, Any] = {}
    if threads > 0 and type(model).__module__.startswith("catboost"):
        # CatBoost predicts on every core unless told per call (a fitted model refuses new
        # parameters), so the ensemble's thread count is passed here.
        kwargs["thread_count"] = threads
    p = np.asarray(model.predict_proba(X, **kwargs), dtype=np.float64)
    classes = np.asarray(getattr(model, "classes_", np.arange(p.shape[1]))).astype(int)
    out = np.zeros((len(X), N_CLASSES))
    out[:, classes] = p
    return out


@dataclass
class StackedEnsemble:
    """Five base learners + meta-learner for one (sector, horizon)."""

    features: list[str]
    horizon: int
    settings: ModelSettings = field(default_factory=ModelSettings)
    threads: int = 1
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    base_: dict[str, Any] = field(default_factory=dict)
    meta_: Any = None
    scaler_: Standardizer = field(default_factory=Standardizer)
    learners_: list[str] = field(default_factory=list)
    """The base learners the meta-learner reads, in column order (the trees, then neural)."""
    dropped_: dict[str, str] = field(default_factory=dict)
    """Base learners that failed to fit or load, and why."""
    oof_: np.ndarray | None = None
    """Out-of-fold base probabilities (n × 3 per learner, NaN outside test blocks)."""
    oof_fold_: np.ndarray | None = None
    """For each row, the fold whose models produced its out-of-fold probabilities (−1: none)."""
    folds_: list[Any] = field(default_factory=list)
    timings_: dict[str, float] = field(default_factory=dict)
    inference: Inference = "fast"
    """fast: calls of up to FAST_MAX_ROWS rows take the compiled form (same probabilities
    within ``compiled.TOLERANCE``); native: every call goes through the libraries."""
    compiled_: CompiledEnsemble | None = None

    # ---- fitting ------------------------------------------------------------------------
    def _params(self, name: str) -> dict[str, Any]:
        return dict(getattr(self.settings, name))

    @property
    def configured_learners(self) -> list[str]:
        return [*BASE_MODELS, *dict.fromkeys(self.settings.neural_learners)]

    @property
    def window_days(self) -> int:
        """Days of each stock's history one prediction reads: the sequence learners' window
        (its own row included), 0 when every learner reads one vector. Callers that score
        single dates (the scan) read that much history only when this is positive."""
        from turbomode.models.neural import SEQUENCE_ARCHITECTURES

        wanted = self.learners_ or self.configured_learners
        if not any(n in SEQUENCE_ARCHITECTURES for n in wanted):
            return 0
        return int(self.settings.neural.get("window", 10))

    def _inputs(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, Windows | None]:
        """The feature matrix, and the point-in-time windows when a sequence learner is on.

        ``history``: earlier rows (symbol, date, sequence features) the windows of X's rows
        reach back into; a row of it with the (symbol, date) of a row of X gives way to X's.
        """
        Xa = self._matrix(X)
        window = self.window_days
        if not window:
            return Xa, None
        from turbomode.models.neural import build_windows

        if not isinstance(X, pd.DataFrame) or not {"symbol", "date"} <= set(X.columns):
            raise TrainingDataError("sequence learners need a frame with symbol and date columns")
        cols = ["symbol", "date", *self.settings.sequence_features]
        if history is None or history.empty:
            return Xa, build_windows(X, self.settings.sequence_features, window)

        def rows(f: pd.DataFrame) -> pd.DataFrame:
            return f[cols].assign(symbol=f["symbol"].astype(str), date=pd.to_datetime(f["date"]))

        now, earlier = rows(X), rows(history)
        keys = pd.MultiIndex.from_frame(now[["symbol", "date"]])
        earlier = earlier[~pd.MultiIndex.from_frame(earlier[["symbol", "date"]]).isin(keys)]
        frame = pd.concat([earlier, now], ignore_index=True)
        windows = build_windows(frame, self.settings.sequence_features, window)
        return Xa, windows.take(np.arange(len(earlier), len(frame)))

    def _fit_base(
        self,
        name: str,
        inputs: tuple[np.ndarray, Windows | None],
        idx: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        dates: np.ndarray,
    ) -> Any:
        X, windows = inputs
        if name in BASE_MODELS:
            model = _make(name, self._params(name), self.threads, self.device, self.seed)
            Xi = self.scaler_.transform(X[idx]) if name == "xgb_linear" else X[idx]
            model.fit(Xi, y, sample_weight=w)
            return model
        from turbomode.models.neural import NeuralClassifier

        seq = windows is not None and name != "mlp"
        net = NeuralClassifier(
            name,  # type: ignore[arg-type]
            self.settings.sequence_features if seq else self.features,
            dict(self.settings.neural),
            horizon=self.horizon,
            seed=self.seed,
            device=self.device,
        )
        return net.fit(windows.take(idx) if seq and windows else X[idx], y, dates[idx], w)

    def _predict_base(
        self,
        name: str,
        model: Any,
        inputs: np.ndarray | tuple[np.ndarray, Windows | None],
        idx: Any = None,
    ) -> np.ndarray:
        """``name``'s n × 3 probabilities on rows ``idx`` (all when None) of the inputs."""
        X, windows = (inputs, None) if isinstance(inputs, np.ndarray) else inputs
        idx = slice(None) if idx is None else idx
        if name in BASE_MODELS:
            Xi = X[idx]
            return _proba3(
                model, self.scaler_.transform(Xi) if name == "xgb_linear" else Xi, self.threads
            )
        if getattr(model, "is_sequence", False) and windows is not None:
            return np.asarray(model.predict_proba(windows.take(np.arange(len(X))[idx])))
        return np.asarray(model.predict_proba(X[idx]))

    def fit(
        self, X: pd.DataFrame | np.ndarray, y: Sequence[int] | np.ndarray, dates: Any
    ) -> StackedEnsemble:
        """Fit on rows (X, y) dated ``dates``; rows must already be point-in-time features."""
        self.learners_, self.dropped_ = [], {}
        inputs = self._inputs(X)
        Xa = inputs[0]
        ya = np.asarray(y, dtype=np.int64)
        if len(Xa) != len(ya):
            raise TrainingDataError(f"{len(Xa)} feature rows but {len(ya)} labels")
        missing = [c for c in range(N_CLASSES) if not (ya == c).any()]
        if missing:
            raise TrainingDataError(
                f"training labels lack class(es) {missing}: cannot fit 3 classes"
            )
        d = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
        day = d.to_numpy()
        n_days = d.nunique()
        cfg = WalkForward(
            n_folds=self.settings.oof_folds,
            min_train_days=max(20, n_days // (self.settings.oof_folds + 1)),
            embargo_days=self.settings.embargo_days,
        )
        self.folds_ = walk_forward_splits(d.to_numpy(), self.horizon, cfg)
        w = balanced_weights(ya)

        learners = self.configured_learners
        oof = np.full((len(Xa), len(learners) * N_CLASSES), np.nan)
        fold_of = np.full(len(Xa), -1)
        t0 = time.perf_counter()
        for fold in self.folds_:
            tr, te = fold.train_idx, fold.test_idx
            if len(np.unique(ya[tr])) < N_CLASSES:
                raise TrainingDataError(f"fold {fold.index} training rows lack a class")
            self.scaler_ = Standardizer().fit(Xa[tr])
            wt = balanced_weights(ya[tr])
            for j, name in enumerate(learners):
                if name in self.dropped_:
                    continue
                t1 = time.perf_counter()
                try:
                    model = self._fit_base(name, inputs, tr, ya[tr], wt, day)
                    proba = self._predict_base(name, model, inputs, te)
                except Exception as exc:  # one learner's failure must not sink the ensemble
                    self._drop(name, f"fold {fold.index} fit failed: {exc!r}")
                    continue
                oof[te, j * N_CLASSES : (j + 1) * N_CLASSES] = proba
                self.timings_[f"oof_{name}"] = (
                    self.timings_.get(f"oof_{name}", 0.0) + time.perf_counter() - t1
                )
            fold_of[te] = fold.index
        self.timings_["oof"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        self.scaler_ = Standardizer().fit(Xa)
        everything = np.arange(len(Xa))
        for name in learners:
            if name in self.dropped_:
                continue
            t1 = time.perf_counter()
            try:
                self.base_[name] = self._fit_base(name, inputs, everything, ya, w, day)
            except Exception as exc:
                self._drop(name, f"final fit failed: {exc!r}")
            self.timings_[name] = time.perf_counter() - t1
        self.timings_["final_bases"] = time.perf_counter() - t0
        self.learners_ = [n for n in learners if n not in self.dropped_]
        if not self.learners_:
            raise TrainingDataError(f"every base learner failed: {self.dropped_}")
        keep = [j for j, n in enumerate(learners) if n not in self.dropped_]
        oof = oof[:, [j * N_CLASSES + c for j in keep for c in range(N_CLASSES)]]

        seen = fold_of >= 0
        if len(np.unique(ya[seen])) < N_CLASSES:
            raise TrainingDataError("out-of-fold rows lack a class: too little data to stack")
        self.meta_ = _make("meta", self._params("meta"), self.threads, "cpu", self.seed)
        self.meta_.fit(oof[seen], ya[seen], sample_weight=balanced_weights(ya[seen]))
        self.oof_, self.oof_fold_ = oof, fold_of
        self.compiled_ = self._compile({})
        event(
            log,
            "ensemble.fit",
            horizon=self.horizon,
            rows=len(Xa),
            oof_rows=int(seen.sum()),
            learners=self.learners_,
            dropped=self.dropped_,
            seconds={k: round(v, 2) for k, v in self.timings_.items()},
        )
        return self

    def _drop(self, name: str, reason: str) -> None:
        self.dropped_[name] = reason
        self.base_.pop(name, None)
        log.warning("ensemble.learner_dropped %s: %s", name, reason)

    # ---- prediction ---------------------------------------------------------------------
    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return feature_matrix(X, self.features)

    def learner_probabilities(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> dict[str, np.ndarray]:
        """Each base learner's n × 3 probabilities (NaN for one that failed to load);
        ``history`` as in :meth:`predict_proba`."""
        if not self.base_:
            raise TurboModeError("the ensemble is not fitted")
        inputs = self._inputs(X, history)
        everything = slice(None)
        return {
            n: (
                self._predict_base(n, self.base_[n], inputs, everything)
                if n in self.base_
                else np.full((len(inputs[0]), N_CLASSES), np.nan)
            )
            for n in self.learners_
        }

    def base_probabilities(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """The stacked inputs of the meta-learner (3 per learner)."""
        return np.hstack(list(self.learner_probabilities(X, history).values()))

    @property
    def compilable(self) -> bool:
        """Whether the compiled form can stand in for the model: stacking over the five tree
        learners, every one of them loaded (sequence learners and NaN inputs have none)."""
        return (
            self.settings.voting == "stacking"
            and list(self.learners_) == list(BASE_MODELS)
            and set(self.base_) == set(BASE_MODELS)
        )

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """P(SELL), P(HOLD), P(BUY) per row; the compiled form for small calls (see
        :attr:`inference`) of a tree-only model, else :meth:`predict_proba_native`."""
        if self.inference == "fast" and self.compiled_ is not None and len(X) <= FAST_MAX_ROWS:
            return self.compiled_.predict_proba(self._matrix(X))
        return self.predict_proba_native(X, history)

    def predict_proba_native(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """P(SELL), P(HOLD), P(BUY) per row through each library's own predict: the
        meta-learner's, or the hybrid vote.

        With sequence learners (:attr:`window_days` > 0) X carries symbol and date, and
        ``history`` the earlier rows of those symbols (a scan's last days from the offline
        store) so that one date's rows get full windows; only X's rows are scored."""
        probas = self.learner_probabilities(X, history)
        if self.settings.voting == "hybrid":
            from turbomode.models.neural import hybrid_vote

            voters = {n: p for n, p in probas.items() if n not in BASE_MODELS and n in self.base_}
            if len(voters) >= 2:
                return hybrid_vote(voters)
            log.warning("ensemble.hybrid_fallback: %d voter(s) left, stacking", len(voters))
        return _proba3(self.meta_, np.hstack(list(probas.values())))

    def _compile(self, sources: dict[str, str]) -> CompiledEnsemble | None:
        if not self.compilable:
            return None
        return compile_ensemble(
            self.base_, self.meta_, self.scaler_.mean, self.scaler_.std, sources
        )

    # ---- persistence --------------------------------------------------------------------
    def save(self, directory: Path | str) -> dict[str, Path]:
        """Every model in its library's native format, plus a JSON description."""
        from turbomode.models.persistence import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {name: save_model(self.base_[name], directory, name) for name in self.base_}
        files["meta"] = save_model(self.meta_, directory, "meta")
        # The compiled form records the digests of the files it was built from (load checks).
        sources = file_digests(directory, {k: v.name for k, v in files.items()})
        compiled = self._compile(sources)
        if compiled is not None:
            files["compiled"] = compiled.save(directory / COMPILED_FILE)
        spec = {
            "features": self.features,
            "horizon": self.horizon,
            "base_models": list(self.learners_),
            "dropped": self.dropped_,
            "files": {k: v.name for k, v in files.items() if k != "compiled"},
            **({"compiled": COMPILED_FILE} if compiled is not None else {}),
            "scaler": {"mean": self.scaler_.mean.tolist(), "std": self.scaler_.std.tolist()},
            "settings": self.settings.model_dump(mode="json"),
            "folds": [f.summary() for f in self.folds_],
        }
        path = directory / ENSEMBLE_FILE
        path.write_text(json.dumps(spec, indent=1))
        files["ensemble"] = path
        return files

    @classmethod
    def load(
        cls, directory: Path | str, threads: int = 1, inference: Inference = "fast"
    ) -> StackedEnsemble:
        """Load what :meth:`save` wrote (no pickle: native formats and skops' allow-list).

        The compiled form is read when it was built from these very native files, and built
        again from them when it is missing, stale or unreadable (older versions have none)."""
        from turbomode.models.persistence import load_model, set_threads

        directory = Path(directory)
        spec = json.loads((directory / ENSEMBLE_FILE).read_text())
        ens = cls(
            features=list(spec["features"]),
            horizon=int(spec["horizon"]),
            settings=ModelSettings(**spec["settings"]),
            threads=threads,
            inference=inference,
        )
        ens.learners_ = list(spec["base_models"])
        ens.dropped_ = dict(spec.get("dropped", {}))
        for n in ens.learners_:
            try:
                ens.base_[n] = set_threads(load_model(directory / spec["files"][n]), threads)
            except Exception as exc:  # the rest still serve; the meta-learner sees NaN
                ens._drop(n, f"load failed: {exc!r}")
        ens.meta_ = set_threads(load_model(directory / spec["files"]["meta"]), threads)
        ens.scaler_ = Standardizer(
            mean=np.asarray(spec["scaler"]["mean"]), std=np.asarray(spec["scaler"]["std"])
        )
        if inference == "fast" and ens.compilable:
            ens.compiled_ = ens._load_compiled(directory, spec)
        return ens

    def _load_compiled(self, directory: Path, spec: dict[str, Any]) -> CompiledEnsemble | None:
        sources = file_digests(directory, dict(spec["files"]))
        path = directory / spec.get("compiled", COMPILED_FILE)
        reason = "missing"
        if path.is_file():
            try:
                compiled = CompiledEnsemble.read(path)
            except (OSError, ValueError, KeyError) as exc:
                reason = f"unreadable: {exc}"
            else:
                same_scaler = np.array_equal(compiled.mean, self.scaler_.mean) and np.array_equal(
                    compiled.std, self.scaler_.std
                )
                if compiled.sources == sources and same_scaler:
                    return compiled
                reason = "built from other native files"
        event(log, "ensemble.compiled_rebuilt", directory=str(directory), reason=reason)
        return self._compile(sources)
