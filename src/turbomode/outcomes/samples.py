"""Training samples from resolved outcomes, with the features as they were at signal time.

Features come from the offline store through a point-in-time join (the row as of the signal
date, never a later recomputation), the label is the realized class of the signal's horizon
(the tracker's ``label``: prices up to t + h only, whatever the outcome rule), and the sample
and the outcome's ``sampled`` mark are written in one transaction: a sample is never added
twice, and a crash between the two cannot lose or repeat one.

A sample's exit and return are those of the label's window (entry at t + 1's open, exit at
t + h's close) or none: under ``outcomes.rule: legacy`` the outcome was held 14 days, and its
return would stand in for the h-day forward return of the row it trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.logs import event
from turbomode.store import SignalStore

log = logging.getLogger("turbomode.outcomes.samples")

# (symbol, date) entity rows → the same rows with one column per model feature.
FeatureLookup = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass
class SampleResult:
    """What one sample run did."""

    candidates: int
    added: int
    without_features: list[str]
    without_label: int = 0


def feast_lookup(settings: Settings) -> FeatureLookup:
    """Point-in-time features from the Feast offline store."""
    from turbomode import feature_store as fs

    store = fs.open_store(settings)

    def lookup(entities: pd.DataFrame) -> pd.DataFrame:
        return fs.training_frame(store, entities)

    return lookup


def frame_lookup(features: pd.DataFrame, names: list[str]) -> FeatureLookup:
    """Lookup in a precomputed point-in-time feature frame (replay; same rows Feast serves)."""
    indexed = features.set_index(["symbol", "date"])[names]

    def lookup(entities: pd.DataFrame) -> pd.DataFrame:
        keys = pd.MultiIndex.from_arrays(
            [entities["symbol"], pd.DatetimeIndex(entities["date"])], names=["symbol", "date"]
        )
        got = indexed.reindex(keys).reset_index(drop=True)
        return pd.concat([entities.reset_index(drop=True), got], axis=1)

    return lookup


def generate_samples(
    settings: Settings,
    store: SignalStore | None = None,
    lookup: FeatureLookup | None = None,
    names: list[str] | None = None,
) -> SampleResult:
    """Turn every resolved, not yet sampled outcome into a labeled training sample."""
    from turbomode.feature_store import FeatureLayout
    from turbomode.job_metrics import job_metrics

    names = names or FeatureLayout.from_registry().all
    with job_metrics("samples", settings.stores.pushgateway_url) as metrics:
        store = store or SignalStore(settings.stores.signals_url)
        store.migrate()
        todo = store.outcomes("resolved")
        todo = todo[~todo["sampled"].astype(bool)].reset_index(drop=True)
        if todo.empty:
            return SampleResult(0, 0, [])
        lookup = lookup or feast_lookup(settings)
        entities = pd.DataFrame(
            {"symbol": todo["symbol"], "date": pd.to_datetime(todo["signal_date"])}
        )
        feats = lookup(entities)
        matrix = feats[names].to_numpy(dtype=np.float64)
        has = ~np.isnan(matrix).all(axis=1)
        samples, ids, missing, unlabelled = [], [], [], 0
        for i, r in enumerate(todo.to_dict(orient="records")):
            if pd.isna(r["label"]):  # resolved without a horizon label: nothing to learn, ever
                ids.append(int(r["id"]))
                unlabelled += 1
                continue
            if not has[i]:
                missing.append(f"{r['symbol']} {pd.Timestamp(r['signal_date']).date()}")
                continue
            ret = float(r["side_return"])
            label_window = int(r["hold_days"]) == int(r["horizon"])
            samples.append(
                {
                    "symbol": r["symbol"],
                    "sector": r["sector"],
                    "horizon": int(r["horizon"]),
                    "signal_date": pd.Timestamp(r["signal_date"]).date(),
                    "side": r["side"],
                    "confidence": float(r["confidence"]),
                    "entry_price": float(r["entry_price"]),
                    "exit_price": float(r["exit_price"]) if label_window else None,
                    "exit_date": pd.Timestamp(r["exit_date"]).date() if label_window else None,
                    "realized_return": float(r["realized_return"]) if label_window else None,
                    "label": int(r["label"]),
                    "outcome": "flat" if ret == 0 else "win" if bool(r["correct"]) else "loss",
                    "features": {
                        n: (None if np.isnan(v) else float(v))
                        for n, v in zip(names, matrix[i], strict=True)
                    },
                }
            )
            ids.append(int(r["id"]))
        added = store.add_samples_from_outcomes(samples, ids)
        metrics.rows.labels(stage="samples").inc(added)
        metrics.rows.labels(stage="without_features").inc(len(missing))
    for m in missing:
        event(log, "samples.no_features", signal=m)
    event(
        log,
        "samples.done",
        candidates=len(todo),
        added=added,
        without_features=len(missing),
        without_label=unlabelled,
    )
    return SampleResult(len(todo), added, missing, unlabelled)


def samples_as_training_rows(samples: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Stored samples in the training-set shape: symbol, date, sector, label_h, fwd_ret_h (NaN
    when the sample has no label-window return), features (one row per sample; other
    horizons' labels are missing)."""
    if samples.empty:
        return pd.DataFrame(columns=["symbol", "date", "sector", *names])
    rows = []
    for r in samples.to_dict(orient="records"):
        feats = r["features"] or {}
        row = {
            "symbol": r["symbol"],
            "date": pd.Timestamp(r["signal_date"]),
            "sector": r["sector"],
            f"label_{int(r['horizon'])}": int(r["label"]),
            f"fwd_ret_{int(r['horizon'])}": (
                np.nan if pd.isna(r["realized_return"]) else float(r["realized_return"])
            ),
        }
        row.update({n: np.nan if feats.get(n) is None else feats[n] for n in names})
        rows.append(row)
    return pd.DataFrame(rows)
