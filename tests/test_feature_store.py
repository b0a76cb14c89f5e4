"""Feast round trips on both profiles: offline point-in-time reads equal the feature rows,
and online reads equal the newest offline row — local (DuckDB/SQLite) and production
(the machine's real Redis and PostgreSQL)."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from turbomode import feature_store as fs
from turbomode.config import Settings
from turbomode.data.sources.synthetic import generate_market
from turbomode.features.engine import build_features
from turbomode.features.registry import UnknownFeatureError

REPO = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    md = generate_market(Settings(synthetic={"n_symbols": 22, "n_days": 320}).synthetic)
    return build_features(md.prices, md.market, md.universe.sector_map()).frame


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, features: pd.DataFrame):
    settings = Settings(data={"data_dir": tmp_path_factory.mktemp("feast")})
    fs.write_offline_tables(features, settings)
    store = fs.apply(settings, "local")
    return settings, store


def newest_rows(features: pd.DataFrame) -> pd.DataFrame:
    return features.sort_values("date").groupby("symbol").tail(1).set_index("symbol")


def check_online_equals_offline(store, settings: Settings, features: pd.DataFrame) -> None:
    fs.materialize(store, settings)
    names = fs.FeatureLayout.from_registry().all
    newest = newest_rows(features)
    online = fs.online_vectors(store, newest.index.tolist()).set_index("symbol")
    current = newest["date"] == features["date"].max()
    np.testing.assert_array_equal(
        online.loc[current, names].to_numpy(), newest.loc[current, names].to_numpy(dtype=np.float32)
    )
    # A delisted symbol's last bar is older than the materialization window: nothing online,
    # so a scan reports it instead of scoring stale features.
    assert (~current).sum() == 1
    assert online.loc[~current, names].isna().all(axis=None)


def test_local_online_read_equals_newest_offline_row(local, features) -> None:
    settings, store = local
    check_online_equals_offline(store, settings, features)


def test_materialize_is_incremental_and_idempotent(local, features, monkeypatch) -> None:
    from turbomode.job_metrics import JobMetrics

    pushed: list[float] = []

    def capture(self: JobMetrics, gateway: str | None) -> bool:
        gauge = self.gauge("turbomode_features_latest_timestamp_seconds")
        pushed.append(gauge._value.get())
        return False

    monkeypatch.setattr(JobMetrics, "push", capture)
    settings, store = local
    first = fs.materialize(store, settings)
    newest = pd.Timestamp(features["date"].max()).date()
    close = pd.Timestamp(f"{newest} 16:00", tz="America/New_York").timestamp()
    assert pushed == [close]  # what the stale-features alert watches: that bar's close
    before = fs.online_vectors(store, sorted(features["symbol"].unique()))
    second = fs.materialize(store, settings)
    after = fs.online_vectors(store, sorted(features["symbol"].unique()))
    pd.testing.assert_frame_equal(before, after)
    assert second[1] == first[1]


def test_unknown_symbol_comes_back_empty_not_failing(local) -> None:
    settings, store = local
    fs.materialize(store, settings)
    out = fs.online_vectors(store, ["IT01", "NOPE"]).set_index("symbol")
    assert out.loc["NOPE"].isna().all()
    assert out.loc["IT01"].notna().sum() > 100


def test_training_frame_is_point_in_time(local, features) -> None:
    _settings, store = local
    names = fs.FeatureLayout.from_registry().all
    sample = features[["symbol", "date"]].sample(400, random_state=1).reset_index(drop=True)
    sample["label"] = np.arange(len(sample)) % 3  # extra columns ride along, untouched
    out = fs.training_frame(store, sample)
    assert out[["symbol", "date", "label"]].equals(sample)
    expected = features.set_index(["symbol", "date"]).loc[
        pd.MultiIndex.from_frame(sample[["symbol", "date"]]), names
    ]
    np.testing.assert_array_equal(out[names].to_numpy(), expected.to_numpy(dtype=np.float32))

    # A Saturday gets Friday's features; a date before the symbol's history gets nothing.
    friday = features["date"][features["date"].dt.dayofweek == 4].iloc[-1]
    probe = pd.DataFrame(
        {
            "symbol": ["IT01", "IT01"],
            "date": [friday + pd.Timedelta(days=1), pd.Timestamp("2000-01-03")],
        }
    )
    got = fs.training_frame(store, probe)
    want = features[(features["symbol"] == "IT01") & (features["date"] == friday)][names]
    np.testing.assert_array_equal(
        got.loc[0, names].to_numpy(dtype=np.float32), want.to_numpy(dtype=np.float32)[0]
    )
    assert got.loc[1, names].isna().all()


def test_unknown_feature_name_is_an_error(local) -> None:
    _settings, store = local
    with pytest.raises(UnknownFeatureError, match="rsi_99"):
        fs.training_frame(
            store,
            pd.DataFrame({"symbol": ["IT01"], "date": [pd.Timestamp("2019-01-02")]}),
            ["rsi_99"],
        )


def test_missing_registry_columns_are_named(features, tmp_path: Path) -> None:
    with pytest.raises(fs.FeatureStoreError, match="lacks"):
        fs.write_offline_tables(
            features.drop(columns=[features.columns[5]]), Settings(data={"data_dir": tmp_path})
        )


def test_checked_in_yaml_matches_the_code_profiles(tmp_path: Path) -> None:
    settings = Settings(data={"data_dir": tmp_path})
    for fname, profile in (
        ("feature_store.yaml", "local"),
        ("feature_store.production.yaml", "production"),
    ):
        text = yaml.safe_load((REPO / "feature_repo" / fname).read_text())
        cfg = fs.repo_config(settings, profile)
        assert text["project"] == cfg.project
        assert text["online_store"]["type"] == cfg.online_store.type
        assert text["offline_store"]["type"] == cfg.offline_store.type
        for key, value in text["offline_store"].items():
            if key != "storage_path":  # relative to feature_repo/ in the file
                assert getattr(cfg.offline_store, key) == value, key
        assert text["entity_key_serialization_version"] == cfg.entity_key_serialization_version
    assert fs.repo_config(settings, "local").offline_store.type == "duckdb"
    settings.features.offline_store = "duckdb"
    assert fs.repo_config(settings, "production").offline_store.type == "duckdb"
    prod = yaml.safe_load((REPO / "feature_repo" / "feature_store.production.yaml").read_text())
    assert prod["registry"]["path"] == settings.stores.registry_sql_url
    assert prod["online_store"]["connection_string"] == fs.redis_connection_string(
        settings.stores.redis_url
    )


def test_redis_url_conversion() -> None:
    assert fs.redis_connection_string("redis://127.0.0.1:6379/3") == "127.0.0.1:6379,db=3"
    assert (
        fs.redis_connection_string("rediss://:pw@cache:6380")
        == "cache:6380,db=0,password=pw,ssl=true"
    )
    with pytest.raises(fs.FeatureStoreError, match="not a redis URL"):
        fs.redis_connection_string("http://x")


@pytest.mark.integration
def test_production_profile_on_real_redis_and_postgres(
    tmp_path: Path, features: pd.DataFrame, redis_url: str, postgres_url: str
) -> None:
    settings = Settings(
        data={"data_dir": tmp_path},
        features={
            "profile": "production",
            "project": f"tm_test_{uuid.uuid4().hex[:8]}",
            # the Ray offline store is tested on a real two-node Ray (test_ray_offline_store)
            "offline_store": "duckdb",
        },
        stores={"redis_url": redis_url, "registry_sql_url": postgres_url},
    )
    fs.write_offline_tables(features, settings)
    store = fs.apply(settings)
    try:
        assert store.config.online_store.type == "redis"
        assert {v.name for v in store.list_feature_views()} >= {
            fs.STOCK_VIEW,
            fs.MARKET_VIEW,
            fs.VECTOR_VIEW,
        }
        check_online_equals_offline(store, settings, features)
        sample = features[["symbol", "date"]].sample(50, random_state=2).reset_index(drop=True)
        out = fs.training_frame(store, sample)
        assert len(out) == 50 and out.iloc[:, 2:].notna().any(axis=None)
    finally:
        store.teardown()


def test_stale_definitions_are_named(features, tmp_path: Path) -> None:
    settings = Settings(data={"data_dir": tmp_path})
    fs.write_offline_tables(features, settings)
    store = fs.open_store(settings, "local")
    ent = pd.DataFrame({"symbol": ["IT01"], "date": [pd.Timestamp("2019-01-02")]})
    with pytest.raises(fs.FeatureStoreError, match="not registered"):
        fs.training_frame(store, ent)
    layout = fs.FeatureLayout.from_registry()
    old = fs.FeatureLayout(stock=layout.stock[:-3], market=layout.market)
    store.apply(fs.definitions(settings, old))
    with pytest.raises(fs.FeatureStoreError, match="predates 3 registry feature"):
        fs.training_frame(store, ent)


def test_block_tables_then_nights_fold_without_reading_the_blocks(
    features: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tables written block by block (as a Ray build's blocks write them) take nightly parts;
    past MAX_PARTS the nights fold into one base part beside the blocks, which are linked, not
    rewritten — and the table reads back as every row once."""
    settings = Settings(data={"data_dir": tmp_path})
    layout = fs.FeatureLayout.from_registry()
    dates = sorted(features["date"].unique())
    history = features[features["date"] < dates[-4]]
    symbols = sorted(history["symbol"].unique())
    sink = fs.BlockTables.open(settings, layout)
    for k, block in enumerate((symbols[:9], symbols[9:])):
        sink(history[history["symbol"].isin(block)].reset_index(drop=True), k)
    sink.commit(settings)
    stock = fs.view_table(settings, fs.STOCK_VIEW)
    inode = (stock / "base-00000.parquet").stat().st_ino
    monkeypatch.setattr(fs, "MAX_PARTS", 2)
    for day in dates[-4:]:
        night = features[features["date"] == day].reset_index(drop=True)
        fs.write_offline_tables(night, settings, layout, keep_before=pd.Timestamp(day))
    names = sorted(p.name for p in stock.iterdir())
    first, third, last = (
        pd.Timestamp(d).strftime("%Y-%m-%d") for d in (dates[-4], dates[-2], dates[-1])
    )
    assert names == [
        "base-00000.parquet",
        "base-00001.parquet",
        f"base-nights-{first}-{third}.parquet",
        f"part-{last}.parquet",
    ]
    assert (stock / "base-00000.parquet").stat().st_ino == inode  # linked, never rewritten
    for view in (fs.STOCK_VIEW, fs.VECTOR_VIEW, fs.MARKET_VIEW):
        key = ["market" if view == fs.MARKET_VIEW else "symbol", fs.TS]
        got = pq.read_table(fs.view_table(settings, view)).to_pandas().drop(columns=fs.CREATED)
        if view == fs.MARKET_VIEW:
            got = got.drop_duplicates(key)  # each block writes the market rows of its dates
        assert not got.duplicated(key).any()
        assert len(got) == (features["date"].nunique() if view == fs.MARKET_VIEW else len(features))
