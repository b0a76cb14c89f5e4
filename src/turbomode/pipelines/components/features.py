"""Features: the clean store → Feast's offline tables, then the online store
(``turbomode.feature_store``)."""

from kfp.dsl import Dataset, Input, Metrics, Output


def build_features(
    config: str,
    clean: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
) -> None:
    """Compute every registry feature and apply the Feast definitions; the artifact is the
    feature report (rows, short histories, absent market series, NaN shares)."""
    from turbomode.feature_store import build
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config)
    rt.expect_same_store(clean, settings)
    report, _store = build(settings)
    plain = rt.write_json(features, report)
    features.metadata.update(rt.store_location(settings))
    figures = ("n_rows", "n_symbols", "n_dates", "features", "short_history", "elapsed_s")
    rt.log_metrics(metrics, {k: plain[k] for k in (*figures, "unmapped_symbols")})


def materialize(
    config: str,
    features: Input[Dataset],
    online: Output[Dataset],
    metrics: Output[Metrics],
    end: str = "",
) -> None:
    """Load the newest feature vectors into the online store (incremental and idempotent, so
    a retry is safe); the artifact records the window loaded. Empty ``end``: newest date."""
    import pandas as pd

    from turbomode.feature_store import materialize as load_online
    from turbomode.feature_store import open_store
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config)
    rt.expect_same_store(features, settings)
    until = pd.Timestamp(end) if end else None
    start_dt, end_dt = load_online(open_store(settings), settings, until)
    rt.write_json(online, {"start": start_dt, "end": end_dt})
    online.metadata.update(rt.store_location(settings))
    rt.log_metrics(metrics, {"window_days": (end_dt - start_dt).total_seconds() / 86400})
