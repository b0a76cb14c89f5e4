"""A signal's explanation as stored, served and shown: every feature's contribution to its
score, P(BUY) − P(SELL) (:mod:`turbomode.models.explain`), and the top five of them with the
feature's value, its registry description and its percentile in tonight's cross-section.

The scan computes it for the signals it issues and the service for any symbol on request, both
through :func:`explain_rows` on the same vectors, so the two answers are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from turbomode.features.registry import REGISTRY, select_features
from turbomode.models.explain import OUTPUT, explain, top_features

TOP = 5


def percentile(cross_section: np.ndarray, value: float) -> float | None:
    """Share (in %) of the cross-section's finite values at or below ``value``; None for a
    missing value."""
    if not np.isfinite(value):
        return None
    finite = cross_section[np.isfinite(cross_section)]
    return float(100.0 * np.mean(finite <= value)) if len(finite) else None


def explain_rows(
    model: Any,
    rows: pd.DataFrame,
    cross_section: pd.DataFrame,
    key: str,
    version: str,
) -> dict[str, dict[str, Any]]:
    """Symbol → explanation of the margin ``model`` gives each of ``rows`` (``symbol`` and
    the model's features); percentiles among ``cross_section``'s rows (tonight's vectors)."""
    if rows.empty:
        return {}
    features = list(model.features)
    select_features(features)  # loads the registry; unknown names are an error here
    result = explain(model, rows[features])
    values = rows[features].to_numpy(dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for i, symbol in enumerate(rows["symbol"].astype(str)):
        contrib = result.contributions[i]
        top = []
        for j in top_features(contrib, TOP):
            name = features[j]
            spec = REGISTRY[name]
            column = cross_section[name].to_numpy(dtype=np.float64)
            value = float(values[i, j])
            top.append(
                {
                    "feature": name,
                    "group": spec.group,
                    "description": spec.description,
                    "value": value if np.isfinite(value) else None,
                    "percentile": percentile(column, value),
                    "contribution": float(contrib[j]),
                }
            )
        out[symbol] = {
            "model_key": key,
            "model_version": version,
            "output": OUTPUT,
            "value": float(result.value[i]),
            "base": float(result.base[i]),
            "top": top,
            "contributions": {f: float(c) for f, c in zip(features, contrib, strict=True)},
        }
    return out


def summary(explanation: dict[str, Any]) -> dict[str, Any]:
    """The explanation without every feature's contribution: what a signal listing carries."""
    return {k: v for k, v in explanation.items() if k != "contributions"}
