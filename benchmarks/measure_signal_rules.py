"""How many signals each entry rule gives per night on real data, out of time — and whether
the class probabilities behind them are calibrated.

Reads a ``bench_train.py`` work directory (its Feast training set and the models its Ray run
trained on data before 2023-01-01, for one preset: the rank models registered under every key,
or the 33 stacked ensembles), scores every night of the out-of-time window
2023-01-01 → 2024-06-28 and prints, per horizon:

* calibration: the log loss of the class probabilities beside the class prior's (the training
  rows' class shares) on the same rows — calibrated means not worse than the prior;
* quantiles of P(BUY) and P(SELL);
* signals per night under the legacy rule (probability ≥ 0.60), under the old quantile rule
  (top q of the night's probabilities, floor 0.40) and under the default quantile rule (top q
  of the night's lifts — P(side) over the model's class prior — never below
  ``threshold_floor_lift``).

Usage: python benchmarks/measure_signal_rules.py --work /tmp/bench_train_XXXX [--preset rank-pooled]
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


def _model_dirs(root: Path) -> list[tuple[str | None, int, Path]]:
    """(sector or None for a pooled model, horizon, directory) of every trained model."""
    out: list[tuple[str | None, int, Path]] = []
    for d in sorted(root.glob("*/*d")):
        if (d / "ensemble.json").is_file():
            sector = None if d.parent.name == "pooled" else d.parent.name.replace("_", " ")
            out.append((sector, int(d.name[:-1]), d))
    return out


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1.0))))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--preset", default="rank-pooled")
    ap.add_argument("--old-floor", type=float, default=0.40)
    args = ap.parse_args()
    from turbomode.config import SignalSettings
    from turbomode.models.loading import class_prior, load_ensemble

    lift = SignalSettings().threshold_floor_lift
    work = Path(args.work)
    data = pd.read_parquet(work / "training_set.parquet")
    train = data[data["date"] < TEST_START]
    data = data[data["date"] >= TEST_START]
    root = work / f"models_ray_{args.preset}"
    if not root.is_dir():
        root = work / "models_ray"
    parts = []
    for sector, horizon, model_dir in _model_dirs(root):
        label = f"label_{horizon}"
        rows = data[data[label].notna()]
        if sector is not None:
            rows = rows[rows["sector"] == sector]
        model = load_ensemble(model_dir)
        p = model.predict_proba(rows[model.features])
        prior = class_prior(model)
        parts.append(
            pd.DataFrame(
                {
                    "date": rows["date"].to_numpy(),
                    "horizon": horizon,
                    "y": rows[label].to_numpy(dtype=np.int64),
                    "p_sell": p[:, 0],
                    "p_hold": p[:, 1],
                    "p_buy": p[:, 2],
                    "prior_sell": prior[0],
                    "prior_buy": prior[2],
                }
            )
        )
    scores = pd.concat(parts, ignore_index=True)
    nights = scores["date"].nunique()
    out: dict[str, object] = {"preset": args.preset, "nights": nights, "rows": len(scores)}
    print(f"{args.preset}: {nights} nights, {len(scores):,} (symbol, horizon, night) scores")

    calib = {}
    for h, g in scores.groupby("horizon"):
        y = g["y"].to_numpy()
        p = g[["p_sell", "p_hold", "p_buy"]].to_numpy()
        tr = train[f"label_{h}"].dropna().astype(int)
        shares = np.bincount(tr, minlength=3) / len(tr)
        calib[int(h)] = {
            "log_loss": log_loss(y, p),
            "prior_log_loss": log_loss(y, np.tile(shares, (len(y), 1))),
            "mean_p": p.mean(axis=0).round(4).tolist(),
            "realized_shares": (np.bincount(y, minlength=3) / len(y)).round(4).tolist(),
        }
    print("\ncalibration (log loss of the probabilities vs the training class prior):")
    print(pd.DataFrame(calib).T.to_string())
    out["calibration"] = calib

    qs = [0.5, 0.9, 0.95, 0.99, 1.0]
    for side in ("p_buy", "p_sell"):
        table = scores.groupby("horizon")[side].quantile(qs).unstack().round(3)
        print(f"\n{side} quantiles by horizon:\n{table.to_string()}")
        out[f"{side}_quantiles"] = table.to_dict()
    rules: dict[str, dict[int, float]] = {}
    for name, q, basis in (
        ("legacy P ≥ 0.60", None, "p"),
        (f"top 5 % of P, floor {args.old_floor}", 0.95, "p"),
        (f"top 5 % of lift, ≥ {lift} (default)", 0.95, "lift"),
        (f"top 2 % of lift, ≥ {lift}", 0.98, "lift"),
    ):
        fired = np.zeros(len(scores))
        for side in ("buy", "sell"):
            # as the scan does: one threshold per night over every (symbol, horizon) score
            value = scores[f"p_{side}"] / scores[f"prior_{side}"] if basis == "lift" else None
            if q is None:
                ok = scores[f"p_{side}"] >= 0.60
            elif basis == "p":
                thr = scores.groupby("date")[f"p_{side}"].transform(lambda s, q=q: s.quantile(q))
                ok = scores[f"p_{side}"] >= np.maximum(thr, args.old_floor)
            else:
                assert value is not None
                thr = value.groupby(scores["date"]).transform(lambda s, q=q: s.quantile(q))
                ok = value >= np.maximum(thr, lift)
            fired += ok.to_numpy()
        per_h = pd.Series(fired).groupby(scores["horizon"].to_numpy()).sum() / nights
        rules[name] = {int(h): float(v) for h, v in per_h.items()}
    print("\nsignals per night (BUY + SELL, all sectors), by horizon:")
    print(pd.DataFrame(rules).round(1).to_string())
    out["signals_per_night"] = rules
    dest = REPO / "benchmarks" / "results" / f"signal_rules_{args.preset}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
