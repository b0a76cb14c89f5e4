"""How many signals each entry rule gives per night on real data, out of time.

Reads a ``bench_train.py`` work directory (its Feast training set and the 33 ensembles the Ray
run trained on data before 2023-01-01), scores every night of the out-of-time window
2023-01-01 → 2024-06-28 and prints, per horizon: quantiles of P(BUY) and P(SELL), and the
signals per night under the legacy rule (probability ≥ 0.60) and under quantile rules (top q
of the night's probabilities, floor 0.40) — the measurement behind the default
``signals.threshold_mode``.

Usage: python benchmarks/measure_signal_rules.py --work /tmp/bench_train_XXXX
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
TEST_START = pd.Timestamp("2023-01-01")
warnings.filterwarnings("ignore")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--floor", type=float, default=0.40)
    args = ap.parse_args()
    from turbomode.models.ensemble import StackedEnsemble

    work = Path(args.work)
    data = pd.read_parquet(work / "training_set.parquet")
    data = data[data["date"] >= TEST_START]
    parts = []
    for model_dir in sorted((work / "models_ray").glob("*/*d")):
        sector, horizon = model_dir.parent.name.replace("_", " "), int(model_dir.name[:-1])
        rows = data[(data["sector"] == sector) & data[f"label_{horizon}"].notna()]
        ens = StackedEnsemble.load(model_dir)
        p = ens.predict_proba(rows[ens.features])
        parts.append(
            pd.DataFrame(
                {
                    "date": rows["date"].to_numpy(),
                    "horizon": horizon,
                    "p_sell": p[:, 0],
                    "p_buy": p[:, 2],
                }
            )
        )
    scores = pd.concat(parts, ignore_index=True)
    nights = scores["date"].nunique()
    out: dict[str, object] = {"nights": nights, "rows": len(scores)}
    print(f"{nights} nights, {len(scores):,} (symbol, horizon, night) scores")
    qs = [0.5, 0.9, 0.95, 0.99, 1.0]
    for side in ("p_buy", "p_sell"):
        table = scores.groupby("horizon")[side].quantile(qs).unstack().round(3)
        print(f"\n{side} quantiles by horizon:\n{table.to_string()}")
        out[f"{side}_quantiles"] = table.to_dict()
    rules: dict[str, dict[int, float]] = {}
    for name, q in (("legacy ≥ 0.60", None), ("top 5 %", 0.95), ("top 2 %", 0.98)):
        fired = np.zeros(len(scores))
        for side in ("p_buy", "p_sell"):
            # as the scan does: one threshold per night over every (symbol, horizon) score
            thr = (
                np.full(len(scores), 0.60)
                if q is None
                else np.maximum(
                    scores.groupby("date")[side].transform(lambda s, q=q: s.quantile(q)),
                    args.floor,
                )
            )
            fired += (scores[side] >= thr).to_numpy()
        per_h = pd.Series(fired).groupby(scores["horizon"].to_numpy()).sum() / nights
        rules[name] = {int(h): float(v) for h, v in per_h.items()}
    print("\nsignals per night (BUY + SELL, all sectors), by horizon:")
    print(pd.DataFrame(rules).round(1).to_string())
    out["signals_per_night"] = rules
    dest = REPO / "benchmarks" / "results" / "signal_rules.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
