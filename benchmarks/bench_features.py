"""Feature build: the vectorized engine vs a per-symbol pandas loop over the same definitions.

Usage: python benchmarks/bench_features.py [--data ../shared/data] [--years 7] [--repeat 3]

Variants, each run ``--repeat`` times in a fresh subprocess (the median is reported, and every
run's time is printed), so each one's peak memory is its process's peak resident set size
(``ru_maxrss``), shown beside the RSS after the data is loaded:

* **vectorized engine**: ``build_features`` over all symbols at once (bottleneck's moving
  windows, linear-filter EWMs and C ranks over bars × symbols arrays).
* **per-symbol pandas loop** (the baseline the target names): the same family functions
  (``symbol_features``), called once per symbol's frame, with the indicators on pandas'
  kernels (``indicators.backend("pandas")``: ``Series``-style ``rolling``/``ewm`` per
  column, which is what a per-symbol pandas script runs), each symbol's results written into
  its rows of one float32 block allocated as the engine's is; then the cross-sectional and
  calendar families once over all rows, since they need every symbol of a date.
* **per-symbol loop, engine kernels**: the same loop with the engine's own kernels. It is
  not the named baseline; it shows how much of the gap is the loop itself and how much the
  kernels.

Every loop's output is checked against the engine's by per-column sums and NaN counts. The
engine's stage times (``FeatureReport.stage_s``) give the most vectorizing can win: everything
outside the per-symbol families (preparing the inputs, the cross-sectional and calendar
families, assembling the frame) is work the loop does once too, so the loop's time over that
remainder bounds the speed-up however fast the families get.
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

from turbomode.data.sources.files import read_frames
from turbomode.features import REGISTRY, build_features, indicators
from turbomode.features.cross_sectional import NEEDS
from turbomode.features.engine import (
    output_block,
    panel_features,
    prepare_prices,
    symbol_features,
)
from turbomode.features.layout import Layout, values
from turbomode.features.market import MarketContext

REPO = Path(__file__).resolve().parents[1]


def load(data: Path, years: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Last ``years`` of prices, the market frame on the adjusted basis (two more years of
    warm-up), and sectors."""
    end = pd.Timestamp(pd.read_parquet(data / "prices.parquet", columns=["date"])["date"].max())
    start = end - pd.DateOffset(years=years) + pd.Timedelta(days=1)
    return read_frames(data, start, f"{start.year - 2}-01-01")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_vectorized(
    px: pd.DataFrame, mk: pd.DataFrame, sectors: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, float]]:
    result = build_features(px, mk, sectors)
    return result.frame, result.report.stage_s


def run_loop(px: pd.DataFrame, mk: pd.DataFrame, sectors: dict[str, str]) -> pd.DataFrame:
    """Per-symbol loop over the same family functions (one symbol's frame at a time).

    Written lean: each symbol's features go straight into their rows of one float32 output
    block, allocated as the engine allocates its own (so neither side pays for assembling
    the frame differently); only the cross-sectional family's inputs stay float64, as in the
    engine. The cross-sectional and calendar families then run once over all rows."""
    p = prepare_prices(px)
    ctx = MarketContext(mk)
    names = REGISTRY.names()
    col_of = {n: j for j, n in enumerate(names)}
    block = output_block(len(p), len(names), np.dtype(np.float32))
    needed = {k: np.empty(len(p)) for k in NEEDS}
    start = 0
    for _, frame in p.groupby("symbol", sort=False):  # p is sorted: groups are row blocks
        n = len(frame)
        _, stream = symbol_features(frame.reset_index(drop=True), ctx, sectors)
        for _, group_cols in stream:
            for k, col in group_cols.items():
                v = values(col)
                if k in needed:
                    needed[k][start : start + n] = v
                block[start : start + n, col_of[k]] = v
        start += n
    keys = pd.DataFrame({"symbol": p["symbol"].to_numpy(), "date": p["date"].to_numpy()})
    layout = Layout.from_frame(keys)
    for _, group_cols in panel_features(layout, needed, ctx, sectors):
        for k, col in group_cols.items():
            block[:, col_of[k]] = values(col)
    for j in range(len(names)):
        c = block[:, j]
        c[np.isinf(c)] = np.nan
    out = pd.DataFrame(block, columns=names, copy=False)
    out.insert(0, "date", keys["date"].to_numpy())
    out.insert(0, "symbol", keys["symbol"].to_numpy())
    return out


VARIANTS = {
    "vectorized": "vectorized engine (all symbols)",
    "loop": "per-symbol pandas loop",
    "loop-kernels": "per-symbol loop, engine kernels",
}


def child(variant: str, data: Path, years: int) -> None:
    px, mk, sectors = load(data, years)
    rss_load = _maxrss_mb()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    if variant == "vectorized":
        frame, stages = run_vectorized(px, mk, sectors)
    elif variant == "loop":
        with indicators.backend("pandas"):
            frame = run_loop(px, mk, sectors)
    else:
        frame = run_loop(px, mk, sectors)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = _maxrss_mb()  # before the checks below allocate anything
    num = frame.iloc[:, 2:]
    print(
        json.dumps(
            {
                "variant": variant,
                "seconds": elapsed,
                "user_s": r1.ru_utime - r0.ru_utime,
                "sys_s": r1.ru_stime - r0.ru_stime,
                "peak_rss_mb": peak,
                "rss_after_load_mb": rss_load,
                "rows": len(frame),
                "symbols": int(frame["symbol"].nunique()),
                "features": frame.shape[1] - 2,
                "stages": stages,
                "col_sums": [float(np.nansum(num[c].to_numpy(np.float64))) for c in num],
                "col_nans": [int(num[c].isna().sum()) for c in num],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--years", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="fresh-process runs per variant")
    ap.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data, args.years)
        return
    if not (args.data / "prices.parquet").exists():
        sys.exit(f"no prices.parquet under {args.data}")
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(max(args.repeat, 1)):
        for variant in VARIANTS:  # interleaved, so a slow spell on the machine hits all
            cmd = [sys.executable, __file__, "--child", variant, "--data", str(args.data)]
            cmd += ["--years", str(args.years)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {v: sorted(r, key=lambda x: x["seconds"])[len(r) // 2] for v, r in runs.items()}
    eng = med["vectorized"]
    head = f"{eng['rows']:,} rows × {eng['features']} features, {eng['symbols']} symbols"
    print(f"{head}, last {args.years} years; median of {args.repeat} fresh-process run(s)")
    print("peak memory: ru_maxrss of each run's own subprocess (includes the loaded data);")
    print("user/sys: CPU seconds of the build (sys is mostly first-touch page faults)")
    print(
        f"{'variant':<34}{'seconds':>9}{'user':>7}{'sys':>6}{'peak RSS MB':>13}"
        f"{'RSS after load':>16}{'÷ engine':>10}   all runs (s)"
    )
    for variant, name in VARIANTS.items():
        r = med[variant]
        times = ", ".join(f"{x['seconds']:.2f}" for x in runs[variant])
        print(
            f"{name:<34}{r['seconds']:>9.2f}{r['user_s']:>7.1f}{r['sys_s']:>6.1f}"
            f"{r['peak_rss_mb']:>13.0f}{r['rss_after_load_mb']:>16.0f}"
            f"{r['seconds'] / eng['seconds']:>9.1f}×   {times}"
        )
    for variant in ("loop", "loop-kernels"):
        lp = med[variant]
        same_nans = eng["col_nans"] == lp["col_nans"]
        rel = max(
            abs(a - b) / max(abs(a), abs(b), 1e-9)
            for a, b in zip(eng["col_sums"], lp["col_sums"], strict=True)
        )
        print(
            f"{VARIANTS[variant]} matches the engine: NaN counts equal={same_nans}, "
            f"max relative column-sum difference={rel:.1e}"
        )
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in eng["stages"].items())
    rest = eng["seconds"] - eng["stages"]["per_symbol"]
    print(
        f"engine stages (median run): {stages}. Everything but the per-symbol families "
        f"({rest:.2f} s) is work the loop does too, once; were those families free, the "
        f"engine could be at most {med['loop']['seconds'] / rest:.1f}× the pandas loop"
    )
    speedup = med["loop"]["seconds"] / eng["seconds"]
    print(
        f"target: engine ≤ 30 s ({'met' if eng['seconds'] <= 30 else 'NOT met'}), "
        f"≥ 20× the per-symbol pandas loop ({speedup:.1f}×: "
        f"{'met' if speedup >= 20 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
