"""Save and load fitted models in each library's own format, never pickle.

Pickle runs arbitrary code on load and ties a file to the exact library versions that wrote
it; the native formats do neither, so a model file from the registry is safe to open in the
serving process and survives library upgrades the library itself supports.

================  ================================  ==================================
model             file                              round trip
================  ================================  ==================================
LightGBM          ``<name>.lgb.txt`` (model text)   identical ``predict_proba``
XGBoost           ``<name>.xgb.ubj`` (UBJSON)       identical ``predict_proba``
CatBoost          ``<name>.cbm``                    identical ``predict_proba``
scikit-learn      ``<name>.skops``                  identical; types checked on load
neural (JAX)      ``<name>.nn.safetensors``         identical ``predict_proba``
================  ================================  ==================================

The file's suffix says its format, so :func:`load_model` needs nothing but the path.
LightGBM's model text stores doubles with 17 significant digits, which round-trips them
exactly; the tests check ``np.array_equal`` for every format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from turbomode.errors import TurboModeError

LIGHTGBM_SUFFIX = ".lgb.txt"
XGBOOST_SUFFIX = ".xgb.ubj"
CATBOOST_SUFFIX = ".cbm"
SKOPS_SUFFIX = ".skops"
NEURAL_SUFFIX = ".nn.safetensors"  # turbomode.models.neural: tensors + JSON metadata
SUFFIXES: tuple[str, ...] = (
    LIGHTGBM_SUFFIX,
    XGBOOST_SUFFIX,
    CATBOOST_SUFFIX,
    SKOPS_SUFFIX,
    NEURAL_SUFFIX,
)

# Types a skops file may hold beyond those skops trusts by default. Every entry is a plain data
# holder of scikit-learn; anything else (a custom class, a function, numpy.memmap …) is refused.
SKOPS_ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    }
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnsupportedModelError(TurboModeError, TypeError):
    """The object (or file suffix) is not one of the model kinds this module persists."""


class UntrustedTypeError(TurboModeError):
    """A skops file holds types outside the allow-list; it is refused, not loaded."""

    def __init__(self, path: Path | str, types: list[str], action: str = "load") -> None:
        self.types = types
        super().__init__(
            f"refusing to {action} {path}: it holds type(s) outside the skops allow-list: "
            f"{', '.join(types)} (pass extra_trusted=[...] only after reviewing them)"
        )


class LightGBMModel:
    """A LightGBM Booster with the ``predict_proba`` / ``predict`` the ensemble calls.

    The model text keeps the trees but not the sklearn wrapper, so a loaded model is a Booster;
    this wrapper gives it the same interface as the other libraries' classifiers. Classes are the
    indices 0..K-1 (LightGBM trains on those; :func:`save_model` refuses other labels).
    """

    def __init__(self, booster: Any, threads: int = 0) -> None:
        self.booster = booster
        self.threads = threads  # 0: LightGBM's default (all cores)
        per_iteration = int(booster.num_model_per_iteration())  # K trees per round, 1 if binary
        self.n_classes_ = 2 if per_iteration == 1 else per_iteration
        self.classes_ = np.arange(self.n_classes_)
        self.n_features_in_ = int(booster.num_feature())
        self.feature_name_: list[str] = list(booster.feature_name())

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, n × K (a binary model's single column is expanded to two)."""
        params = {"num_threads": self.threads} if self.threads > 0 else {}
        p = np.asarray(self.booster.predict(X, **params))
        if p.ndim == 1:
            return np.vstack([1.0 - p, p]).T
        return p

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class index for each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _root_module(model: Any) -> str:
    return type(model).__module__.split(".", 1)[0]


def model_format(model: Any) -> str:
    """The file suffix :func:`save_model` would use for ``model``, or raise if unsupported.

    Detection looks at the class's top-level module first, so the check imports only the
    library the model already comes from.
    """
    root = _root_module(model)
    if type(model).__module__ == "turbomode.models.neural":
        from turbomode.models.neural import NeuralClassifier

        if isinstance(model, NeuralClassifier):
            return NEURAL_SUFFIX
    if root == "lightgbm":
        import lightgbm as lgb

        if isinstance(model, lgb.Booster | lgb.LGBMClassifier):
            return LIGHTGBM_SUFFIX
    elif root == "xgboost":
        import xgboost as xgb

        if isinstance(model, xgb.XGBClassifier):
            return XGBOOST_SUFFIX
    elif root == "catboost":
        import catboost

        if isinstance(model, catboost.CatBoostClassifier):
            return CATBOOST_SUFFIX
    elif root == "sklearn":
        from sklearn.base import BaseEstimator

        if isinstance(model, BaseEstimator) and hasattr(model, "predict_proba"):
            return SKOPS_SUFFIX
    raise UnsupportedModelError(
        f"cannot persist a {type(model).__module__}.{type(model).__qualname__}: supported are "
        "lightgbm Booster/LGBMClassifier, xgboost XGBClassifier, catboost CatBoostClassifier, "
        "scikit-learn classifiers (skops) and turbomode.models.neural learners (safetensors)"
    )


def set_threads(model: Any, threads: int) -> Any:
    """Pin a loaded model's prediction to ``threads`` cores and return it.

    A file keeps no thread count, so every library predicts on all cores after a load; in a scan
    worker or a Ray task that oversubscribes the cores it was given (a 2-core scan ran 4× slower).
    A fitted CatBoost model refuses new parameters; its count is given per call instead
    (``predict_proba(..., thread_count=n)``), so it is returned unchanged here.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    root = _root_module(model)
    if isinstance(model, LightGBMModel):
        model.threads = threads
    elif root in ("xgboost", "sklearn") and "n_jobs" in model.get_params():
        model.set_params(n_jobs=threads)
    return model


def save_model(model: Any, directory: Path | str, name: str) -> Path:
    """Write a fitted model to ``directory/<name><suffix>`` in its native format.

    Returns the path; its suffix tells :func:`load_model` how to read it back.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"model name must be letters, digits, '_', '-', '.': {name!r}")
    suffix = model_format(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}{suffix}"
    if suffix == LIGHTGBM_SUFFIX:
        _save_lightgbm(model, path)
    elif suffix == XGBOOST_SUFFIX:
        model.save_model(path)
    elif suffix == CATBOOST_SUFFIX:
        model.save_model(str(path), format="cbm")
    elif suffix == NEURAL_SUFFIX:
        model.save(path)
    else:
        _save_skops(model, path)
    return path


def load_model(path: Path | str, *, extra_trusted: Iterable[str] = ()) -> Any:
    """Read a model written by :func:`save_model`; the suffix picks the format.

    ``extra_trusted`` widens the skops allow-list for one call (review the names first).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    name = path.name
    if name.endswith(LIGHTGBM_SUFFIX):
        import lightgbm as lgb

        return LightGBMModel(lgb.Booster(model_str=path.read_text(encoding="utf-8")))
    if name.endswith(XGBOOST_SUFFIX):
        import xgboost as xgb

        xgb_model = xgb.XGBClassifier()
        xgb_model.load_model(path)
        return xgb_model
    if name.endswith(CATBOOST_SUFFIX):
        import catboost

        cb_model = catboost.CatBoostClassifier()
        cb_model.load_model(str(path), format="cbm")
        return cb_model
    if name.endswith(SKOPS_SUFFIX):
        return _load_skops(path, extra_trusted)
    if name.endswith(NEURAL_SUFFIX):
        from turbomode.models.neural import NeuralClassifier

        return NeuralClassifier.load(path)
    raise UnsupportedModelError(
        f"unknown model file suffix for {path}: expected one of {', '.join(SUFFIXES)}"
    )


def _save_lightgbm(model: Any, path: Path) -> None:
    import lightgbm as lgb

    if isinstance(model, lgb.LGBMClassifier):
        classes = np.asarray(model.classes_)
        if not np.array_equal(classes, np.arange(len(classes))):
            raise UnsupportedModelError(
                f"LightGBM model text keeps class indices only; fit on labels 0..K-1, "
                f"not {classes.tolist()}"
            )
        booster = model.booster_
    else:
        booster = model
    path.write_text(booster.model_to_string(), encoding="utf-8")


def _save_skops(model: Any, path: Path) -> None:
    import skops.io as sio

    data = sio.dumps(model)
    refused = sorted(set(sio.get_untrusted_types(data=data)) - SKOPS_ALLOWED_TYPES)
    if refused:  # fail when saving, not in the serving process months later
        raise UntrustedTypeError(path, refused, action="save")
    path.write_bytes(data)


def _load_skops(path: Path, extra_trusted: Iterable[str]) -> Any:
    import skops.io as sio

    allowed = SKOPS_ALLOWED_TYPES | set(extra_trusted)
    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise UntrustedTypeError(path, refused)
    return sio.load(path, trusted=list(untrusted))
