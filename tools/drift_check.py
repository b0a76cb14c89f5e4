"""Does drift light up when the market changes? Feature drift of references built the way
training builds them (a sector's training window, 2013-01-01 → 2019-12-31: models trained
through 2019) over rolling 20-trading-day windows of 2020 — January (calm) through May — on
the real data, read in place from ../shared/data.

    python tools/drift_check.py [--data ../shared/data] [--work /tmp/drift_check]

Prints, per window end, the mean over the 11 sectors of the features with a PSI over 0.1, over
0.25 and over their usual level (the training period's own 99th percentile), the sectors that
would alert, the unusual count of the night's cross-section, and the most unusual features.
Feature drift needs no model, so every sector is measured. ``--score SECTOR/Hd`` also trains
that key as ``turbomode train`` does (``models.train.train_all`` on the labelled rows through
2019, its out-of-time window the end of 2019) and prints the prediction drift of its scores
beside the usual level. No modelling choice depends on it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from turbomode import feature_store as fs
from turbomode.config import Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.features.engine import build_features
from turbomode.models import drift
from turbomode.models.pipeline import REFERENCE_ROWS
from turbomode.workspace import with_data_dir

TRAIN = ("2013-01-01", "2019-12-31")
ALERT_FEATURES = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", default=str(here.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/drift_check")
    parser.add_argument("--score", default=None, help="a key to train and score, e.g. Energy/5d")
    args = parser.parse_args()
    t0 = time.perf_counter()
    settings = with_data_dir(
        Settings(data={"source": "parquet", "source_path": args.data}), Path(args.work)
    )
    if not (Path(args.work) / "clean").exists():
        ingest(settings, start="2011-06-01", end="2020-06-30")
    md = load_clean(settings)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    names = fs.model_features(settings)
    feats["sector"] = feats["symbol"].map(sectors)
    print(f"features: {len(feats):,} rows x {len(names)} in {time.perf_counter() - t0:.0f} s")
    train = feats[(feats["date"] >= TRAIN[0]) & (feats["date"] <= TRAIN[1])]
    refs = {
        s: drift.build_reference(rows, names, max_rows=REFERENCE_ROWS)
        for s, rows in train.sort_values(["date", "symbol"]).groupby("sector")
    }
    print(f"references: {time.perf_counter() - t0:.0f} s")
    days = sorted(feats.loc[feats["date"] > TRAIN[1], "date"].unique())
    ends = [d for i, d in enumerate(days) if i >= drift.RECENT_DAYS - 1 and (i + 1) % 5 == 0]
    print(
        "| 20 days ending | features PSI > 0.1 | PSI > 0.25 | unusual, 20 days | "
        f"sectors alerting (≥ {ALERT_FEATURES} unusual) | unusual, the night | "
        "most unusual (median PSI / usual) |"
    )
    print("|---|---|---|---|---|---|---|")
    for end in ends:
        i = days.index(end)
        window = feats[feats["date"].isin(days[i - drift.RECENT_DAYS + 1 : i + 1])]
        per = [
            drift.key_drift(s, "", refs[s], {"20d": rows, "tonight": rows[rows["date"] == end]})
            for s, rows in window.groupby("sector")
            if s in refs
        ]
        over1 = np.mean([d.count_over("20d", drift.MODERATE) for d in per])
        over25 = np.mean([d.count_over("20d", drift.MAJOR) for d in per])
        unusual = [d.count_unusual("20d") for d in per]
        night = np.mean([d.count_unusual("tonight") for d in per])
        alerting = sum(c >= ALERT_FEATURES for c in unusual)
        table = pd.concat([d.table[d.table["window"] == "20d"] for d in per])
        ratio = (table["psi"] / table["usual"]).groupby(table["feature"]).median()
        worst = ratio.sort_values(ascending=False).head(3)
        print(
            f"| {pd.Timestamp(end).date()} | {over1:.0f} | {over25:.0f} | "
            f"{np.mean(unusual):.1f} | {alerting}/{len(per)} | {night:.1f} | "
            + ", ".join(f"{f} {p:.1f}" for f, p in worst.items())
            + " |"
        )
    if args.score:
        score_drift(settings, md, feats, names, days, ends, args.score, Path(args.work))
    print(f"total {time.perf_counter() - t0:.0f} s")


def score_drift(
    settings: Settings,
    md: Any,
    feats: pd.DataFrame,
    names: list[str],
    days: list[Any],
    ends: list[Any],
    key: str,
    work: Path,
) -> None:
    """Train ``key`` through 2019 as training does, then its scores' PSI per 20-day window."""
    from turbomode.labels import make_labels
    from turbomode.models.loading import load_ensemble
    from turbomode.models.pipeline import drift_reference, window_rows
    from turbomode.models.train import TrainTask, train_all

    sector, horizon = key.rsplit("/", 1)
    h = int(horizon.removesuffix("d"))
    t0 = time.perf_counter()
    labels = make_labels(md.prices, settings.labels, sectors=md.universe.sector_map())
    keep = [c for c in labels.columns if c.startswith(("label_", "fwd_ret_"))]
    data = feats[feats["date"] <= TRAIN[1]].merge(
        labels[["symbol", "date", *keep]], on=["symbol", "date"]
    )
    (result,) = train_all(settings, data, names, work / "models", [TrainTask(sector, h)], False)
    if not result.ok:
        raise SystemExit(f"training {key} failed: {result.error}")
    ic = (result.evaluation or {}).get("rank_ic", {}).get("mean_ic")
    ref = drift_reference(data, result, names, window_rows(data, result))
    score = drift.Reference.from_dict(ref["score"])
    model = load_ensemble(str(result.model_dir))
    print(
        f"\n{key}: trained {result.train_start} → {result.train_end}, out of time "
        f"{result.test_start} → {result.test_end} (rank IC {ic}), "
        f"{time.perf_counter() - t0:.0f} s; usual score PSI: night "
        f"{score.usual.get('tonight', float('nan')):.3f}, 20 days "
        f"{score.usual.get('20d', float('nan')):.3f}"
    )
    print("| 20 days ending | score PSI (20 days) | unusual? | score PSI (the night) | unusual? |")
    print("|---|---|---|---|---|")
    rows = feats[feats["sector"] == sector]
    for end in ends:
        i = days.index(end)
        window = rows[rows["date"].isin(days[i - drift.RECENT_DAYS + 1 : i + 1])]
        night = window[window["date"] == end]
        p20 = drift.psi_of(score, drift.score_of(model.predict_proba(window[model.features])))
        p1 = drift.psi_of(score, drift.score_of(model.predict_proba(night[model.features])))
        u20 = p20 > score.usual.get("20d", np.inf)
        u1 = p1 > score.usual.get("tonight", np.inf)
        print(
            f"| {pd.Timestamp(end).date()} | {p20:.3f} | {'yes' if u20 else 'no'} | "
            f"{p1:.3f} | {'yes' if u1 else 'no'} |"
        )


if __name__ == "__main__":
    main()
