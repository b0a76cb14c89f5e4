"""Feast's Ray offline store (the production profile's) on a real two-node Ray gives the DuckDB
store's values: training sets joined point in time, and materialization into the online store.

The Ray store runs with the production profile's real Redis and PostgreSQL registry, so the
whole production path is exercised; the DuckDB reference is the local profile over the same
offline tables.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests import test_feature_store as feature_store_tests
from tests.test_feature_store import check_online_equals_offline
from turbomode import feature_store as fs
from turbomode.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
warnings.filterwarnings("ignore", category=DeprecationWarning)


features = feature_store_tests.features  # the market of the DuckDB and Redis round trips


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
    features: pd.DataFrame,
    ray_cluster: str,
    redis_url: str,
    postgres_url: str,
) -> Iterator[tuple[Settings, Any, Any]]:
    """(production settings, the Ray store, the DuckDB store) over one set of offline tables."""
    root = tmp_path_factory.mktemp("rayoff")
    settings = Settings(
        data={"data_dir": root},
        features={"profile": "production", "project": f"tm_ray_{uuid.uuid4().hex[:8]}"},
        stores={"redis_url": redis_url, "registry_sql_url": postgres_url},
        compute={"ray_address": ray_cluster},
    )
    fs.write_offline_tables(features, settings)
    ray_store = fs.apply(settings)
    local = settings.model_copy(deep=True)
    local.features.profile = "local"
    duck = fs.apply(local)
    try:
        yield settings, ray_store, duck
    finally:
        ray_store.teardown()


def entity_rows(features: pd.DataFrame) -> pd.DataFrame:
    """Every stored (symbol, date), a row repeated with another label, a weekend date (the
    Friday's values), a date before the first bar (nothing), a delisted symbol 5 and 10 days
    after its last bar (within and beyond the 7-day lookback) and an extra column."""
    rows = features[["symbol", "date"]].copy()
    rows["label"] = np.arange(len(rows)) % 3
    first = features["date"].min()
    friday = features.loc[features["date"].dt.dayofweek == 4, "date"].iloc[40]
    last = features.groupby("symbol")["date"].max()
    gone, end = last.idxmin(), last.min()
    assert end < features["date"].max() - pd.Timedelta(days=10)
    extra = pd.DataFrame(
        {
            "symbol": ["IT01", "IT01", "FN02", "IT01", gone, gone],
            "date": [
                friday,
                friday + pd.Timedelta(days=1),
                friday,
                first - pd.Timedelta(days=3),
                end + pd.Timedelta(days=5),
                end + pd.Timedelta(days=10),
            ],
            "label": [7, 8, 9, 10, 11, 12],
        }
    )
    return pd.concat([rows, extra], ignore_index=True).sample(frac=1.0, random_state=4)


def test_settings_pick_the_ray_store_for_production(stores) -> None:
    settings, ray_store, duck = stores
    config = ray_store.config.offline_store
    assert config.type == "turbomode.feast_ray.PointInTimeRayOfflineStore"
    assert config.ray_address == settings.compute.ray_address
    assert duck.config.offline_store.type == "duckdb"


@pytest.mark.parametrize("via", ["driver", "client"])
def test_training_frame_on_ray_equals_duckdb(
    stores, features, monkeypatch, request: pytest.FixtureRequest, via: str
) -> None:
    """The same rows, bit for bit, joined on the cluster: the driver joins the Ray at
    ``compute.ray_address`` for the join and leaves it after — as a driver of the cluster, or
    as a Ray Client (``ray://``, the chart's way), where the join runs as a task on the cluster;
    a client also materializes through the store."""
    import ray

    settings, ray_store, duck = stores
    if via == "client":
        settings = settings.model_copy(deep=True)
        settings.compute.ray_address = request.getfixturevalue("ray_client_address")
        ray_store = fs.open_store(settings)  # the same registry and project
    rows = entity_rows(features)
    reference = fs.training_frame(duck, rows)
    ray.shutdown()  # the fixture's driver connection: the join must open its own
    addresses: list[str | None] = []
    real_init = ray.init

    def init(*args: Any, **kwargs: Any) -> Any:
        addresses.append(kwargs.get("address"))
        return real_init(*args, **kwargs)

    monkeypatch.setattr(ray, "init", init)
    try:
        got = fs.training_frame(ray_store, rows)
        assert addresses == [settings.compute.ray_address]
        assert not ray.is_initialized()
        if via == "client":
            check_online_equals_offline(ray_store, settings, features)
    finally:
        monkeypatch.undo()
        if not ray.is_initialized():
            ray.init(address=stores[0].compute.ray_address, log_to_driver=False)
    pd.testing.assert_frame_equal(got, reference, check_exact=True)
    names = fs.FeatureLayout.from_registry().all
    assert got[names].notna().any(axis=None)
    by_label = got.set_index("label")
    assert by_label.loc[8, names].equals(by_label.loc[7, names])  # Saturday = Friday's bar
    assert by_label.loc[10, names].isna().all()  # before the first bar
    stock = fs.FeatureLayout.from_registry().stock
    assert by_label.loc[11, stock].notna().any()  # 5 days after the last bar: its values
    assert by_label.loc[12, stock].isna().all()  # 10 days: beyond the lookback
    stored = features.set_index(["symbol", "date"])[names].astype(np.float32)
    some = rows[rows["label"] < 3].head(200)
    np.testing.assert_array_equal(
        got.set_index(["symbol", "date"])
        .loc[pd.MultiIndex.from_frame(some[["symbol", "date"]]), names]
        .to_numpy(),
        stored.loc[pd.MultiIndex.from_frame(some[["symbol", "date"]])].to_numpy(),
    )


def test_materialization_through_ray_fills_redis(stores, features) -> None:
    settings, ray_store, _ = stores
    check_online_equals_offline(ray_store, settings, features)


def test_feast_call_on_ray_equals_duckdb_on_the_edges(stores, features) -> None:
    """Feast's own call, not through training_frame: duplicate (symbol, time) rows, a 64-bit
    id column that floats would round, both views in one call with full feature names, rows
    exactly at the 7-day bound and one microsecond past it — and an empty entity frame."""
    _, ray_store, duck = stores
    stock, market = (
        fs.FeatureLayout.from_registry().stock[:5],
        fs.FeatureLayout.from_registry().market[:3],
    )
    refs = [f"{fs.STOCK_VIEW}:{n}" for n in stock] + [f"{fs.MARKET_VIEW}:{n}" for n in market]
    last = features.groupby("symbol")["date"].max()
    gone, end = last.idxmin(), last.min()
    some = features[["symbol", "date"]].sample(300, random_state=5)
    times = [*some["date"], end + pd.Timedelta(days=7), end + pd.Timedelta(days=7, microseconds=1)]
    ent = pd.DataFrame(
        {
            "symbol": [*some["symbol"], gone, gone],
            fs.TS: pd.DatetimeIndex(times).tz_localize("UTC").as_unit("us"),
        }
    )
    ent = pd.concat([ent, ent.head(20)], ignore_index=True)  # repeated (symbol, time) rows
    ent["market"] = fs.MARKET_KEY
    ent["row_id"] = np.arange(len(ent), dtype=np.int64) + (2**53 + 1)

    def got(store: Any, rows: pd.DataFrame) -> pd.DataFrame:
        out = store.get_historical_features(entity_df=rows, features=refs, full_feature_names=True)
        return out.to_df().sort_values("row_id").reset_index(drop=True)

    a, b = got(ray_store, ent), got(duck, ent)
    assert a["row_id"].tolist() == b["row_id"].tolist() == ent["row_id"].tolist()
    assert a["row_id"].dtype == np.int64
    cols = [f"{fs.STOCK_VIEW}__{n}" for n in stock] + [f"{fs.MARKET_VIEW}__{n}" for n in market]
    np.testing.assert_array_equal(a[cols].to_numpy(np.float32), b[cols].to_numpy(np.float32))
    bound = pd.Timestamp(end, tz="UTC") + pd.Timedelta(days=7)
    by_time = a[a["symbol"] == gone].drop_duplicates(fs.TS).set_index(fs.TS)[cols[:5]]
    assert by_time.loc[bound].notna().any()  # 7 days after the last bar: still its values
    assert by_time.loc[bound + pd.Timedelta(microseconds=1)].isna().all()  # past the lookback
    empty = got(ray_store, ent.head(0))
    assert empty.empty and set(cols) <= set(empty.columns)
