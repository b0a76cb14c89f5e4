"""Online feature reads with the event time of each vector.

The read lives once, in :mod:`turbomode.feature_store` (the scan, the Smart Scanner and the
service share it); this module keeps the service's import path.
"""

from __future__ import annotations

from turbomode.feature_store import feature_age_seconds, online_vectors_at, vector_date

__all__ = ["feature_age_seconds", "online_vectors_at", "vector_date"]
