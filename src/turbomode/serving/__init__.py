"""Online serving: the BentoML service (predictions, the latest scan's signals, health,
metrics) and the signals dashboard.

A thin adapter over the batch code: features come from Feast's online store
(:mod:`turbomode.feature_store`), models from the registry's production pointers
(:mod:`turbomode.models.registry`), scores and failure reasons from
:func:`turbomode.signals.scan.score_universe`, entry rules, stops and targets from
:mod:`turbomode.signals.rules` and :mod:`turbomode.risk.levels`, signals from the scan's
``latest_scan.json``. What this package adds is what a long-running process needs: models
that are swapped while requests run, files that are re-read when they change, an exact memo
of predictions, request validation and metrics.
"""
