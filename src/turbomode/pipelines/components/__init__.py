"""The KFP components: each a plain function of a few lines over ``turbomode``, turned into a
lightweight Python component on the TurboMode components image by :func:`make_components`.

The functions run inside the image (where ``turbomode`` is installed), so every import sits in
the function body; KFP ships the body's source in the compiled YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from turbomode.pipelines.components.features import build_features, materialize
from turbomode.pipelines.components.ingest import ingest
from turbomode.pipelines.components.outcomes import generate_samples, retrain, track_outcomes
from turbomode.pipelines.components.scan import scan
from turbomode.pipelines.components.training import evaluate_and_gate, promote, train

FUNCTIONS: dict[str, Callable[..., None]] = {
    "ingest": ingest,
    "build_features": build_features,
    "materialize": materialize,
    "train": train,
    "evaluate_and_gate": evaluate_and_gate,
    "promote": promote,
    "scan": scan,
    "track_outcomes": track_outcomes,
    "generate_samples": generate_samples,
    "retrain": retrain,
}


@dataclass(frozen=True)
class Components:
    """One KFP component per job, all on the same image."""

    ingest: Any
    build_features: Any
    materialize: Any
    train: Any
    evaluate_and_gate: Any
    promote: Any
    scan: Any
    track_outcomes: Any
    generate_samples: Any
    retrain: Any

    def items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def make_components(image: str) -> Components:
    """Wrap every function as a component on ``image``.

    kfp is not pip-installed at run time (``install_kfp_package=False``): the image carries
    the kfp version the project is locked to, so a step starts without reaching PyPI.
    """
    from kfp import dsl

    made = {
        name: dsl.component(func, base_image=image, install_kfp_package=False)
        for name, func in FUNCTIONS.items()
    }
    return Components(**made)
