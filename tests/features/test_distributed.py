"""The Ray feature build gives the single-process engine's values: the block decomposition in
process (fast, several splits), and the real thing on a two-node Ray.

The cluster (``ray_cluster``, tests/ray_cluster.py) is a head and a worker node on this
machine, so blocks really run on both nodes and move through the object store between them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.features.conftest import synthetic_market
from turbomode.config import Settings, SyntheticSettings
from turbomode.data.sources.synthetic import generate_market
from turbomode.features.distributed import build_features_ray, read_parts, use_ray
from turbomode.features.engine import build_features


@pytest.mark.integration
@pytest.mark.slow
def test_ray_build_equals_engine_on_the_synthetic_market(ray_cluster: str, tmp_path: Path) -> None:
    """Full registry, float32, macro series, listings and a delisting: the same bits, and the
    written parts read back as the same frame."""
    md = generate_market(SyntheticSettings(n_symbols=30, n_days=300))
    sectors = md.universe.sector_map()
    local = build_features(md.prices, md.market, sectors, macro=md.macro)
    out = str(tmp_path / "features")
    got = build_features_ray(
        md.prices, md.market, sectors, macro=md.macro, out=out, symbol_blocks=4, date_blocks=3
    )
    pd.testing.assert_frame_equal(got.frame, local.frame, check_exact=True)
    pd.testing.assert_frame_equal(read_parts(out), local.frame, check_exact=True)
    parts = sorted(p.name for p in Path(out).iterdir())
    assert parts == [f"symbol_block={k:05d}" for k in range(4)]
    assert got.report.nan_share == local.report.nan_share
    assert got.report.short_history == local.report.short_history
    assert got.report.missing_macro == local.report.missing_macro


@pytest.mark.integration
@pytest.mark.slow
def test_ray_build_without_collecting(ray_cluster: str, tmp_path: Path) -> None:
    """A subset in float64, an unmapped symbol, a short history and a VIX gap, left in the
    parts only (how a universe larger than the driver is built)."""
    prices, market, sectors = synthetic_market(n_symbols=13, n_days=300, seed=3)
    sectors.pop("S05")
    names = ["ret_5", "rsi_14", "beta_spy_60", "cs_rank_ret_5", "sector_rank_ret_20",
             "sector_rel_ret_1", "breadth_sma_50", "rs_sector_20", "month_end_window"]  # fmt: skip
    local = build_features(prices, market, sectors, features=names, dtype=np.float64)
    out = str(tmp_path / "subset")
    got = build_features_ray(
        prices, market, sectors, features=names, dtype=np.float64, out=out,
        symbol_blocks=3, date_blocks=5, collect=False,
    )  # fmt: skip
    assert got.frame.empty
    pd.testing.assert_frame_equal(read_parts(out), local.frame, check_exact=True)
    assert got.report.unmapped_symbols == ["S05"]
    assert got.report.nan_share == local.report.nan_share


@pytest.mark.parametrize(("symbol_blocks", "date_blocks"), [(1, 1), (4, 3), (12, 1), (2, 320)])
def test_blocks_in_process_equal_the_engine(symbol_blocks: int, date_blocks: int) -> None:
    """The decomposition itself, without Ray: one block, uneven blocks, one symbol a block,
    one date a block — the same bits every way (a short symbol and a VIX gap included)."""
    prices, market, sectors = synthetic_market(n_symbols=12, n_days=320, seed=1)
    local = build_features(prices, market, sectors)
    got = build_features_ray(
        prices, market, sectors, symbol_blocks=symbol_blocks, date_blocks=date_blocks,
        in_process=True,
    )  # fmt: skip
    pd.testing.assert_frame_equal(got.frame, local.frame, check_exact=True)
    assert got.report.nan_share == local.report.nan_share


def test_engine_setting_picks_ray_from_the_measured_size() -> None:
    s = Settings()
    s.features.ray_min_symbols = 2000
    assert not use_ray(s, 1999)
    assert use_ray(s, 2000)
    s.features.engine = "local"
    assert not use_ray(s, 20_000)
    s.features.engine = "ray"
    assert use_ray(s, 10)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("via", ["driver", "client"])
def test_ray_build_writes_the_offline_tables_where_the_blocks_run(
    ray_cluster: str, tmp_path: Path, request: pytest.FixtureRequest, via: str
) -> None:
    """`features build` on Ray: each block writes its part of the three offline tables (no
    process collects the frame); the tables equal a one-process build's, and the next night's
    increment extends them — from a driver of the cluster, or from a Ray Client (``ray://``,
    how the chart's jobs join the RayCluster), which starts and leaves its own session."""
    import pyarrow.parquet as pq
    import ray

    from turbomode import feature_store as fs
    from turbomode.data.ingest import ingest
    from turbomode.data.sources.synthetic import SyntheticSource

    small = {"synthetic": {"n_symbols": 11, "n_days": 700}}
    local = Settings(data={"data_dir": tmp_path / "local"}, features={"engine": "local"}, **small)
    on_ray = Settings(
        data={"data_dir": tmp_path / "ray"},
        features={"engine": "ray"},
        compute={"ray_address": ray_cluster},
        **small,
    )
    if via == "client":
        on_ray.compute.ray_address = request.getfixturevalue("ray_client_address")
        ray.shutdown()  # the fixture's driver: the build opens (and closes) the client session
        request.addfinalizer(
            lambda: ray.is_initialized() or ray.init(address=ray_cluster, log_to_driver=False)
        )
    dates = sorted(SyntheticSource(local).load().prices["date"].unique())
    for s in (local, on_ray):
        ingest(s, end=dates[-2])
        report, _ = fs.build(s, full=True)
        assert report.mode == "full" and report.n_rows > 0
    parts = sorted(p.name for p in fs.view_table(on_ray, fs.STOCK_VIEW).iterdir())
    assert len(parts) > 1 and all(p.startswith("base-") for p in parts)
    for view in (fs.VECTOR_VIEW, fs.STOCK_VIEW, fs.MARKET_VIEW):
        key = ["market" if view == fs.MARKET_VIEW else "symbol", fs.TS]
        a, b = (
            pq.read_table(fs.view_table(s, view)).to_pandas().drop(columns=fs.CREATED)
            for s in (local, on_ray)
        )
        if view == fs.MARKET_VIEW:  # a Ray build writes a date's market row once per block
            b = b.drop_duplicates(key)
        a, b = (f.sort_values(key).reset_index(drop=True) for f in (a, b))
        if view == fs.VECTOR_VIEW:
            assert a[key].equals(b[key])
            np.testing.assert_array_equal(
                np.vstack(a[fs.VECTOR_FEATURE]), np.vstack(b[fs.VECTOR_FEATURE])
            )
        else:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    ingest(on_ray, end=dates[-1])  # the next night: one more bar, appended by the increment
    report, _ = fs.build(on_ray)
    assert report.mode == "incremental" and report.n_dates == 1
    assert (
        fs.view_table(on_ray, fs.STOCK_VIEW) / f"part-{pd.Timestamp(dates[-1]):%Y-%m-%d}.parquet"
    ).exists()
