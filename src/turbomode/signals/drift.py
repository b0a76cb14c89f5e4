"""Tonight's drift per production model: its sector's cross-section of the scan date and its
last 20 trading days, against the reference its manifest saved at training time
(:mod:`turbomode.models.drift`). The scan calls it and pushes the figures; ``turbomode drift``
calls it for any date.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.job_metrics import JobMetrics
from turbomode.logs import event
from turbomode.models import drift

log = logging.getLogger("turbomode.signals.drift")


def recent_dates(trading_days: Iterable[Any], day: date, n: int) -> list[pd.Timestamp]:
    """The ``n`` newest trading days on or before ``day`` (never a later one)."""
    days = sorted({pd.Timestamp(d) for d in trading_days if pd.Timestamp(d) <= pd.Timestamp(day)})
    return days[-n:]


def drift_for(
    settings: Settings,
    day: date,
    members: pd.DataFrame,
    tonight: pd.DataFrame,
    trading_days: Iterable[Any],
    registry: Any,
    models: Any,
    versions: Mapping[str, str],
    recent: pd.DataFrame | None = None,
) -> list[drift.KeyDrift]:
    """Drift of every key in ``versions`` (registry key → production version scored tonight).

    ``tonight``: symbol + feature columns of the scan date; ``members``: symbol, sector;
    ``recent``: the last 20 days' rows (symbol, date, features), read from the offline store
    when not given. A model whose manifest has no reference (trained before drift existed)
    is skipped with a log line.
    """
    from turbomode import feature_store as fs

    references = {}
    for key, version in sorted(versions.items()):
        manifest = registry.manifest(key, version)
        if manifest.get("drift_reference"):
            references[key] = manifest
        else:
            event(log, "drift.no_reference", key=key, version=version)
    if not references:
        return []
    if recent is None:
        dates = recent_dates(trading_days, day, drift.RECENT_DAYS)
        try:
            recent = fs.stored_vectors(settings, dates) if dates else pd.DataFrame()
        except (OSError, fs.FeatureStoreError) as exc:  # no offline table: tonight only
            event(log, "drift.no_recent_rows", logging.WARNING, error=str(exc))
            recent = pd.DataFrame()
    sectors = members.set_index("symbol")["sector"]
    tonight = tonight.assign(sector=tonight["symbol"].map(sectors))
    recent = recent.assign(sector=recent["symbol"].map(sectors)) if len(recent) else recent
    out: list[drift.KeyDrift] = []
    for key, manifest in references.items():
        version = versions[key]
        reference = manifest["drift_reference"]
        sector = str(manifest["sector"])
        windows = {"tonight": tonight[tonight["sector"] == sector]}
        if len(recent):
            windows["20d"] = recent[recent["sector"] == sector]
        scores: dict[str, Any] = {}
        found = models.get(key)
        if found is not None:
            model = found[0]
            for name, rows in windows.items():
                usable = rows.dropna(subset=list(model.features), how="all")
                if len(usable):
                    scores[name] = drift.score_of(_proba(settings, model, usable, day))
        out.append(drift.key_drift(key, version, reference, windows, scores))
    return out


def _proba(settings: Settings, model: Any, rows: pd.DataFrame, day: date) -> np.ndarray:
    """The model's probabilities on ``rows``; a model with sequence learners gets its
    symbols' earlier rows dated ≤ ``day`` from the offline store, as the scan gives them."""
    if not model.window_days:
        return np.asarray(model.predict_proba(rows[model.features]))
    from turbomode import feature_store as fs

    symbols = sorted(rows["symbol"].astype(str).unique())
    earlier = fs.recent_rows(settings, symbols, day, model.window_days + drift.RECENT_DAYS)
    dated = rows if "date" in rows.columns else rows.assign(date=pd.Timestamp(day))
    return np.asarray(model.predict_proba(dated, history=earlier))


def drift_on(settings: Settings, day: date | None = None) -> tuple[date, list[drift.KeyDrift]]:
    """The drift of every production model on ``day`` (default: the newest bar), read the way
    the scan reads it: the clean store's members and dates, the point-in-time vectors of the
    day, the registry's production versions. What ``turbomode drift`` prints."""
    from turbomode import feature_store as fs
    from turbomode.data.ingest import load_clean
    from turbomode.models.registry import ModelRegistry
    from turbomode.signals.scan import ModelCache, model_key

    md = load_clean(settings)
    trading = pd.DatetimeIndex(md.prices["date"].unique())
    newest = trading.max()
    when = pd.Timestamp(day) if day else newest
    if when > newest:
        raise ValueError(f"no bar on {when.date()}: the clean store ends on {newest.date()}")
    members = md.universe.members[["symbol", "sector"]]
    symbols = sorted(members["symbol"])
    dated = fs.vectors_for_date(settings, symbols, when.date())
    tonight = dated.frame
    stale = dated.older_than(when.date())
    if stale:  # an older vector is not the day's: left out, as the scan leaves it out
        tonight = tonight[~tonight["symbol"].isin(list(stale))]
    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    keys = [
        model_key(str(s), int(h))
        for s in sorted(members["sector"].unique())
        for h in settings.labels.horizons
    ]
    versions = {k: v for k in keys if (v := registry.production(k)) is not None}
    models = ModelCache(
        registry,
        threads=max(1, int(settings.compute.cpus_per_task)),
        inference=settings.compute.inference,
    )
    return when.date(), drift_for(
        settings, when.date(), members, tonight, trading, registry, models, versions
    )


def export(metrics: JobMetrics, drifts: Sequence[drift.KeyDrift], worst: int = 10) -> None:
    """The drift gauges of a scan: counts over 0.1, 0.25 and the usual level, the worst
    features, the score's PSI and its usual level."""
    over = metrics.gauge("turbomode_feature_drift_features")
    top = metrics.gauge("turbomode_feature_drift_psi")
    pred = metrics.gauge("turbomode_prediction_drift_psi")
    pred_usual = metrics.gauge("turbomode_prediction_drift_usual_psi")
    for d in drifts:
        sector, horizon = d.key.rsplit("/", 1)
        labels = {"sector": sector, "horizon": horizon.removesuffix("d")}
        for window in drift.WINDOWS:
            if not (d.table["window"] == window).any():
                continue
            for threshold in (drift.MODERATE, drift.MAJOR):
                over.labels(**labels, window=window, threshold=str(threshold)).set(
                    d.count_over(window, threshold)
                )
            over.labels(**labels, window=window, threshold="usual").set(d.count_unusual(window))
            if window in d.score and np.isfinite(d.score[window]):
                pred.labels(**labels, window=window).set(d.score[window])
            if window in d.score_usual:
                pred_usual.labels(**labels, window=window).set(d.score_usual[window])
        w = d.worst("20d", worst)
        for feature, value in zip(w["feature"], w["psi"].to_numpy(dtype=float), strict=True):
            top.labels(**labels, window="20d", feature=str(feature)).set(value)


def table(drifts: Sequence[drift.KeyDrift], window: str = "20d", worst: int = 5) -> pd.DataFrame:
    """The printable table: one row per key with its counts, score PSI and worst features."""
    rows = []
    for d in drifts:
        top = d.worst(window, worst)
        pairs = zip(top["feature"], top["ratio"], strict=True)
        rows.append(
            {
                "key": d.key,
                "version": d.version,
                "features": int((d.table["window"] == window).sum()),
                f"psi>{drift.MODERATE}": d.count_over(window, drift.MODERATE),
                f"psi>{drift.MAJOR}": d.count_over(window, drift.MAJOR),
                "unusual": d.count_unusual(window),
                "score_psi": d.score.get(window, np.nan),
                "score_usual": d.score_usual.get(window, np.nan),
                "most unusual (PSI / usual)": ", ".join(f"{f} {r:.1f}" for f, r in pairs),
            }
        )
    return pd.DataFrame(rows)
