"""Feast benchmark: point-in-time training-set retrieval and the batch online read.

On the last 7 years of ../shared/data (about 500 symbols):
* training-set retrieval through Feast (``get_historical_features``, DuckDB offline store) of a
  10 % sample of all (symbol, date) rows, beside the same join done directly with
  ``pandas.merge_asof`` (by symbol, 7-day tolerance, plus the market-context join) — target:
  within 3× of merge_asof;
* the online read of the newest vector of every symbol from SQLite (target ≤ 50 ms), median of
  20 warm reads, beside the same read as per-feature scalar rows.

* the same training set through the production profile's offline store, Feast's Ray store
  with its point-in-time join replaced (``turbomode.feast_ray``), on a local Ray of this
  machine's cores — cold (the first join of the session: workers start, modules load) and warm —
  and, when pyspark is importable (it is not a project dependency: ``pip install --target DIR
  pyspark`` and ``PYTHONPATH=DIR``), through Feast's Spark offline store in ``local[N]`` mode,
  cold and warm: the measurement behind the choice of Ray (README "Feast"). Both must equal
  DuckDB's values.

Usage: python benchmarks/bench_feature_store.py [DATA_DIR] [--years 7] [--stores duckdb ray spark]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore")


def merge_asof_baseline(
    features: pd.DataFrame, entities: pd.DataFrame, stock: list[str], market: list[str]
) -> pd.DataFrame:
    """The direct pandas point-in-time join a competent engineer would write."""
    ent = entities.sort_values("date")
    left = pd.merge_asof(
        ent,
        features[["symbol", "date", *stock]].sort_values("date"),
        on="date",
        by="symbol",
        tolerance=pd.Timedelta(days=7),
        direction="backward",
    )
    by_date = features[["date", *market]].drop_duplicates("date").sort_values("date")
    return pd.merge_asof(left, by_date, on="date", tolerance=pd.Timedelta(days=7))


def other_store(
    kind: str, settings: object, entities: pd.DataFrame, names: list[str], reference: pd.DataFrame
) -> dict[str, object]:
    """The training set through the Ray or the Spark offline store over the same tables:
    seconds cold and warm, start-up apart, and whether the values equal DuckDB's."""
    import os

    from turbomode import feature_store as fs
    from turbomode.config import Settings

    assert isinstance(settings, Settings)
    other = settings.model_copy(deep=True)
    other.data.data_dir = Path(tempfile.mkdtemp(prefix=f"bench_fs_{kind}_"))
    (fs.feast_dir(other)).mkdir(parents=True, exist_ok=True)
    (fs.feast_dir(other) / "offline").symlink_to(fs.feast_dir(settings) / "offline")
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    if kind == "ray":
        import ray

        other.features.offline_store = "ray"
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        store = fs.apply(other, "local")
    elif kind == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError:
            return {"skipped": "pyspark is not importable"}
        store = spark_store(other, cores)
    else:
        raise ValueError(f"unknown store {kind!r}")
    start = time.perf_counter() - t
    got: dict[str, object] = {"start": start}
    for run in ("cold", "warm"):
        t = time.perf_counter()
        frame = fs.training_frame(store, entities, names)
        got[run] = time.perf_counter() - t
    key = ["symbol", "date"]
    a = frame.sort_values(key)[names].to_numpy(dtype=np.float32)
    b = reference.sort_values(key)[names].to_numpy(dtype=np.float32)
    got["same"] = bool(np.array_equal(a, b, equal_nan=True))
    if kind == "ray":
        import ray

        ray.shutdown()
    return got


def spark_store(settings: object, cores: int) -> object:
    """Feast's Spark offline store in local mode over the same parquet tables (SparkSource
    views; everything else as the project's definitions)."""
    from feast import FeatureStore
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.repo_config import RepoConfig

    from turbomode import feature_store as fs
    from turbomode.config import Settings

    assert isinstance(settings, Settings)
    base = fs.repo_config(settings, "local")
    config = RepoConfig(
        project=base.project,
        provider="local",
        registry=str(fs.feast_dir(settings) / "registry.db"),
        online_store={"type": "sqlite", "path": str(fs.feast_dir(settings) / "online.db")},
        offline_store={
            "type": "spark",
            "spark_conf": {
                "spark.master": f"local[{cores}]",
                "spark.driver.memory": "8g",
                "spark.sql.session.timeZone": "UTC",
                "spark.ui.enabled": "false",
            },
        },
        entity_key_serialization_version=3,
        repo_path=str(fs.feast_dir(settings)),
    )
    objects = fs.definitions(settings)
    for obj in objects:
        source = getattr(obj, "batch_source", None)
        if source is not None:
            obj.batch_source = SparkSource(
                name=source.name,
                path=str(Path(source.path).parent if "*" in source.path else source.path),
                file_format="parquet",
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column,
            )
    store = FeatureStore(config=config)
    store.apply(objects)
    return store


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--years", type=int, default=7)
    ap.add_argument("--sample", type=float, default=0.10)
    ap.add_argument("--stores", nargs="*", default=["duckdb", "ray", "spark"])
    args = ap.parse_args()

    from turbomode import feature_store as fs
    from turbomode.config import Settings
    from turbomode.data.ingest import validate_market_data
    from turbomode.data.sources.files import FileSource
    from turbomode.features.engine import build_features

    if not Path(args.data, "prices.parquet").exists():
        print(f"no prices.parquet in {args.data}", file=sys.stderr)
        return 2
    settings = Settings(data={"data_dir": tempfile.mkdtemp(prefix="bench_fs_")})
    end = pd.Timestamp("2024-06-28")
    start = end - pd.DateOffset(years=args.years)
    md = FileSource(args.data, settings).load(start=start - pd.DateOffset(years=1), end=end)
    prices, market = validate_market_data(md, settings)
    result = build_features(prices.clean, market.clean, md.universe.sector_map())
    feats = result.frame[result.frame["date"] >= start].reset_index(drop=True)
    layout = fs.FeatureLayout.from_registry()
    training = fs.FeatureLayout.from_registry(fs.model_features(settings))  # what models read
    print(
        f"feature rows: {len(feats):,} × {len(layout.all)} features "
        f"({len(training.all)} in a training set), {feats['symbol'].nunique()} symbols"
    )

    t = time.perf_counter()
    fs.write_offline_tables(feats, settings, layout)
    store = fs.apply(settings, "local")
    print(f"write offline tables + apply: {time.perf_counter() - t:.1f} s")

    entities = feats[["symbol", "date"]].sample(frac=args.sample, random_state=0)
    t = time.perf_counter()
    via_feast = fs.training_frame(store, entities, training.all)
    feast_s = time.perf_counter() - t
    t = time.perf_counter()
    baseline = merge_asof_baseline(feats, entities, training.stock, training.market)
    asof_s = time.perf_counter() - t
    key = ["symbol", "date"]
    a = via_feast.sort_values(key)[training.all].to_numpy(dtype=np.float32)
    b = baseline.sort_values(key)[training.all].to_numpy(dtype=np.float32)
    same = bool(np.array_equal(a, b, equal_nan=True))

    t = time.perf_counter()
    fs.materialize(store, settings)
    mat_s = time.perf_counter() - t
    symbols = sorted(feats.loc[feats["date"] == feats["date"].max(), "symbol"])
    fs.online_vectors(store, symbols)  # warm: registry and connection
    reads = []
    for _ in range(20):
        t = time.perf_counter()
        fs.online_vectors(store, symbols, layout)
        reads.append(time.perf_counter() - t)
    online_ms = statistics.median(reads) * 1000

    others = {}
    for kind in [k for k in args.stores if k != "duckdb"]:
        others[kind] = other_store(kind, settings, entities, training.all, via_feast)

    ratio = feast_s / asof_s
    print()
    print(f"{'measure':58s} {'figure':>12s}")
    print(f"{'training set via Feast get_historical_features':58s} {feast_s:10.2f} s")
    print(f"{'baseline: pandas.merge_asof, same rows':58s} {asof_s:10.2f} s")
    print(f"{'  ratio (target ≤ 3×)':58s} {ratio:10.1f} ×")
    print(f"{'  identical values':58s} {same!s:>12s}")
    print(f"{'  entity rows':58s} {len(entities):12,d}")
    print(f"{'materialize (first window)':58s} {mat_s:10.2f} s")
    print(
        f"{f'online read, {len(symbols)} symbols, median of 20 (target ≤ 50 ms)':58s} "
        f"{online_ms:9.1f} ms"
    )
    for kind, got in others.items():
        if "skipped" in got:
            print(f"{kind + ' offline store':58s} {'skipped':>12s}  ({got['skipped']})")
            continue
        print(
            f"{kind + ' offline store, cold / warm':58s} {got['cold']:5.2f} / {got['warm']:.2f} s"
        )
        print(f"{'  start-up (not in the figures)':58s} {got['start']:10.2f} s")
        print(f"{'  identical to DuckDB':58s} {got['same']!s:>12s}")
    ok = ratio <= 3 and online_ms <= 50 and same
    ok = ok and all(got.get("same", True) for got in others.values())
    print(f"targets: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
