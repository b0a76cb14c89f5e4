"""The rank model: one LightGBM regressor on the forward return's rank, and calibrated classes.

The 3-class stacked ensemble learns whether a move clears ±k × ATR; on real data its
probabilities were worse than the class prior and its daily rank IC zero. What a nightly
selection needs is an *order* of the stocks, so this model regresses the forward return's
percentile within its (date, sector) — centred on 0 — which is immune to fat tails and to the
market and sector moves no stock feature can call, and makes scores of different sectors
comparable by construction (every sector's target has the same distribution).

The signal rules still read P(SELL), P(HOLD), P(BUY). They come from a multinomial logistic
map of the score fitted **only on out-of-fold scores** — walk-forward folds inside the training
rows, purged by the horizon, each scored by a model that never saw it — so the probabilities
are honest (no balanced class weights distort them) and P(BUY) − P(SELL) ranks exactly as the
score does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import ModelSettings
from turbomode.errors import TurboModeError
from turbomode.logs import event
from turbomode.models.ensemble import (
    ENSEMBLE_FILE,
    N_CLASSES,
    TrainingDataError,
    feature_matrix,
)
from turbomode.models.validation import WalkForward, walk_forward_splits

log = logging.getLogger("turbomode.models.ranker")

KIND = "ranker"


def rank_target(
    returns: Sequence[float] | np.ndarray, dates: Any, groups: Any | None = None
) -> np.ndarray:
    """Percentile rank of each return within its date (and group, e.g. sector), minus 0.5.

    NaN returns stay NaN and are not ranked."""
    keys: list[Any] = [pd.to_datetime(np.asarray(dates))]
    if groups is not None:
        keys.append(np.asarray(groups))
    r = pd.Series(np.asarray(returns, dtype=float))
    return (r.groupby(keys).rank(pct=True) - 0.5).to_numpy()


@dataclass
class ScoreCalibrator:
    """softmax(intercept + coef × z), z the standardized score: three classes from one score.

    A logistic map is monotone in the score for BUY against SELL, so calibration never
    reorders what the ranker ranked; it only says how much a score is worth."""

    mean: float = 0.0
    std: float = 1.0
    coef: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES))
    intercept: np.ndarray = field(default_factory=lambda: np.zeros(N_CLASSES))
    n_rows: int = 0
    prior: np.ndarray = field(default_factory=lambda: np.full(N_CLASSES, 1.0 / N_CLASSES))
    """Class shares of the rows it was fitted on."""

    def fit(self, score: np.ndarray, y: np.ndarray) -> ScoreCalibrator:
        from sklearn.linear_model import LogisticRegression

        ok = np.isfinite(score)
        s, yy = score[ok], np.asarray(y)[ok]
        if len(np.unique(yy)) < N_CLASSES:
            raise TrainingDataError("out-of-fold rows lack a class: cannot calibrate 3 classes")
        self.mean, self.std = float(s.mean()), float(s.std()) or 1.0
        z = ((s - self.mean) / self.std)[:, None]
        lr = LogisticRegression(C=1e4, max_iter=500).fit(z, yy)
        order = np.argsort(lr.classes_)
        self.coef = lr.coef_[order, 0].astype(float)
        self.intercept = lr.intercept_[order].astype(float)
        self.n_rows = len(s)
        self.prior = np.bincount(yy, minlength=N_CLASSES) / len(yy)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        z = (np.asarray(score, dtype=float) - self.mean) / self.std
        logits = self.intercept[None, :] + z[:, None] * self.coef[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "std": self.std,
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "n_rows": self.n_rows,
            "prior": self.prior.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreCalibrator:
        return cls(
            mean=float(d["mean"]),
            std=float(d["std"]),
            coef=np.asarray(d["coef"], dtype=float),
            intercept=np.asarray(d["intercept"], dtype=float),
            n_rows=int(d.get("n_rows", 0)),
            prior=np.asarray(d.get("prior", [1.0 / N_CLASSES] * N_CLASSES), dtype=float),
        )


def _spread(scores: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of a model's scores (1.0 when they do not vary)."""
    s = np.asarray(scores, dtype=float)
    std = float(s.std())
    return float(s.mean()), std if std > 0 else 1.0


@dataclass
class RankEnsemble:
    """A LightGBM rank regressor plus its out-of-fold calibrator, for one horizon.

    Same interface as :class:`~turbomode.models.ensemble.StackedEnsemble` (``features``,
    ``horizon``, ``predict_proba``, ``save``, ``load``), so the registry, gate, scan and
    service take either; ``predict_score`` gives the raw rank score."""

    features: list[str]
    horizon: int
    settings: ModelSettings = field(default_factory=ModelSettings)
    threads: int = 1
    device: Literal["cpu", "cuda"] = "cpu"
    seed: int = 0
    model_: Any = None
    calibrator_: ScoreCalibrator = field(default_factory=ScoreCalibrator)
    scale_: tuple[float, float] = (0.0, 1.0)
    """Mean and spread of the final model's scores on its training rows. The calibrator reads
    scores standardized by their own model's spread — each out-of-fold model's on its training
    rows, the final model's on its — so a final model fitted on more rows (wider scores) is
    not read as more confident than the smaller fold models it was calibrated through."""
    calib_rows_: np.ndarray | None = None
    """Positions (in the fit's rows) of the out-of-fold rows the calibrator was fitted on."""
    folds_: list[Any] = field(default_factory=list)
    timings_: dict[str, float] = field(default_factory=dict)

    def _regressor(self, n_rows: int) -> Any:
        import lightgbm as lgb

        # CPU even under compute.device=cuda: PyPI's LightGBM wheel has no CUDA build, and one
        # booster over ~1M rows trains in minutes on two cores.
        params = dict(self.settings.ranker)
        params.setdefault("verbose", -1)
        # A leaf holds at most 1 % of the rows: the configured 2,000 suits a million rows, but
        # would leave a small fold (a few thousand rows) with no split at all.
        if "min_child_samples" in params:
            params["min_child_samples"] = min(
                int(params["min_child_samples"]), max(20, n_rows // 100)
            )
        return lgb.LGBMRegressor(
            objective="regression", n_jobs=self.threads, random_state=self.seed, **params
        )

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: Sequence[int] | np.ndarray,
        dates: Any,
        target: Sequence[float] | np.ndarray,
    ) -> RankEnsemble:
        """Fit on point-in-time rows: ``y`` the class labels (for the calibrator), ``target``
        the rank target (:func:`rank_target`), ``dates`` their dates."""
        Xa = self._matrix(X)
        ya = np.asarray(y, dtype=np.int64)
        ta = np.asarray(target, dtype=float)
        if not len(Xa) == len(ya) == len(ta):
            raise TrainingDataError(f"{len(Xa)} feature rows, {len(ya)} labels, {len(ta)} targets")
        ok = np.isfinite(ta)
        if ok.sum() < 100:
            raise TrainingDataError(f"only {int(ok.sum())} rows with a target: cannot fit")
        d = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
        n_days = d.nunique()
        cfg = WalkForward(
            n_folds=self.settings.oof_folds,
            min_train_days=max(20, n_days // (self.settings.oof_folds + 1)),
            embargo_days=self.settings.embargo_days,
        )
        self.folds_ = walk_forward_splits(d.to_numpy(), self.horizon, cfg)
        oof = np.full(len(Xa), np.nan)
        t0 = time.perf_counter()
        for fold in self.folds_:
            tr = fold.train_idx[ok[fold.train_idx]]
            model = self._regressor(len(tr)).fit(Xa[tr], ta[tr])
            scale = _spread(model.predict(Xa[tr]))
            oof[fold.test_idx] = (model.predict(Xa[fold.test_idx]) - scale[0]) / scale[1]
        self.timings_["oof"] = time.perf_counter() - t0
        seen = np.flatnonzero(np.isfinite(oof))
        self.calibrator_ = ScoreCalibrator().fit(oof[seen], ya[seen])
        self.calib_rows_ = seen
        t0 = time.perf_counter()
        final = self._regressor(int(ok.sum())).fit(Xa[ok], ta[ok])
        self.model_ = final.booster_
        self.scale_ = _spread(final.predict(Xa[ok]))
        self.timings_["final"] = time.perf_counter() - t0
        event(
            log,
            "ranker.fit",
            horizon=self.horizon,
            rows=len(Xa),
            oof_rows=len(seen),
            seconds={k: round(v, 2) for k, v in self.timings_.items()},
        )
        return self

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return feature_matrix(X, self.features)

    def predict_score(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The rank score: higher means a higher expected forward-return rank in its sector."""
        if self.model_ is None:
            raise TurboModeError("the rank model is not fitted")
        params = {"num_threads": self.threads} if self.threads > 0 else {}
        return np.asarray(self.model_.predict(self._matrix(X), **params), dtype=float)

    @property
    def class_prior(self) -> np.ndarray:
        """The calibration rows' class shares (SELL, HOLD, BUY)."""
        return self.calibrator_.prior

    @property
    def decision_weights(self) -> np.ndarray:
        """1 / the calibration rows' class shares: the argmax weights that maximize balanced
        accuracy (see :func:`turbomode.models.evaluation.decide`)."""
        return 1.0 / np.maximum(self.calibrator_.prior, 1e-9)

    @property
    def window_days(self) -> int:
        """No history: one vector a row (see :attr:`StackedEnsemble.window_days`)."""
        return 0

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> np.ndarray:
        """P(SELL), P(HOLD), P(BUY) per row, calibrated on out-of-fold scores (``history`` is
        unused: the rank model reads one vector a row)."""
        z = (self.predict_score(X) - self.scale_[0]) / self.scale_[1]
        return self.calibrator_.predict(z)

    def save(self, directory: Path | str) -> dict[str, Path]:
        """The booster as LightGBM model text, the calibrator and description as JSON."""
        from turbomode.models.persistence import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = {"ranker": save_model(self.model_, directory, "ranker")}
        spec = {
            "kind": KIND,
            "features": self.features,
            "horizon": self.horizon,
            "files": {k: v.name for k, v in files.items()},
            "calibrator": self.calibrator_.to_dict(),
            "scale": list(self.scale_),
            "settings": self.settings.model_dump(mode="json"),
            "folds": [f.summary() for f in self.folds_],
        }
        path = directory / ENSEMBLE_FILE
        path.write_text(json.dumps(spec, indent=1))
        files["ensemble"] = path
        return files

    @classmethod
    def load(cls, directory: Path | str, threads: int = 1) -> RankEnsemble:
        """Load what :meth:`save` wrote (LightGBM text and JSON; no pickle)."""
        from turbomode.models.persistence import load_model

        directory = Path(directory)
        spec = json.loads((directory / ENSEMBLE_FILE).read_text())
        if spec.get("kind") != KIND:
            raise TurboModeError(f"{directory} does not hold a rank model")
        model = cls(
            features=list(spec["features"]),
            horizon=int(spec["horizon"]),
            settings=ModelSettings(**spec["settings"]),
            threads=threads,
        )
        model.model_ = load_model(directory / spec["files"]["ranker"]).booster
        model.calibrator_ = ScoreCalibrator.from_dict(spec["calibrator"])
        mean, spread = spec["scale"]
        model.scale_ = (float(mean), float(spread))
        return model
