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
    ``scan_date``: the newest bar."""
    import pandas as pd

    from turbomode.pipelines import runtime as rt
    from turbomode.signals.scan import run_scan

    settings = rt.settings(config)
    rt.expect_same_store(online, settings)
    day = pd.Timestamp(scan_date).date() if scan_date else None
    result = run_scan(settings, scan_date=day)
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
            "seconds": result.seconds,
        },
    )
