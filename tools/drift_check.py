"""Does drift light up when the market changes? Feature drift of references built the way
training builds them (a sector's training window, 2013-01-01 → 2019-12-31: models trained
through 2019) over rolling 20-trading-day windows of 2020 — January (calm) through May — on
the real data, read in place from ../shared/data.

    python tools/drift_check.py [--data ../shared/data] [--work /tmp/drift_check]

Prints, per window end, the mean over the 11 sectors of the features with a PSI over 0.1, over
0.25 and over their usual level (the training period's own 99th percentile), the sectors that
would alert, the unusual count of the night's cross-section, and the most unusual features.
Feature drift only: it needs no model, so every sector is measured. No modelling choice
depends on it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
