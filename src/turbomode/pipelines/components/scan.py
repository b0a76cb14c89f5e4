"""Nightly scan: online features → production ensembles → signals (``turbomode.signals``)."""

from kfp.dsl import Dataset, Input, Metrics, Output


def scan(
    config: str,
    online: Input[Dataset],
    signals: Output[Dataset],
    metrics: Output[Metrics],
    scan_date: str = "",
) -> None:
    """Score the universe, apply the signal rules, stops, targets and the position book, and
    record the night in the signals store; the artifact is ``latest_scan.json``. Empty
    ``scan_date``: the newest bar. When no bar is newer than the last scan's, nothing is
    re-scanned: the artifact is the last committed scan and the metrics say ``new_bar: 0``
    (the scan pushed the same to the Pushgateway)."""
    import pandas as pd

    from turbomode.pipelines import runtime as rt
    from turbomode.signals.scan import NoNewBarError, latest_document, run_scan

    settings = rt.settings(config)
    rt.expect_same_store(online, settings)
    day = pd.Timestamp(scan_date).date() if scan_date else None
    try:
        result = run_scan(settings, scan_date=day)
    except NoNewBarError as exc:
        doc = latest_document(settings)
        rt.write_json(signals, doc)
        signals.metadata.update(
            rt.store_location(settings), scan_date=str(doc["scan_date"]), no_new_bar=str(exc)
        )
        rt.log_metrics(metrics, {"new_bar": 0})
        return
    rt.copy_file(result.files["json"], signals)
    signals.metadata.update(
        rt.store_location(settings), scan_date=str(result.scan_date), csv=result.files["csv"]
    )
    rt.log_metrics(
        metrics,
        {
            "symbols": result.n_symbols,
            "scored": result.n_scored,
            "skipped": len(result.failures),
            "signals_fresh": len(result.fresh),
            "signals_active": len(result.active),
            "position_events": len(result.events),
            "missing_models": len(result.missing_models),
            "stale_features": result.stale_features,
            "seconds": result.seconds,
        },
    )
