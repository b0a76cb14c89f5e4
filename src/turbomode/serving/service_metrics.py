"""Prometheus metrics of the service, exported on BentoML's ``/metrics`` beside its own
request metrics (``bentoml_service_request_*``).

BentoML runs each worker with ``PROMETHEUS_MULTIPROC_DIR`` set and serves ``/metrics`` from
``prometheus_client``'s multiprocess collector, so these are plain ``prometheus_client``
metrics (``bentoml.metrics`` is a deprecated alias of the same module in BentoML 1.4). Gauges
say how workers combine: ``livemax`` for states every worker shares, ``livemostrecent`` for
the last observation.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter(
    "turbomode_predictions",
    "Predictions served, by endpoint, sector, horizon and signal (BUY, SELL, HOLD)",
    ["endpoint", "sector", "horizon", "signal"],
)
FAILURES = Counter(
    "turbomode_prediction_failures",
    "Symbols that could not be scored, by endpoint and reason",
    ["endpoint", "reason"],
)
MEMO = Counter(
    "turbomode_prediction_memo",
    "Prediction memo lookups by result (hit: an identical request was answered before)",
    ["result"],
)
MODEL_INFO = Gauge(
    "turbomode_model_info",
    "1 for the production version each model key is served with, 0 for one it replaced",
    ["key", "version"],
    multiprocess_mode="livemax",
)
MODEL_SWAPS = Counter(
    "turbomode_model_swaps", "Production versions swapped in without a restart", ["key"]
)
MODEL_LOAD_SECONDS = Histogram(
    "turbomode_model_load_seconds",
    "Time to load and verify one ensemble from the registry",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
MODELS_LOADED = Gauge(
    "turbomode_models_loaded", "Ensembles in the worker's cache", multiprocess_mode="livemax"
)
FEATURE_AGE = Gauge(
    "turbomode_feature_age_seconds",
    "Age of the newest feature vector used by the latest prediction (now − the close of its "
    "market date; turbomode.feature_store.feature_age_seconds)",
    multiprocess_mode="livemostrecent",
)
FEATURE_TIMESTAMP = Gauge(
    "turbomode_feature_timestamp_seconds",
    "Event time (Unix seconds) of the newest feature vector served",
    multiprocess_mode="livemax",
)
SCAN_TIMESTAMP = Gauge(
    "turbomode_signals_scan_timestamp_seconds",
    "Scan date (Unix seconds, midnight UTC) of the signals /signals serves",
    multiprocess_mode="livemax",
)
READY = Gauge(
    "turbomode_serving_ready",
    "1 when the models and the online store answered the last readiness check",
    multiprocess_mode="livemin",
)

REASONS = (
    ("unknown symbol", "unknown_symbol"),
    ("no features", "no_features"),
    ("no price bar", "no_bar"),
    ("no usable", "no_atr"),
    ("no production model", "no_model"),
    ("model returned invalid", "invalid_probabilities"),
)


def reason_code(reason: str) -> str:
    """A short label for a failure reason (the scan's wording), for low-cardinality metrics."""
    for prefix, code in REASONS:
        if reason.startswith(prefix):
            return code
    return "other"
