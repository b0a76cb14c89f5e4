"""The nightly feature increment against the full build it replaces.

Usage: python benchmarks/bench_incremental.py [--data ../shared/data] [--years 20]
       [--symbols 500] [--lookback 600] [--repeat 3] [--synthetic]

A night adds one bar per symbol. The full build recomputes every date of the history; the
increment (``turbomode.features.incremental.build_increment``, what ``turbomode features
build`` runs nightly) recomputes the last ``--lookback`` bars plus the new date, and the three
check dates before it are compared with the stored values. Both run in this process on the
same frames; the median of ``--repeat`` runs is reported with every run's time. The
increment's rows for the new date are compared value by value with the full build's (float32
as stored): identical values, and the largest relative difference.

``--store`` measures the whole ``turbomode features build`` instead (``feature_store.build``
in a temporary data directory: the clean store's fingerprint, the increment, its check against
the stored values, and rewriting Feast's offline tables), a full build against the nightly one
after the clean store gains the last date.

Data: the newest ``--years`` of ``--data`` (the real S&P 500 prices, ``../shared/data``), or
with ``--synthetic`` (or when the data is absent) the synthetic market with ``--symbols``
symbols over ``--years`` × 252 trading days.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from turbomode.config import Settings
from turbomode.data.sources.files import read_frames
from turbomode.data.sources.synthetic import generate_market
from turbomode.features.engine import build_features
from turbomode.features.incremental import build_increment, compare

REPO = Path(__file__).resolve().parents[1]


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], str]:
    if not args.synthetic and (args.data / "prices.parquet").exists():
        end = pd.Timestamp(
            pd.read_parquet(args.data / "prices.parquet", columns=["date"])["date"].max()
        )
        start = end - pd.DateOffset(years=args.years) + pd.Timedelta(days=1)
        md = read_frames(args.data, start, f"{start.year - 2}-01-01")
        return md[0], md[1], md[2], f"{args.data} (last {args.years} years)"
    s = Settings(synthetic={"n_symbols": args.symbols, "n_days": args.years * 252})
    md = generate_market(s.synthetic, s.universe)
    label = f"synthetic market, {args.symbols} symbols × {args.years * 252} days"
    return md.prices, md.market, md.universe.sector_map(), label


def run_store(args: argparse.Namespace) -> None:
    """Full `features build` vs the nightly one, through the clean store and Feast's tables."""
    import tempfile

    from turbomode import feature_store as fs
    from turbomode.data.ingest import ingest

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data={"data_dir": tmp, "source": "parquet", "source_path": args.data},
            features={"incremental_lookback": args.lookback},
        )
        dates = pd.to_datetime(
            pd.read_parquet(args.data / "prices.parquet", columns=["date"])["date"]
        )
        end = pd.Timestamp(dates.max())
        start = end - pd.DateOffset(years=args.years) + pd.Timedelta(days=1)
        before = pd.Timestamp(sorted(dates[dates < end].unique())[-1])
        ingest(settings, start=start, end=before)
        t0 = time.perf_counter()
        report, _ = fs.build(settings)
        full = time.perf_counter() - t0
        print(f"full `features build`:    {full:6.2f} s ({report.mode}, {report.n_rows:,} rows)")
        ingest(settings, start=start, end=end)
        t0 = time.perf_counter()
        report, _ = fs.build(settings)
        nightly = time.perf_counter() - t0
        print(f"nightly `features build`: {nightly:6.2f} s ({report.mode}, {report.n_rows:,} rows)")
        print(f"nightly / full: {100 * nightly / full:.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--years", type=int, default=20)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--lookback", type=int, default=600)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--store", action="store_true", help="through feature_store.build")
    args = ap.parse_args()
    if args.store:
        run_store(args)
        return

    prices, market, sectors, label = load(args)
    since = pd.Timestamp(pd.to_datetime(prices["date"]).max())
    print(f"data: {label}: {len(prices):,} rows, {prices['symbol'].nunique()} symbols")

    full_s, inc_s = [], []
    full = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        full = build_features(prices, market, sectors).frame
        full_s.append(time.perf_counter() - t0)
        del full
    full = build_features(prices, market, sectors).frame
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        inc = build_increment(prices, market, sectors, since, lookback=args.lookback)
        new = inc.new_rows
        names = [c for c in full.columns if c not in ("symbol", "date")]
        bad = compare(inc.check_rows, full[full["date"].isin(inc.check_dates)], names)
        inc_s.append(time.perf_counter() - t0)

    names = [c for c in full.columns if c not in ("symbol", "date")]
    want = full[full["date"] == since].set_index("symbol").sort_index()[names]
    got = new.set_index("symbol").sort_index()[names]
    a, b = got.to_numpy(np.float64), want.to_numpy(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(a - b) / np.maximum(np.abs(a), np.abs(b))
    worst = float(np.nanmax(np.where(same, 0.0, rel))) if (~same).any() else 0.0
    f, i = statistics.median(full_s), statistics.median(inc_s)
    print(f"full build:  {f:6.2f} s median of {[round(x, 2) for x in full_s]} ({len(full):,} rows)")
    print(
        f"increment:   {i:6.2f} s median of {[round(x, 2) for x in inc_s]} "
        f"({len(new):,} new rows, {args.lookback}-bar block, check included)"
    )
    print(f"increment / full: {100 * i / f:.1f} %")
    print(
        f"identity: {int(same.sum()):,} of {same.size:,} values identical "
        f"({len(names)} features); largest relative difference {worst:.2e}; "
        f"check dates {'agree' if not bad else f'DIFFER on {sorted(bad)[:5]}'}"
    )


if __name__ == "__main__":
    main()
