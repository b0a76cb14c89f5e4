"""Scan benchmark: the nightly scan of about 500 symbols with warm models, store writes included.

On the last 2 years of ../shared/data (prices end 2024-06-28): the parquet source is ingested
into a temporary data directory (``ingest``, as ``turbomode ingest --source parquet`` does),
features are built and the newest vector of every symbol is taken as ``online_vectors``
returns it (the online read itself is measured by bench_feature_store.py). Models: the 33
ensembles of a bench_train work directory (``--models-from /tmp/bt_full``), registered and
promoted in a temporary registry; without one, 33 small ensembles are trained here (default
ModelSettings on a 20,000-row sample per key: prediction cost depends on model size, not on
training rows), and the output says so.

* **scan** — ``run_scan`` with the models warm in its ModelCache: one batch per
  (sector, horizon), thresholds, stop and target, the book, one store transaction,
  ``latest_scan.json`` and the CSV;
* **baseline** — the same scan scoring one symbol at a time: for each symbol, for each
  horizon, ``predict_proba`` on a 1-row frame (models loaded once, from the same warm cache),
  then the very same rules, levels and store write;
* **explanations** — the scan with and without explaining the signals it issues
  (``run_scan(explain=False)``), beside each other: what explanations add to the night.

Warm-up, untimed: the night before the newest date D and then D itself are scanned (this loads
the models and gives D a book: last night's signals open positions at D's open). Every timed
scan is a re-run of D, so it also undoes D's previous run in the store. Thresholds are the
quantile rule (top 5 %, floor 0.40) so that every night writes signals; ``--threshold-mode
fixed`` gives the legacy 0.60. With bench_train's models the distribution of P(BUY) and
P(SELL) on D is printed, and how many signals each entry rule gives that night.

Targets: the scan in at most 10 s on 2 cores; explanations add at most 20 % to it.

Usage: python benchmarks/bench_scan.py [DATA_DIR] [--years 2] [--symbols N]
       [--models-from /tmp/bt_full | --target rank] [--sample-rows 20000] [--repeats 3]
       [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 10.0
EXPLAIN_OVERHEAD = 0.20
QUANTILES = (0.50, 0.90, 0.95, 0.99, 1.00)
warnings.filterwarnings("ignore")


def pick_symbols(data: Path, end: pd.Timestamp, n: int | None) -> list[str] | None:
    """``n`` symbols with a bar on ``end``, taken round-robin over sectors so every sector's
    models are exercised even in a small run; None (all symbols) when ``n`` is None."""
    if n is None:
        return None
    table = pq.read_table(data / "prices.parquet", columns=["symbol", "date"])
    dates = pd.to_datetime(table.column("date").to_pandas())
    live = set(table.column("symbol").to_pandas()[dates == end])
    cons = pd.read_csv(data / "constituents.csv")
    cons = cons[cons["symbol"].isin(live)].sort_values("symbol")
    queues = [list(g["symbol"]) for _, g in cons.groupby("sector", sort=True)]
    picked: list[str] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return sorted(picked)


def prepare_market(settings: Any, data: Path, years: int, symbols: int | None) -> Any:
    """Ingest the window from the parquet source; the universe becomes the ingested symbols."""
    from turbomode.data.ingest import ingest, load_clean
    from turbomode.data.sources import get_source
    from turbomode.data.universe import Universe

    dates = pq.read_table(data / "prices.parquet", columns=["date"]).column("date").to_pandas()
    end = pd.Timestamp(pd.to_datetime(dates).max())
    start = end - pd.DateOffset(years=years)
    wanted = pick_symbols(data, end, symbols)
    ingest(settings, get_source(settings, "parquet", data), wanted, start, end)
    md = load_clean(settings)
    present = set(md.prices["symbol"])
    uni = md.universe
    Universe(
        members=uni.members[uni.members["symbol"].isin(present)].reset_index(drop=True),
        intervals=uni.intervals[uni.intervals["symbol"].isin(present)].reset_index(drop=True),
    ).save(settings.data.clean_dir)
    return load_clean(settings)


def vectors_on(features: pd.DataFrame, symbols: Sequence[str], day: pd.Timestamp) -> pd.DataFrame:
    """What ``online_vectors`` returns after materializing up to ``day``: each symbol's newest
    vector (float32, registry order), all-NaN for a symbol the store does not know."""
    from turbomode.feature_store import FeatureLayout

    cols = FeatureLayout.from_registry().all
    newest = features[features["date"] <= day].groupby("symbol", sort=False).tail(1)
    frame = pd.DataFrame({"symbol": list(symbols)}).merge(
        newest[["symbol", *cols]], on="symbol", how="left"
    )
    return frame.astype(dict.fromkeys(cols, "float32"))


def register_from(registry: Any, models_dir: Path, horizons: Sequence[int]) -> list[str]:
    """Register and promote the models a bench_train run saved (per sector, or pooled)."""
    from turbomode.models.train import saved_model_dirs

    found = saved_model_dirs(models_dir, horizons)
    for key, directory in found.items():
        files = {p.name: p for p in directory.iterdir() if p.is_file()}
        registry.promote(key, registry.register(key, files, {"source": str(directory)}))
    print(f"  registered {len(found)} keys from {models_dir}; the rest stay without a model")
    return list(found)


def train_rank(
    registry: Any, md: Any, features: pd.DataFrame, settings: Any, sample_rows: int, work: Path
) -> list[str]:
    """The default model kind: one pooled rank model per horizon (default ModelSettings) on
    a sample of ``sample_rows`` rows per sector, registered under every sector's key."""
    from turbomode.config import GICS_SECTORS
    from turbomode.feature_store import FeatureLayout
    from turbomode.labels import make_labels
    from turbomode.models.train import fit_model

    cols = FeatureLayout.from_registry().all
    sectors = md.universe.sector_map()
    data = features.merge(
        make_labels(md.prices, settings.labels, sectors=sectors), on=["symbol", "date"]
    )
    data["sector"] = data["symbol"].map(sectors)
    done = []
    for h in settings.labels.horizons:
        rows = data[data[f"label_{h}"].notna() & data[f"fwd_ret_{h}"].notna()]
        rows = (
            rows.groupby("sector")
            .sample(frac=1.0, random_state=0)
            .groupby("sector")
            .head(sample_rows)
        )
        t = time.perf_counter()
        model = fit_model(rows.sort_values("date"), h, cols, settings, 1)
        directory = work / "trained_rank" / "pooled" / f"{h}d"
        model.save(directory)
        files = {p.name: p for p in directory.iterdir() if p.is_file()}
        for sector in GICS_SECTORS:
            key = f"{sector}/{h}d"
            registry.promote(key, registry.register(key, files, {"source": "bench_scan"}))
            done.append(key)
        print(f"  trained pooled/{h}d {len(rows):9,d} rows {time.perf_counter() - t:6.1f} s")
    return done


def train_small(
    registry: Any, md: Any, features: pd.DataFrame, settings: Any, sample_rows: int, work: Path
) -> list[str]:
    """Default-size ensembles on a ``sample_rows`` sample per (sector, horizon), registered
    and promoted: stand-ins for production models when no bench_train run is at hand. One
    thread per model: on 2 shared cores, OpenMP threads of two busy processes fight (a fit
    took 64 s with 2 threads and 4 s with 1 while bench_train ran)."""
    from turbomode.config import GICS_SECTORS, ModelSettings
    from turbomode.feature_store import FeatureLayout
    from turbomode.labels import make_labels
    from turbomode.models.ensemble import StackedEnsemble

    cols = FeatureLayout.from_registry().all
    sectors = md.universe.sector_map()
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    data = features.merge(labels, on=["symbol", "date"])
    data["sector"] = data["symbol"].map(sectors)
    done = []
    for sector in GICS_SECTORS:
        for h in settings.labels.horizons:
            key = f"{sector}/{h}d"
            rows = data[(data["sector"] == sector) & data[f"label_{h}"].notna()]
            rows = rows.sample(n=min(sample_rows, len(rows)), random_state=0).sort_values("date")
            t = time.perf_counter()
            try:
                ens = StackedEnsemble(cols, h, ModelSettings(), threads=1)
                ens.fit(rows[cols], rows[f"label_{h}"].to_numpy(np.int64), rows["date"].to_numpy())
            except Exception as exc:  # too few rows for a class: that key stays without a model
                print(f"  {key}: not trained ({exc})")
                continue
            directory = work / "trained" / sector.replace(" ", "_") / f"{h}d"
            ens.save(directory)
            files = {p.name: p for p in directory.iterdir() if p.is_file()}
            registry.promote(key, registry.register(key, files, {"source": "bench_scan"}))
            done.append(key)
            print(f"  trained {key:32s} {len(rows):7,d} rows {time.perf_counter() - t:6.1f} s")
            sys.stdout.flush()
    return done


def score_one_at_a_time(
    vectors: pd.DataFrame,
    members: pd.DataFrame,
    bars: pd.DataFrame,
    models: Any,
    horizons: Sequence[int],
) -> tuple[pd.DataFrame, dict[str, str], list[str], dict[str, str]]:
    """The baseline: ``score_universe``'s contract, scored as a per-symbol loop would — for
    each symbol, for each horizon, ``predict_proba`` on a 1-row frame. The frame is built once,
    each key's model is looked up once; the screening is the scan's."""
    from turbomode.models.loading import class_prior
    from turbomode.signals import rules
    from turbomode.signals.scan import ATR_FEATURE, BUY_I, HOLD_I, SELL_I, model_key

    frame = members[["symbol", "sector", "cap_class"]].merge(vectors, on="symbol", how="left")
    frame = frame.merge(bars[["symbol", "close"]], on="symbol", how="left")
    feature_cols = [c for c in vectors.columns if c != "symbol"]
    no_features = frame[feature_cols].isna().all(axis=1).to_numpy()
    close = frame["close"].to_numpy(dtype=float)
    atr = frame[ATR_FEATURE].to_numpy(dtype=float)
    resolved: dict[str, Any] = {}
    failures: dict[str, str] = {}
    missing: list[str] = []
    versions: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, (sym, sector, cap) in enumerate(
        frame[["symbol", "sector", "cap_class"]].itertuples(index=False)
    ):
        if no_features[i]:
            failures[sym] = "no features in the online store"
            continue
        if np.isnan(close[i]):
            failures[sym] = "no price bar on the scan date"
            continue
        if not atr[i] > 0:
            failures[sym] = f"no usable {ATR_FEATURE} (warm-up or bad data): no stop can be set"
            continue
        one = frame.iloc[[i]]
        scored = False
        for h in sorted(set(horizons)):
            key = model_key(str(sector), int(h))
            if key not in resolved:
                try:
                    resolved[key] = models.get(key)
                except Exception as exc:
                    resolved[key] = None
                    missing.append(f"{key} (failed to load: {exc})")
                if resolved[key] is None and not any(m.startswith(key) for m in missing):
                    missing.append(key)
            if resolved[key] is None:
                continue
            model, version = resolved[key]
            p = model.predict_proba(one[model.features])[0]
            prior = class_prior(model)
            versions[key] = version
            scored = True
            out.append(
                {
                    "symbol": sym,
                    "sector": sector,
                    "cap_class": cap,
                    "horizon": int(h),
                    "p_buy": p[BUY_I],
                    "p_hold": p[HOLD_I],
                    "p_sell": p[SELL_I],
                    "close": close[i],
                    "prior_buy": prior[BUY_I],
                    "prior_sell": prior[SELL_I],
                    "atr": atr[i] * close[i],  # the feature is a fraction of the close
                    "model_version": version,
                }
            )
        if not scored:
            failures[sym] = f"no production model for {sector} (any horizon)"
    columns = [*rules.SCORE_COLUMNS, "prior_buy", "prior_sell", "model_version"]
    scores = pd.DataFrame(out, columns=columns)
    bad = rules.invalid_probability_mask(scores)
    for sym in scores.loc[bad, "symbol"]:
        failures[sym] = "model returned invalid probabilities"
    return scores.loc[~bad].reset_index(drop=True), failures, missing, versions


class Stages:
    """Seconds per scan stage, from ``run_scan``'s ``on_stage`` calls."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []

    def __call__(self, stage: str) -> None:
        self.marks.append((stage, time.perf_counter()))

    def seconds(self, end: float) -> dict[str, float]:
        ends = [t for _, t in self.marks[1:]] + [end]
        return {name: e - t for (name, t), e in zip(self.marks, ends, strict=True)}


def timed_scans(
    n: int, scan: Callable[[Stages], Any]
) -> tuple[float, dict[str, float], Any, list[float]]:
    """Median wall time of ``n`` scans, the stage split of the median one, its result."""
    runs = []
    for _ in range(n):
        stages = Stages()
        t = time.perf_counter()
        result = scan(stages)
        end = time.perf_counter()
        runs.append((end - t, stages.seconds(end), result))
    runs.sort(key=lambda r: r[0])
    wall, split, result = runs[len(runs) // 2]
    return wall, split, result, [r[0] for r in runs]


def distribution(scores: pd.DataFrame, day: pd.Timestamp, settings: Any) -> None:
    """P(BUY) / P(SELL) quantiles on ``day`` and the signals each entry rule gives."""
    from turbomode.signals import rules
    from turbomode.signals.scan import fresh_signals

    print(f"\nP(BUY) and P(SELL) on {day.date()} ({len(scores)} symbol × horizon scores):")
    head = "".join(f"{f'q{int(q * 100)}' if q < 1 else 'max':>8s}" for q in QUANTILES)
    print(f"  {'':14s}{head}")
    for h, part in [("all", scores), *scores.groupby("horizon")]:
        for side in ("buy", "sell"):
            qs = np.quantile(part[f"p_{side}"].to_numpy(), QUANTILES)
            label = f"P({side.upper()}) {h}{'d' if h != 'all' else ''}"
            print(f"  {label:14s}" + "".join(f"{q:8.3f}" for q in qs))
    rows = []
    for name, update in (
        ("legacy: P ≥ 0.60", {"threshold_mode": "fixed", "entry_probability": 0.60}),
        (
            "quantile: top 5 %, floor 0.40",
            {"threshold_mode": "quantile", "threshold_quantile": 0.95, "threshold_floor": 0.40},
        ),
    ):
        s = settings.model_copy(deep=True)
        s.signals = s.signals.model_copy(update=update)
        limits = rules.entry_thresholds(s.signals, scores)
        fresh = fresh_signals(scores, day.date(), s, limits)
        kept = rules.select_active([], fresh, day.date(), s.signals).active
        n_buy = sum(x.side == "BUY" for x in fresh)
        rows.append(
            f"  {name:30s} thresholds buy {limits['buy']:.3f} sell {limits['sell']:.3f}: "
            f"{len(fresh)} signals ({n_buy} BUY, {len(fresh) - n_buy} SELL), "
            f"{len(kept)} within capacity"
        )
    print("entry rules that night:")
    print("\n".join(rows))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--years", type=int, default=2)
    ap.add_argument("--symbols", type=int, default=None, help="a sample across sectors")
    ap.add_argument("--models-from", default=None, help="bench_train work dir (or models_ray)")
    ap.add_argument("--sample-rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-repeats", type=int, default=1)
    ap.add_argument("--threshold-mode", choices=("quantile", "fixed"), default="quantile")
    ap.add_argument(
        "--target",
        choices=("class3", "rank"),
        default="class3",
        help="without --models-from: stacked ensembles per key, or pooled rank models",
    )
    ap.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    args = ap.parse_args()

    from turbomode.config import Settings
    from turbomode.features.engine import build_features
    from turbomode.models.registry import ModelRegistry
    from turbomode.signals import scan as scan_mod
    from turbomode.signals.scan import ModelCache, run_scan
    from turbomode.store import SignalStore

    data = Path(args.data)
    if not (data / "prices.parquet").exists():
        print(f"no prices.parquet in {data}", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_scan_"))
    settings = Settings(
        data={"data_dir": work / "data"},
        signals={"threshold_mode": args.threshold_mode},
        stores={
            "model_registry_uri": str(work / "models"),
            "signals_url": f"sqlite:///{work / 'signals.db'}",
        },
    )
    t = time.perf_counter()
    md = prepare_market(settings, data, args.years, args.symbols)
    features = build_features(md.prices, md.market, md.universe.sector_map()).frame
    symbols = sorted(md.universe.members["symbol"])
    days = sorted(md.prices["date"].unique())
    d0, d1 = pd.Timestamp(days[-2]), pd.Timestamp(days[-1])
    print(
        f"ingest + features: {time.perf_counter() - t:.1f} s; {len(symbols)} symbols, "
        f"{md.prices['date'].min():%Y-%m-%d} → {d1:%Y-%m-%d}, work dir {work}"
    )

    registry = ModelRegistry(settings.stores.model_registry_uri, family="turbomode")
    t = time.perf_counter()
    if args.models_from:
        keys = register_from(registry, Path(args.models_from), settings.labels.horizons)
        origin = f"bench_train's ensembles from {args.models_from}"
    elif args.target == "rank":
        print(f"no --models-from: training pooled rank models ({args.sample_rows:,} rows a sector)")
        keys = train_rank(registry, md, features, settings, args.sample_rows, work)
        origin = f"pooled rank models trained here (≤ {args.sample_rows:,} rows a sector)"
    else:
        print(f"no --models-from: training small ensembles ({args.sample_rows:,}-row samples)")
        keys = train_small(registry, md, features, settings, args.sample_rows, work)
        origin = f"trained here (default ModelSettings, ≤ {args.sample_rows:,} rows per key)"
    print(f"models: {len(keys)} keys, {origin} ({time.perf_counter() - t:.0f} s)")

    cache = ModelCache(registry, threads=max(1, int(settings.compute.cpus_per_task)))
    store = SignalStore(settings.stores.signals_url)
    vec = {d: vectors_on(features, symbols, d) for d in (d0, d1)}

    def scan(
        day: pd.Timestamp, stages: Callable[[str], None] | None = None, explain: bool = True
    ) -> Any:
        return run_scan(
            settings,
            store=store,
            models=cache,
            scan_date=day.date(),
            vectors=vec[day],
            on_stage=stages,
            explain=explain,
        )

    t = time.perf_counter()
    scan(d0)
    warm_s = time.perf_counter() - t
    first = scan(d1)
    print(
        f"warm-up: scan of {d0:%Y-%m-%d} {warm_s:.1f} s ({len(cache)} models loaded), "
        f"then {d1:%Y-%m-%d}: {len(first.events)} position events, {len(first.active)} active"
    )

    wall, split, result, all_s = timed_scans(args.repeats, lambda st: scan(d1, st))
    plain_wall, _split, _plain, plain_s = timed_scans(
        args.repeats, lambda st: scan(d1, st, explain=False)
    )
    with mock.patch.object(scan_mod, "score_universe", score_one_at_a_time):
        base_wall, base_split, base, base_all = timed_scans(
            args.baseline_repeats, lambda st: scan(d1, st)
        )
    key = ["symbol", "horizon"]
    both = result.scores.merge(base.scores, on=key, suffixes=("", "_b"))
    diff = max(
        float(np.abs(both[f"p_{c}"] - both[f"p_{c}_b"]).max()) if len(both) else 0.0
        for c in ("buy", "hold", "sell")
    )
    same = (
        len(both) == len(result.scores) == len(base.scores)
        and sorted((s.key, s.side) for s in result.active)
        == sorted((s.key, s.side) for s in base.active)
        and result.failures == base.failures
    )

    n_pred = len(result.scores)
    print(f"\n{'measure':62s} {'figure':>12s}")
    label = f"scan, {result.n_symbols} symbols, {len(cache)} warm models, median of {args.repeats}"
    print(f"{label:62s} {wall:10.2f} s")
    for name, sec in split.items():
        print(f"{'  ' + name:62s} {sec:10.2f} s")
    print(f"{'  all runs':62s} {', '.join(f'{s:.2f}' for s in all_s):>12s}")
    label = f"baseline: one symbol at a time ({n_pred} 1-row predictions)"
    print(f"{label:62s} {base_wall:10.2f} s")
    print(f"{'  scoring stage':62s} {base_split.get('scoring', float('nan')):10.2f} s")
    if args.baseline_repeats > 1:
        print(f"{'  all runs':62s} {', '.join(f'{s:.2f}' for s in base_all):>12s}")
    print(f"{'  speed-up of the scan':62s} {base_wall / wall:10.1f} ×")
    print(f"{'  same scores, signals and failures (max |Δp|)':62s} {same!s:>5s} ({diff:.1e})")
    issued = sum(1 for s in result.active if s.signal_date == d1.date())
    overhead = wall / plain_wall - 1
    print(f"{'scan with / without explanations, median of ' + str(args.repeats):62s} ", end="")
    print(f"{wall:.2f} / {plain_wall:.2f} s")
    print(f"{'  all runs without':62s} {', '.join(f'{s:.2f}' for s in plain_s):>12s}")
    label = f"  explaining {issued} issued signals: median run's own time"
    print(f"{label:62s} {result.explain_seconds:10.2f} s")
    print(f"{'  added to the scan (target ≤ 20 %)':62s} {100 * overhead:10.1f} %")
    omp = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"{'  model threads: ModelCache / OMP_NUM_THREADS':62s} {cache.threads:>6d} / {omp}")
    print(f"{'  scored / failed symbols':62s} {result.n_scored:6d} / {len(result.failures):3d}")
    print(
        f"{'  written per scan: active signals / position events':62s} "
        f"{len(result.active):6d} / {len(result.events):3d}"
    )
    thr = result.thresholds
    print(
        f"{'  thresholds (' + args.threshold_mode + ')':62s} {thr['buy']:.3f} / {thr['sell']:.3f}"
    )
    if result.missing_models:
        print(f"missing models: {', '.join(result.missing_models)}")
    if args.models_from:
        distribution(result.scores, d1, settings)
    ok = wall <= TARGET_S and same and overhead <= EXPLAIN_OVERHEAD
    print(
        f"targets (scan ≤ {TARGET_S:.0f} s, baseline identical, explanations ≤ "
        f"{100 * EXPLAIN_OVERHEAD:.0f} %): {'met' if ok else 'MISSED'}"
    )
    store.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
