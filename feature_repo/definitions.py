"""Feast definitions for the `feast` command line, generated from TurboMode's feature registry.

Nothing is declared here by hand: turbomode.feature_store.definitions() builds the entities,
views and feature services from turbomode.features.registry, the one list of features.
`turbomode features build` applies the same objects without the feast CLI.
"""

from turbomode.config import get_settings
from turbomode.feature_store import definitions

(
    symbol,
    market,
    stock_features,
    market_context,
    stock_vector,
    turbomode_ensemble,
    turbomode_scan,
) = definitions(get_settings())
