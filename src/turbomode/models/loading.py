"""One loader for every model kind a registry version can hold.

A version directory's ``ensemble.json`` says what it is (``kind``: absent for the stacked
3-class ensemble, ``ranker`` for the rank model); the scan, the gate and the service load
through here and call the same ``features`` / ``horizon`` / ``predict_proba`` on either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from turbomode.models.ensemble import ENSEMBLE_FILE, Inference, StackedEnsemble
from turbomode.models.ranker import KIND as RANKER_KIND
from turbomode.models.ranker import RankEnsemble


class Scorer(Protocol):
    """What the scan, gate and service need of a model."""

    features: list[str]
    horizon: int

    @property
    def window_days(self) -> int:
        """Days of each stock's history a prediction reads (0: its own vector only)."""
        ...

    def predict_proba(
        self, X: pd.DataFrame | np.ndarray, history: pd.DataFrame | None = None
    ) -> np.ndarray: ...


def class_prior(model: object) -> np.ndarray:
    """P(SELL), P(HOLD), P(BUY) the model would say knowing nothing: the rank model's
    calibration rows' class shares; 1/3 each for the stacked ensemble, whose balanced class
    weights make every class count the same."""
    prior = getattr(model, "class_prior", None)
    if prior is None:
        return np.full(3, 1.0 / 3.0)
    return np.asarray(prior, dtype=float)


def load_ensemble(
    directory: Path | str, threads: int = 1, inference: Inference = "fast"
) -> StackedEnsemble | RankEnsemble:
    """The model saved in ``directory``, whichever kind it is. ``inference`` picks the stacked
    ensemble's compiled path or its libraries' (the rank model's one LightGBM booster is
    already fast on one row: it has no compiled form)."""
    spec = json.loads((Path(directory) / ENSEMBLE_FILE).read_text())
    if spec.get("kind") == RANKER_KIND:
        return RankEnsemble.load(directory, threads=threads)
    return StackedEnsemble.load(directory, threads=threads, inference=inference)
