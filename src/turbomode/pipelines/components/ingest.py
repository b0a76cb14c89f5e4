"""Ingest: market data → validation → the clean store (``turbomode.data.ingest``)."""

from kfp.dsl import Dataset, Metrics, Output


def ingest(
    config: str,
    clean: Output[Dataset],
    metrics: Output[Metrics],
    source: str = "",
    symbols: str = "",
    start: str = "",
    end: str = "",
) -> None:
    """Load, validate and write the clean store; the artifact is the ingest report (rows in,
    clean, quarantined per rule, paths). Empty ``source``/``symbols``: the settings, all."""
    from turbomode.data.ingest import ingest as run_ingest
    from turbomode.data.sources import get_source
    from turbomode.pipelines import runtime as rt

    settings = rt.settings(config)
    src = get_source(settings, source or None)
    report = run_ingest(settings, src, rt.split_list(symbols), start or None, end or None)
    summary = rt.write_json(clean, report.summary())
    clean.metadata.update(rt.store_location(settings))
    clean.metadata.update(first_date=summary["first_date"], last_date=summary["last_date"])
    figures = ("rows_in", "rows_clean", "rows_quarantined", "symbols", "market_rows_clean")
    rt.log_metrics(metrics, {k: summary[k] for k in (*figures, "skipped")})
