"""Feature build: vectorized engine vs a per-symbol loop over the same feature functions.

Usage: python benchmarks/bench_features.py [--data ../shared/data] [--years 7]

Each variant runs in its own subprocess, so its peak memory is the process's peak resident set
size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), reported beside the RSS peak after the
data is loaded (the difference is what the build itself added). Both variants call the same
family functions (``turbomode.features.engine.symbol_features`` / ``panel_features``): the
engine once over all symbols, the loop once per symbol's frame, then the cross-sectional and
calendar families once over the concatenated result (they need every symbol of a date). The
loop's per-symbol results are checked against the engine's by per-column sums.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def load(data: Path, years: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Last ``years`` of prices, the market frame on the adjusted basis (two more years of
    warm-up), and sectors."""
    from turbomode.data.sources.files import read_frames

    end = pd.Timestamp(pd.read_parquet(data / "prices.parquet", columns=["date"])["date"].max())
    start = end - pd.DateOffset(years=years) + pd.Timedelta(days=1)
    return read_frames(data, start, f"{start.year - 2}-01-01")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_vectorized(px: pd.DataFrame, mk: pd.DataFrame, sectors: dict[str, str]) -> pd.DataFrame:
    from turbomode.features import build_features

    return build_features(px, mk, sectors).frame


def run_loop(px: pd.DataFrame, mk: pd.DataFrame, sectors: dict[str, str]) -> pd.DataFrame:
    """Per-symbol loop over the same family functions (one symbol's frame at a time)."""
    from turbomode.features import REGISTRY
    from turbomode.features.cross_sectional import NEEDS
    from turbomode.features.engine import panel_features, prepare_prices, symbol_features
    from turbomode.features.layout import Layout
    from turbomode.features.market import MarketContext

    p = prepare_prices(px)
    ctx = MarketContext(mk)
    parts: list[pd.DataFrame] = []
    for _, frame in p.groupby("symbol", sort=False):
        frame = frame.reset_index(drop=True)
        _, stream = symbol_features(frame, ctx, sectors)
        cols: dict[str, np.ndarray] = {}
        for _, group_cols in stream:
            cols.update(group_cols)
        parts.append(pd.DataFrame({"symbol": frame["symbol"], "date": frame["date"], **cols}))
    per_symbol = pd.concat(parts, ignore_index=True)
    layout = Layout.from_frame(per_symbol)
    needed = {k: per_symbol[k].to_numpy() for k in NEEDS}
    for _, group_cols in panel_features(layout, needed, ctx, sectors):
        for k, v in group_cols.items():
            per_symbol[k] = v
    out = per_symbol[["symbol", "date", *REGISTRY.names()]].copy()
    num = out.columns[2:]
    out[num] = out[num].replace([np.inf, -np.inf], np.nan).astype(np.float32)
    return out


def child(variant: str, data: Path, years: int) -> None:
    px, mk, sectors = load(data, years)
    rss_load = _maxrss_mb()
    t0 = time.perf_counter()
    frame = (
        run_vectorized(px, mk, sectors) if variant == "vectorized" else run_loop(px, mk, sectors)
    )
    elapsed = time.perf_counter() - t0
    peak = _maxrss_mb()  # before the checks below allocate anything
    num = frame.iloc[:, 2:]
    print(
        json.dumps(
            {
                "variant": variant,
                "seconds": elapsed,
                "peak_rss_mb": peak,
                "rss_after_load_mb": rss_load,
                "rows": len(frame),
                "symbols": int(frame["symbol"].nunique()),
                "features": frame.shape[1] - 2,
                "col_sums": [float(np.nansum(num[c].to_numpy(np.float64))) for c in num],
                "col_nans": [int(num[c].isna().sum()) for c in num],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--years", type=int, default=7)
    ap.add_argument("--child", choices=["vectorized", "loop"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.years)
        return
    if not (args.data / "prices.parquet").exists():
        sys.exit(f"no prices.parquet under {args.data}")
    results = {}
    for variant in ("vectorized", "loop"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--data",
            str(args.data),
            "--years",
            str(args.years),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    v, lp = results["vectorized"], results["loop"]
    same_nans = v["col_nans"] == lp["col_nans"]
    rel = max(
        abs(a - b) / max(abs(a), abs(b), 1e-9)
        for a, b in zip(v["col_sums"], lp["col_sums"], strict=True)
    )
    head = f"{v['rows']:,} rows × {v['features']} features, {v['symbols']} symbols"
    print(f"{head}, last {args.years} years")
    print("peak memory: ru_maxrss of each variant's own subprocess (includes the loaded data)")
    print(f"{'variant':<34}{'seconds':>9}{'peak RSS MB':>13}{'RSS after load':>16}{'speed-up':>10}")
    for name, r in (
        ("vectorized engine (all symbols)", v),
        ("per-symbol loop (same functions)", lp),
    ):
        print(
            f"{name:<34}{r['seconds']:>9.1f}{r['peak_rss_mb']:>13.0f}{r['rss_after_load_mb']:>16.0f}"
            f"{lp['seconds'] / r['seconds']:>9.1f}×"
        )
    print(f"loop output matches engine: NaN counts equal={same_nans}, ", end="")
    print(f"max relative column-sum difference={rel:.1e}")


if __name__ == "__main__":
    main()
