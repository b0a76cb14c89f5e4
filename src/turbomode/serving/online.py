"""Online feature reads with the event time of each vector.

:func:`turbomode.feature_store.online_vectors` returns a frame of vectors only; a service also
needs their dates — to report which day's features a prediction used, to key its memo and to
export feature freshness — and, on its hot path, no DataFrame until a model has to score.
Same read, same unpacking (all-NaN for a symbol the store lacks), plus the timestamps Feast
returns alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from turbomode.feature_store import VECTOR_FEATURE, VECTOR_VIEW


def online_vectors_at(
    store: Any, symbols: Sequence[str], n_features: int
) -> tuple[np.ndarray, list[datetime | None]]:
    """(symbols × features float32 matrix in the registry's order, event time per symbol)."""
    resp = store.get_online_features(
        features=[f"{VECTOR_VIEW}:{VECTOR_FEATURE}"], entity_rows={"symbol": list(symbols)}
    ).to_dict(include_event_timestamps=True)
    values = resp[VECTOR_FEATURE]
    present = [v is not None and len(v) == n_features for v in values]
    rows = [v if ok else [np.nan] * n_features for v, ok in zip(values, present, strict=True)]
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(symbols), n_features)
    stamps = resp.get(f"{VECTOR_FEATURE}__ts", [None] * len(symbols))
    return matrix, [_as_datetime(t) if ok else None for t, ok in zip(stamps, present, strict=True)]


def _as_datetime(value: Any) -> datetime | None:
    """Feast gives Unix seconds (SQLite) or a datetime depending on the online store."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "seconds"):  # a protobuf Timestamp
        return datetime.fromtimestamp(int(value.seconds), UTC)
    return datetime.fromtimestamp(float(value), UTC)
