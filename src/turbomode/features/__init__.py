"""Feature engine: one registry of ~180 features, computed vectorized over all symbols.

``build_features(prices, market, sectors)`` is the entry point; ``REGISTRY`` lists every
feature with its group, description and the market series it needs.
"""

from turbomode.features.engine import (
    MIN_HISTORY,
    FeatureReport,
    FeatureResult,
    build_features,
    prepare_prices,
)
from turbomode.features.registry import (
    GROUPS,
    REGISTRY,
    FeatureSpec,
    UnknownFeatureError,
    select_features,
)

__all__ = [
    "GROUPS",
    "MIN_HISTORY",
    "REGISTRY",
    "FeatureReport",
    "FeatureResult",
    "FeatureSpec",
    "UnknownFeatureError",
    "build_features",
    "prepare_prices",
    "select_features",
]
