"""Ingest benchmark: all of ../shared/data/prices.parquet (2.7 M rows) through validation.

Target (issue: foundation): under 20 s and under 3 GB peak memory.

Each variant runs in a fresh subprocess so its peak resident memory (ru_maxrss, which
includes the interpreter and imports) is its own. Baselines, measured in the same run:
* ``read_parquet only`` — ``pandas.read_parquet`` of prices and market, no checks: the floor.
* ``plain pandas checks`` — the validation a competent engineer would write first in pandas
  (to_datetime, isna, masks, ``duplicated``, ``groupby().pct_change()``), without a report.

Usage: python benchmarks/bench_ingest.py [DATA_DIR]   (default ../shared/data)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TURBOMODE = """
import time
t = time.perf_counter()
from turbomode.config import Settings
from turbomode.data.ingest import validate_market_data
from turbomode.data.sources.files import FileSource
md = FileSource(DATA, Settings()).load()
prices, market = validate_market_data(md, Settings())
seconds = time.perf_counter() - t
info = {"rows": prices.rows_in, "clean": prices.rows_out, "quarantined": len(prices.quarantine),
        "flags": len(prices.flags), "rules": prices.counts()}
"""

READ_ONLY = """
import time
t = time.perf_counter()
import pandas as pd
px = pd.read_parquet(DATA + "/prices.parquet")
mk = pd.read_parquet(DATA + "/market.parquet")
seconds = time.perf_counter() - t
info = {"rows": len(px)}
"""

PLAIN_PANDAS = """
import time
t = time.perf_counter()
import numpy as np
import pandas as pd
px = pd.read_parquet(DATA + "/prices.parquet")
px["date"] = pd.to_datetime(px["date"])
cols = ["open", "high", "low", "close"]
bad = px[cols + ["volume"]].isna().any(axis=1)
bad |= (px[cols] <= 0).any(axis=1) | (px["volume"] < 0) | (px["high"] < px["low"])
bad |= px.duplicated(["symbol", "date"], keep=False)
px = px.sort_values(["symbol", "date"])
ret = px.groupby("symbol")["close"].pct_change()
bad |= np.log1p(ret).abs() > 1.0
clean = px[~bad]
seconds = time.perf_counter() - t
info = {"rows": len(px), "clean": len(clean)}
"""

RUNNER = """
import json, resource, sys
DATA = sys.argv[1]
{body}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
print(json.dumps({{"seconds": seconds, "peak_gib": peak, "info": info}}))
"""


def run(body: str, data: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", RUNNER.format(body=body), data],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    data = str(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data")
    if not Path(data, "prices.parquet").exists():
        print(f"no prices.parquet in {data}", file=sys.stderr)
        return 2
    results = {
        "turbomode ingest (load + validate)": run(TURBOMODE, data),
        "baseline: read_parquet only": run(READ_ONLY, data),
        "baseline: plain pandas checks": run(PLAIN_PANDAS, data),
    }
    print(f"{'variant':40s} {'seconds':>8s} {'peak GiB':>9s}")
    for name, r in results.items():
        print(f"{name:40s} {r['seconds']:8.2f} {r['peak_gib']:9.2f}")
    tm = results["turbomode ingest (load + validate)"]
    print(
        f"\nrows: {tm['info']['rows']:,}  clean: {tm['info']['clean']:,}  "
        f"quarantined: {tm['info']['quarantined']}  flagged: {tm['info']['flags']}"
    )
    print(f"rules: {tm['info']['rules']}")
    ok = tm["seconds"] < 20 and tm["peak_gib"] < 3
    print(f"target (< 20 s, < 3 GiB): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
