"""The Feast feature store: offline tables, definitions, materialization and the two reads
that training and scanning use.

Layout (definitions are generated from the feature registry, never from a second list):

* ``stock_features`` — every non-market feature, entity ``symbol``; offline only: the source of
  point-in-time training sets.
* ``market_context`` — the market and macro groups (VIX, SPY/QQQ/IWM…, macro series as known
  on each date), entity ``market`` with the single key ``US``. Feast's entity-less views
  cannot be read online in this Feast version, so the market is an entity with one row per
  date.
* ``stock_vector`` — the model's whole feature vector (stock and market features, registry
  order) packed into one ``Array(Float32)`` per symbol and date, online. Feast stores one
  online row per feature value; a packed vector turns a 500-symbol × 180-feature read from
  90,000 rows into 500 (≈ 30 ms instead of ≈ 300 ms on SQLite).

TTLs: the online vector view uses ``ttl=0`` because Feast checks an online TTL against the
wall clock, which would expire a backtest's history. The offline views use a short lookback
(``features.offline_ttl_days``, 7 calendar days): a point-in-time join takes the latest row in
[t − ttl, t], which is point-in-time correct, treats a symbol silent for a week as missing, and
bounds the join (with no TTL the DuckDB join scans each symbol's whole history per entity row:
5,000 rows took 17 s instead of about 1 s).

Profiles: ``local`` (DuckDB offline store over parquet, SQLite online store, file registry)
and ``production`` (Redis online store, PostgreSQL SQL registry; offline tables stay parquet
here and move to a distributed offline store on a cluster).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from turbomode.config import Settings
from turbomode.errors import TurboModeError
from turbomode.io import atomic_path
from turbomode.logs import event
from turbomode.workspace import Workspace

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

log = logging.getLogger("turbomode.feature_store")

STOCK_VIEW = "stock_features"
MARKET_VIEW = "market_context"
VECTOR_VIEW = "stock_vector"
VECTOR_FEATURE = "vector"
MARKET_KEY = "US"
TS = "event_timestamp"
CREATED = "created_timestamp"
Profile = Literal["local", "production"]


class FeatureStoreError(TurboModeError):
    """The feature store is missing something a caller needs (not built, not materialized)."""


@dataclass(frozen=True)
class FeatureLayout:
    """Which registry features go to which view, in registry order."""

    stock: list[str]
    market: list[str]

    @property
    def all(self) -> list[str]:
        """The model's feature vector order: the registry's order."""
        from turbomode.features.registry import REGISTRY

        wanted = set(self.stock) | set(self.market)
        return [n for n in REGISTRY.names() if n in wanted]

    @classmethod
    def from_registry(cls, names: Sequence[str] | None = None) -> FeatureLayout:
        from turbomode.features.registry import REGISTRY, select_features

        chosen = select_features(names)
        market = set(REGISTRY.names("market")) | set(REGISTRY.names("macro"))
        return cls(
            stock=[n for n in chosen if n not in market],
            market=[n for n in chosen if n in market],
        )


def model_features(settings: Settings) -> list[str]:
    """The models' feature list, in vector order: the registry without the macro group unless
    ``macro.in_models`` (see :func:`turbomode.features.registry.model_feature_names`)."""
    from turbomode.features.registry import model_feature_names

    return model_feature_names(settings.macro.in_models)


def require_macro_values(data: pd.DataFrame, names: Sequence[str]) -> None:
    """Fail when the models are to read macro features that hold no value at all: training on
    an all-NaN group would quietly change the models, not use macro context."""
    from turbomode.features.registry import REGISTRY

    macro = [n for n in names if n in set(REGISTRY.names("macro"))]
    if macro and len(data) and bool(data[macro].isna().all(axis=None)):
        raise FeatureStoreError(
            "macro.in_models is on but the training set holds no macro values: ingest macro "
            "series (`turbomode ingest --source fred`, or macro.source: fred) and rebuild the "
            "features, or set macro.in_models: false"
        )


# ---- configuration ---------------------------------------------------------------------------


def feast_dir(settings: Settings) -> Path:
    return Workspace.of(settings).feast_dir


def redis_connection_string(url: str) -> str:
    """Feast wants ``host:port,db=N[,password=…]`` rather than a redis:// URL."""
    u = urlparse(url)
    if u.scheme not in ("redis", "rediss"):
        raise FeatureStoreError(f"not a redis URL: {url!r}")
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"]
    db = (u.path or "/0").lstrip("/") or "0"
    parts.append(f"db={db}")
    if u.password:
        parts.append(f"password={u.password}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


# Importing Feast turns every DeprecationWarning on (``simplefilter("once")``); these come from
# the libraries under it, are about their APIs, and are nothing a TurboMode user can act on.
DEPENDENCY_WARNINGS = (r"fetch_arrow_table\(\) is deprecated",)


def quiet_dependency_warnings() -> None:
    """Hide :data:`DEPENDENCY_WARNINGS`; called after Feast is imported, which would undo it."""
    for message in DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)


def repo_config(settings: Settings, profile: Profile | None = None) -> RepoConfig:
    """The RepoConfig for a profile, built from settings (the YAML files in ``feature_repo/``
    are the same configuration for the ``feast`` command line)."""
    from feast.repo_config import RepoConfig

    quiet_dependency_warnings()
    profile = profile or settings.features.profile
    root = feast_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    online: dict[str, Any]
    registry: Any
    if profile == "local":
        online = {"type": "sqlite", "path": str(root / "online.db")}
        registry = str(root / "registry.db")
    elif profile == "production":
        online = {
            "type": "redis",
            "connection_string": redis_connection_string(settings.stores.redis_url),
        }
        registry = {
            "registry_type": "sql",
            "path": settings.stores.registry_sql_url,
            "cache_ttl_seconds": 60,
            "sqlalchemy_config_kwargs": {"pool_pre_ping": True},
        }
    else:
        raise FeatureStoreError(
            f"unknown feature store profile {profile!r}; use local or production"
        )
    return RepoConfig(
        project=settings.features.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store=offline_store_config(settings, profile),
        entity_key_serialization_version=3,
        repo_path=str(root),
    )


def offline_store_kind(settings: Settings, profile: Profile | None = None) -> str:
    """``duckdb`` or ``ray``: what ``features.offline_store`` means for ``profile``."""
    kind = settings.features.offline_store
    if kind == "auto":
        return "ray" if (profile or settings.features.profile) == "production" else "duckdb"
    return kind


def offline_store_config(settings: Settings, profile: Profile | None = None) -> dict[str, Any]:
    """Feast's ``offline_store`` section: DuckDB in this process, or Feast's Ray offline store
    (its point-in-time join replaced: turbomode.feast_ray) on the Ray the jobs share
    (``compute.ray_address``; None: a local Ray)."""
    if offline_store_kind(settings, profile) == "duckdb":
        return {"type": "duckdb"}
    from turbomode.feast_ray import STORE_TYPE

    return {
        "type": STORE_TYPE,
        "storage_path": settings.features.ray_staging or str(feast_dir(settings) / "ray_staging"),
        "ray_address": settings.compute.ray_address,
    }


def open_store(settings: Settings, profile: Profile | None = None) -> FeatureStore:
    from feast import FeatureStore

    return FeatureStore(config=repo_config(settings, profile))


# ---- offline tables --------------------------------------------------------------------------


def _timestamps(dates: pd.Series | np.ndarray) -> pa.Array:
    # Microsecond UTC: DuckDB cannot cast nanosecond tz-aware timestamps.
    return pa.array(pd.DatetimeIndex(dates).tz_localize("UTC").as_unit("us"))


def _offline_tables(features: pd.DataFrame, layout: FeatureLayout) -> dict[str, pa.Table]:
    """The Arrow tables of the three views for a feature frame."""
    created = pa.array(np.full(len(features), datetime.now(UTC)), type=pa.timestamp("us", tz="UTC"))
    ts = _timestamps(features["date"])
    stock = {
        "symbol": pa.array(features["symbol"].astype(str).to_numpy()),
        TS: ts,
        CREATED: created,
        **{n: pa.array(features[n].to_numpy(dtype=np.float32)) for n in layout.stock},
    }
    by_date = features.drop_duplicates("date").sort_values("date")
    market = {
        "market": pa.array(np.full(len(by_date), MARKET_KEY)),
        TS: _timestamps(by_date["date"]),
        CREATED: pa.array(
            np.full(len(by_date), datetime.now(UTC)), type=pa.timestamp("us", tz="UTC")
        ),
        **{n: pa.array(by_date[n].to_numpy(dtype=np.float32)) for n in layout.market},
    }
    matrix = np.ascontiguousarray(features[layout.all].to_numpy(dtype=np.float32))
    n_feat = matrix.shape[1]
    offsets = pa.array(np.arange(0, matrix.size + 1, n_feat, dtype=np.int32))
    vector = {
        "symbol": stock["symbol"],
        TS: ts,
        CREATED: created,
        VECTOR_FEATURE: pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1))),
    }
    return {
        STOCK_VIEW: pa.table(stock),
        MARKET_VIEW: pa.table(market),
        VECTOR_VIEW: pa.table(vector),
    }


ROW_GROUP = 64_000
"""Rows per parquet row group. Tables are written in date order, so a read of a few dates
(the increment's check, a back-dated scan) decompresses only the row groups that hold them."""

MAX_PARTS = 40
"""Nightly parts a view's table may hold before they are folded into one base part."""


def view_table(settings: Settings, view: str) -> Path:
    """A view's offline table: a directory of parquet parts (``base*.parquet`` from the last
    full build, one ``part-<date>.parquet`` per nightly increment since), read as one dataset."""
    return feast_dir(settings) / "offline" / f"{view}.parquet"


def _by_date(table: pa.Table) -> pa.Table:
    entity = "symbol" if "symbol" in table.column_names else "market"
    return table.sort_by([(TS, "ascending"), (entity, "ascending")])


def _replace_dir(target: Path, table: pa.Table) -> None:
    """Write ``table`` as the only part of ``target``: built beside it, then swapped in."""
    fresh = _fresh_dir(target)
    _write_part(table, fresh / "base.parquet")
    _swap_in(target, fresh)


def _write_part(table: pa.Table, path: Path | str) -> None:
    """One part of a view's table: in date order, in row groups a few dates' read can pick."""
    pq.write_table(_by_date(table), path, compression="zstd", row_group_size=ROW_GROUP)


def _fresh_dir(target: Path) -> Path:
    import uuid

    fresh = target.with_name(f".{target.name}.{uuid.uuid4().hex}.new")
    fresh.mkdir(parents=True)
    return fresh


def _swap_in(target: Path, fresh: Path) -> None:
    """Replace ``target`` by the finished directory ``fresh`` (two renames; the old one is
    removed after)."""
    import shutil
    import uuid

    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()  # an earlier release's single-file table


def _base_parts(target: Path) -> list[Path]:
    """A full build's parts of a view's table: ``base.parquet`` (one process) or
    ``base-NNNNN.parquet`` (one per symbol block of a Ray build)."""
    return sorted(target.glob("base*.parquet"))


@dataclass
class BlockTables:
    """The offline tables written block by block where a Ray build's blocks finish (its
    ``sink``), so no process holds the whole frame: each symbol block adds
    ``base-NNNNN.parquet`` to each view's new directory; :meth:`commit` swaps them in.

    Every block writes the market rows of its own dates, so a date appears once per block that
    trades it; the rows are the same values (the market is the same for every symbol), and a
    point-in-time join takes one of them. The directories must be on a filesystem every Ray
    node sees (the chart's shared volume)."""

    layout: FeatureLayout
    fresh: dict[str, str]

    @classmethod
    def open(cls, settings: Settings, layout: FeatureLayout) -> BlockTables:
        views = (STOCK_VIEW, MARKET_VIEW, VECTOR_VIEW)
        return cls(layout, {v: str(_fresh_dir(view_table(settings, v))) for v in views})

    def __call__(self, frame: pd.DataFrame, block: int) -> None:
        for view, table in _offline_tables(frame, self.layout).items():
            _write_part(table, Path(self.fresh[view]) / f"base-{block:05d}.parquet")

    def commit(self, settings: Settings) -> None:
        for view, fresh in self.fresh.items():
            _swap_in(view_table(settings, view), Path(fresh))

    def abandon(self) -> None:
        import shutil

        for fresh in self.fresh.values():
            shutil.rmtree(fresh, ignore_errors=True)


def write_offline_tables(
    features: pd.DataFrame,
    settings: Settings,
    layout: FeatureLayout | None = None,
    keep_before: pd.Timestamp | None = None,
) -> dict[str, Path]:
    """Write the parquet sources of the three views.

    A full build (``keep_before`` None) replaces each view's table with one part. An increment
    (``keep_before``: the first new date; every row of ``features`` is dated from it on)
    drops the parts dated from it on — a retried night replaces its own part — and adds
    ``part-<date>.parquet`` atomically; beyond :data:`MAX_PARTS` nightly parts they are folded
    into one base part (:func:`_compact`).
    Nothing older is read or rewritten, so a night costs its own rows."""
    layout = layout or FeatureLayout.from_registry()
    missing = [n for n in layout.all if n not in features.columns]
    if missing:
        raise FeatureStoreError(
            f"feature frame lacks {len(missing)} registry feature(s): {missing[:10]}"
        )
    tables = _offline_tables(features, layout)
    paths = {}
    for name, table in tables.items():
        target = view_table(settings, name)
        if keep_before is None or not target.is_dir():
            _replace_dir(target, table)
            paths[name] = target
            continue
        day = pd.Timestamp(keep_before).strftime("%Y-%m-%d")
        base = pq.read_schema(_base_parts(target)[0])
        for part in target.glob("part-*.parquet"):
            if part.stem.removeprefix("part-") >= day:
                part.unlink()
        with atomic_path(target / f"part-{day}.parquet") as tmp:
            _write_part(table.cast(base), tmp)
        if len(list(target.glob("part-*.parquet"))) > MAX_PARTS:
            _compact(target)
        paths[name] = target
    return paths


def _compact(target: Path) -> None:
    """Fold the nightly parts into one base part, reading only them: the full build's parts
    are hard-linked into the new directory unread (a Ray build's table may be larger than any
    one process), and the directory is swapped in whole, so a crash leaves the old one."""
    import os

    parts = sorted(target.glob("part-*.parquet"))
    fresh = _fresh_dir(target)
    for base in _base_parts(target):
        os.link(base, fresh / base.name)
    nights = pq.read_table([str(p) for p in parts], schema=pq.read_schema(parts[0]))
    first, last = (p.stem.removeprefix("part-") for p in (parts[0], parts[-1]))
    _write_part(nights, fresh / f"base-nights-{first}-{last}.parquet")
    _swap_in(target, fresh)


def stored_vectors(
    settings: Settings, dates: Sequence[pd.Timestamp], layout: FeatureLayout | None = None
) -> pd.DataFrame:
    """The stored feature rows of ``dates`` (symbol, date, registry columns), from the offline
    vector table: what an increment's recomputed check dates are compared with."""
    import pyarrow.dataset as ds

    layout = layout or FeatureLayout.from_registry()
    dataset = ds.dataset(view_table(settings, VECTOR_VIEW))
    ts_type = dataset.schema.field(TS).type
    stamps = sorted(pd.Timestamp(d).tz_localize("UTC").to_pydatetime() for d in dates)
    wanted = [pa.scalar(t, type=ts_type) for t in stamps]
    # a range first (row-group statistics prune everything outside it), then the dates
    span = (ds.field(TS) >= wanted[0]) & (ds.field(TS) <= wanted[-1])
    table = dataset.to_table(columns=["symbol", TS, VECTOR_FEATURE], filter=span)
    table = table.filter(pa.compute.is_in(table[TS], value_set=pa.array(wanted)))
    n = len(layout.all)
    flat = table.column(VECTOR_FEATURE).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    frame = pd.DataFrame(flat.reshape(-1, n), columns=layout.all)
    frame.insert(
        0, "date", pd.DatetimeIndex(table.column(TS).to_pandas()).tz_convert(None).as_unit("ns")
    )
    frame.insert(0, "symbol", table.column("symbol").to_pandas().astype(str).to_numpy())
    return frame


# ---- definitions -----------------------------------------------------------------------------


def definitions(settings: Settings, layout: FeatureLayout | None = None) -> list[Any]:
    """Entities, views and feature services, generated from the feature registry."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Array, Float32

    layout = layout or FeatureLayout.from_registry()
    root = feast_dir(settings) / "offline"
    symbol = Entity(
        name="symbol",
        join_keys=["symbol"],
        value_type=ValueType.STRING,
        description="A stock, Yahoo-style ticker",
    )
    market = Entity(
        name="market",
        join_keys=["market"],
        value_type=ValueType.STRING,
        description="The market as a whole (one key: US)",
    )

    def source(view: str) -> FileSource:
        return FileSource(
            name=f"{view}_source",
            # every part (a DuckDB glob; the Ray store reads the directory: feast_ray)
            path=str(root / f"{view}.parquet" / "*.parquet"),
            timestamp_field=TS,
            created_timestamp_column=CREATED,
        )

    lookback = timedelta(days=settings.features.offline_ttl_days)
    stock_view = FeatureView(
        name=STOCK_VIEW,
        entities=[symbol],
        ttl=lookback,
        schema=[Field(name=n, dtype=Float32) for n in layout.stock],
        source=source(STOCK_VIEW),
        online=False,
        description="Per-stock technical and cross-sectional features (turbomode.features)",
    )
    market_view = FeatureView(
        name=MARKET_VIEW,
        entities=[market],
        ttl=lookback,
        schema=[Field(name=n, dtype=Float32) for n in layout.market],
        source=source(MARKET_VIEW),
        online=False,
        description="Market context: VIX, SPY/QQQ/IWM returns and trend, macro series as known",
    )
    vector_view = FeatureView(
        name=VECTOR_VIEW,
        entities=[symbol],
        ttl=timedelta(0),
        schema=[Field(name=VECTOR_FEATURE, dtype=Array(Float32))],
        source=source(VECTOR_VIEW),
        online=True,
        description="The whole model feature vector, packed, for fast batch online reads",
        tags={"order": ",".join(layout.all)},
    )
    ensemble = FeatureService(
        name="turbomode_ensemble",
        features=[stock_view, market_view],
        description="Training features of the sector × horizon stacked ensembles",
    )
    scan = FeatureService(
        name="turbomode_scan",
        features=[vector_view],
        description="Latest packed feature vector per symbol for the nightly scan and serving",
    )
    return [symbol, market, stock_view, market_view, vector_view, ensemble, scan]


def apply(settings: Settings, profile: Profile | None = None) -> FeatureStore:
    """Register the definitions (idempotent: applying twice changes nothing)."""
    store = open_store(settings, profile)
    store.apply(definitions(settings))
    return store


# ---- materialization and reads ---------------------------------------------------------------


def latest_offline_date(settings: Settings) -> pd.Timestamp:
    path = feast_dir(settings) / "offline" / f"{VECTOR_VIEW}.parquet"
    if not path.exists():
        raise FeatureStoreError(f"no offline features at {path}: run `turbomode features build`")
    ts = pq.read_table(path, columns=[TS]).column(TS)
    return pd.Timestamp(pa.compute.max(ts).as_py())


def market_close(day: datetime | pd.Timestamp) -> float:
    """Unix time of the US equity close (16:00 America/New_York) on ``day``'s date."""
    local = pd.Timestamp(pd.Timestamp(day).date()).tz_localize("America/New_York")
    return (local + pd.Timedelta(hours=16)).timestamp()


def materialize(
    store: FeatureStore,
    settings: Settings,
    end: datetime | pd.Timestamp | None = None,
) -> tuple[datetime, datetime]:
    """Load the online store up to ``end`` (default: the newest offline date), incrementally.

    The window starts where the last run ended (Feast records it), or ``lookback_days``
    before ``end`` on the first run: the online store keeps only the newest row per symbol,
    so replaying years of history would only be overwritten. Re-running is idempotent.
    """
    from turbomode.job_metrics import job_metrics

    with job_metrics("materialize", settings.stores.pushgateway_url) as metrics:
        end_ts = pd.Timestamp(end) if end is not None else latest_offline_date(settings)
        end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
        end_dt = (end_ts + pd.Timedelta(seconds=1)).to_pydatetime()
        view = store.get_feature_view(VECTOR_VIEW)
        first = end_dt - timedelta(days=settings.features.online_lookback_days)
        last_end = view.most_recent_end_time
        start_dt = max(last_end, first) if last_end is not None else first
        if start_dt >= end_dt:
            start_dt = first  # re-materializing the same window is harmless (idempotent)
        with _offline_session(store):  # the Ray store reads on the jobs' Ray
            store.materialize(start_date=start_dt, end_date=end_dt, feature_views=[VECTOR_VIEW])
        # The stale-features alert watches this: the close (16:00 New York) of the newest
        # market day now served online, so its age is the time since that bar really ended.
        metrics.gauge("turbomode_features_latest_timestamp_seconds").set(market_close(end_ts))
    event(log, "features.materialized", start=start_dt, end=end_dt)
    return start_dt, end_dt


def _check_current(store: FeatureStore, layout: FeatureLayout) -> None:
    """Fail clearly when the applied definitions predate the code's feature registry."""
    registered: set[str] = set()
    for view in (STOCK_VIEW, MARKET_VIEW):
        try:
            registered |= {f.name for f in store.get_feature_view(view).features}
        except Exception as exc:  # Feast raises its own not-found types
            raise FeatureStoreError(
                f"feature view {view!r} is not registered: run `turbomode features build`"
            ) from exc
    stale = sorted(set(layout.stock + layout.market) - registered)
    if stale:
        raise FeatureStoreError(
            f"the feature store predates {len(stale)} registry feature(s) ({stale[:5]}…): "
            "run `turbomode features build`"
        )


def training_frame(
    store: FeatureStore,
    entities: pd.DataFrame,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Point-in-time join: for each (symbol, date) row, the features as of that date.

    Returns the entity rows (symbol, date, plus any extra columns such as labels) with one
    column per feature (float32, as stored), in the caller's row order.

    Each view is joined on its own distinct keys — the stock view on distinct (symbol, date),
    the market view on distinct dates — and the values are mapped back to the rows here: Feast's
    Ray offline store keeps one entity row per key and timestamp, and the market view has a
    single key, so every row of a date would otherwise collapse into one. Both stores take the
    same path, and the market join shrinks from one row per stock to one per day.
    """
    layout = FeatureLayout.from_registry(names)
    _check_current(store, layout)
    ent = entities.reset_index(drop=True)
    days = pd.DatetimeIndex(ent["date"])
    rows = pd.MultiIndex.from_arrays([ent["symbol"].astype(str), days])
    pairs = rows.unique()
    dates = days.unique()
    out = {}
    with _offline_session(store):
        if layout.stock:
            got = _joined(
                store,
                STOCK_VIEW,
                layout.stock,
                pairs.get_level_values(0),
                pd.DatetimeIndex(pairs.get_level_values(1)),
            )
            at = pairs.get_indexer(rows)
            out.update({n: got[n][at] for n in layout.stock})
        if layout.market:
            got = _joined(store, MARKET_VIEW, layout.market, np.full(len(dates), MARKET_KEY), dates)
            at = dates.get_indexer(days)
            out.update({n: got[n][at] for n in layout.market})
    features = pd.DataFrame({n: out[n] for n in layout.all})
    # The caller's columns come back exactly as given (Feast re-types datetime columns).
    return pd.concat([ent, features], axis=1)


def _joined(
    store: FeatureStore,
    view: str,
    names: Sequence[str],
    keys: Any,
    dates: pd.DatetimeIndex,
) -> dict[str, np.ndarray]:
    """One view's point-in-time join over distinct (key, date) entity rows: float32 columns in
    the entity rows' order."""
    key = "market" if view == MARKET_VIEW else "symbol"
    ent = pd.DataFrame(
        {
            key: np.asarray(keys, dtype=object),
            TS: pd.DatetimeIndex(dates).tz_localize("UTC").as_unit("us"),
            "_row": np.arange(len(dates)),
        }
    )
    refs = [f"{view}:{n}" for n in names]
    got = store.get_historical_features(entity_df=ent, features=refs).to_df()
    if len(got) != len(ent) or not np.array_equal(np.sort(got["_row"].to_numpy()), ent["_row"]):
        raise FeatureStoreError(
            f"point-in-time join of {view} returned {len(got)} rows for {len(ent)}"
        )
    got = got.sort_values("_row")
    return {n: pd.to_numeric(got[n], errors="coerce").to_numpy(dtype=np.float32) for n in names}


@contextmanager
def _offline_session(store: FeatureStore) -> Iterator[None]:
    """The Ray offline store joins on the Ray the jobs share (its ``ray_address``), started and
    stopped here when the caller has none running; DuckDB needs nothing."""
    config = store.config.offline_store
    if not str(getattr(config, "type", "")).endswith(("ray", "RayOfflineStore")):
        yield
        return
    import ray
    from feast.infra import ray_initializer

    from turbomode.cluster import joined

    try:
        with joined(getattr(config, "ray_address", None)):
            yield
    finally:
        if not ray.is_initialized():  # stopped here: Feast must connect again next time
            ray_initializer.shutdown_ray()


def online_vectors_at(
    store: FeatureStore | Any, symbols: Sequence[str], n_features: int
) -> tuple[np.ndarray, list[datetime | None]]:
    """(symbols × features float32 matrix in the registry's order, event time per symbol).

    The one online read the scan, the Smart Scanner and the service share. A symbol the store
    does not know (or whose vector has another length) comes back all-NaN with no time.
    """
    resp = store.get_online_features(
        features=[f"{VECTOR_VIEW}:{VECTOR_FEATURE}"], entity_rows={"symbol": list(symbols)}
    ).to_dict(include_event_timestamps=True)
    values = resp[VECTOR_FEATURE]
    present = [v is not None and len(v) == n_features for v in values]
    rows = [v if ok else [np.nan] * n_features for v, ok in zip(values, present, strict=True)]
    matrix = np.asarray(rows, dtype=np.float32).reshape(len(symbols), n_features)
    stamps = resp.get(f"{VECTOR_FEATURE}__ts", [None] * len(symbols))
    return matrix, [_as_datetime(t) if ok else None for t, ok in zip(stamps, present, strict=True)]


def _as_datetime(value: Any) -> datetime | None:
    """Feast gives Unix seconds (SQLite) or a datetime depending on the online store."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if hasattr(value, "seconds"):  # a protobuf Timestamp
        return datetime.fromtimestamp(int(value.seconds), UTC)
    return datetime.fromtimestamp(float(value), UTC)


def vector_date(stamp: datetime | pd.Timestamp | None) -> date | None:
    """The market date a vector's event time stands for (rows are stamped 00:00 UTC)."""
    if stamp is None or pd.isna(stamp):
        return None
    ts = pd.Timestamp(stamp)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts).date()


def feature_age_seconds(stamp: datetime | pd.Timestamp | None, now: float | None = None) -> float:
    """Seconds from the close (16:00 New York) of a vector's market date to ``now``: the age
    the service reports and the stale-features alert measures. NaN without a vector."""
    day = vector_date(stamp)
    if day is None:
        return float("nan")
    return max(0.0, (time.time() if now is None else now) - market_close(pd.Timestamp(day)))


@dataclass(frozen=True)
class DatedVectors:
    """Feature vectors (``symbol`` + registry columns) with the market date of each."""

    frame: pd.DataFrame
    dates: dict[str, date | None]
    source: Literal["online", "offline", "given"] = "online"

    def older_than(self, day: date) -> dict[str, str]:
        """Symbols whose vector is older than ``day``, with the reason (not scored)."""
        return {
            sym: f"stale features: newest vector is from {d}, older than the scan date {day}"
            for sym, d in sorted(self.dates.items())
            if d is not None and d < day
        }

    def newer_than(self, day: date) -> list[str]:
        return sorted(s for s, d in self.dates.items() if d is not None and d > day)

    def newest(self) -> date | None:
        return max((d for d in self.dates.values() if d is not None), default=None)


def online_vectors(
    store: FeatureStore, symbols: Sequence[str], layout: FeatureLayout | None = None
) -> pd.DataFrame:
    """Latest feature vector of each symbol from the online store, one row per symbol.

    Symbols the online store does not know come back as all-NaN rows so the caller can report
    them (a scan logs and skips them) instead of failing the whole batch.
    """
    return dated_online_vectors(store, symbols, layout).frame


def dated_online_vectors(
    store: FeatureStore, symbols: Sequence[str], layout: FeatureLayout | None = None
) -> DatedVectors:
    """:func:`online_vectors` with the market date of each vector."""
    layout = layout or FeatureLayout.from_registry()
    matrix, stamps = online_vectors_at(store, symbols, len(layout.all))
    frame = pd.DataFrame(matrix, columns=layout.all)
    frame.insert(0, "symbol", list(symbols))
    dates = {str(s): vector_date(t) for s, t in zip(symbols, stamps, strict=True)}
    return DatedVectors(frame, dates, "online")


def offline_vectors_asof(
    settings: Settings,
    symbols: Sequence[str],
    day: date,
    layout: FeatureLayout | None = None,
) -> DatedVectors:
    """Point in time: each symbol's newest vector dated on or before ``day``, read from the
    offline ``stock_vector`` table (never a newer one). A back-dated scan reads these."""
    import pyarrow.dataset as ds

    layout = layout or FeatureLayout.from_registry()
    path = feast_dir(settings) / "offline" / f"{VECTOR_VIEW}.parquet"
    if not path.exists():
        raise FeatureStoreError(
            f"no offline features at {path}: a back-dated scan reads point-in-time features "
            "from the offline store; run `turbomode features build`"
        )
    cutoff = pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(days=1)
    since = cutoff - pd.Timedelta(days=settings.features.offline_ttl_days + 1)
    dataset = ds.dataset(path)
    ts_type = dataset.schema.field(TS).type
    expr = (
        (ds.field(TS) < pa.scalar(cutoff.to_pydatetime(), type=ts_type))
        & (ds.field(TS) >= pa.scalar(since.to_pydatetime(), type=ts_type))
        & ds.field("symbol").isin(list(symbols))
    )
    table = dataset.to_table(columns=["symbol", TS, VECTOR_FEATURE], filter=expr)
    n = len(layout.all)
    rows = table.to_pandas().sort_values(TS).groupby("symbol", sort=False).tail(1)
    by_symbol = {
        str(sym): (np.asarray(vec, dtype=np.float32), vector_date(ts))
        for sym, ts, vec in zip(rows["symbol"], rows[TS], rows[VECTOR_FEATURE], strict=True)
        if vec is not None and len(vec) == n
    }
    empty = np.full(n, np.nan, dtype=np.float32)
    matrix = (
        np.vstack([by_symbol.get(s, (empty, None))[0] for s in symbols])
        if symbols
        else (np.empty((0, n), dtype=np.float32))
    )
    frame = pd.DataFrame(matrix, columns=layout.all)
    frame.insert(0, "symbol", list(symbols))
    dates = {str(s): by_symbol[s][1] if s in by_symbol else None for s in symbols}
    return DatedVectors(frame, dates, "offline")


def recent_rows(
    settings: Settings,
    symbols: Sequence[str],
    day: date,
    n_rows: int,
    features: Sequence[str] | None = None,
    layout: FeatureLayout | None = None,
) -> pd.DataFrame:
    """Point in time: each symbol's last ``n_rows`` rows dated on or before ``day`` (symbol,
    date, ``features`` or every registry column), from the offline ``stock_vector`` table;
    never a later row. What a model with sequence learners reads to score one date: its
    windows are a symbol's consecutive rows (:func:`turbomode.models.neural.build_windows`),
    so missing days are skipped here as in training. Rows older than ``n_rows`` × 3 + 30
    calendar days are not read (a symbol idle that long starts a short window)."""
    import pyarrow.dataset as ds

    layout = layout or FeatureLayout.from_registry()
    cols = list(features) if features is not None else layout.all
    unknown = [c for c in cols if c not in layout.all]
    if unknown:
        raise FeatureStoreError(f"not registry features: {unknown[:10]}")
    path = view_table(settings, VECTOR_VIEW)
    if not path.exists():
        raise FeatureStoreError(
            f"no offline features at {path}: models with sequence learners read each "
            "symbol's last days from the offline store; run `turbomode features build`"
        )
    cutoff = pd.Timestamp(day).tz_localize("UTC") + pd.Timedelta(days=1)
    since = cutoff - pd.Timedelta(days=3 * n_rows + 31)
    dataset = ds.dataset(path)
    ts_type = dataset.schema.field(TS).type
    expr = (
        (ds.field(TS) < pa.scalar(cutoff.to_pydatetime(), type=ts_type))
        & (ds.field(TS) >= pa.scalar(since.to_pydatetime(), type=ts_type))
        & ds.field("symbol").isin([str(s) for s in symbols])
    )
    table = dataset.to_table(columns=["symbol", TS, VECTOR_FEATURE], filter=expr)
    n = len(layout.all)
    flat = table.column(VECTOR_FEATURE).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    pick = [layout.all.index(c) for c in cols]
    frame = pd.DataFrame(flat.reshape(-1, n)[:, pick], columns=cols)
    frame.insert(
        0, "date", pd.DatetimeIndex(table.column(TS).to_pandas()).tz_convert(None).as_unit("ns")
    )
    frame.insert(0, "symbol", table.column("symbol").to_pandas().astype(str).to_numpy())
    frame = frame.sort_values(["symbol", "date"], kind="stable")
    frame = frame.drop_duplicates(["symbol", "date"], keep="last")
    return frame.groupby("symbol", sort=False).tail(n_rows).reset_index(drop=True)


def vectors_for_date(
    settings: Settings,
    symbols: Sequence[str],
    day: date,
    store: FeatureStore | None = None,
    layout: FeatureLayout | None = None,
) -> DatedVectors:
    """The vectors a scan of ``day`` may score: the online store's when none is newer than
    ``day``; otherwise (a back-dated scan) the point-in-time vectors of ``day`` from the
    offline store. Vectors older than ``day`` come back as they are, dated: the caller counts
    and skips them (:meth:`DatedVectors.older_than`)."""
    online = dated_online_vectors(store or open_store(settings), symbols, layout)
    if not online.newer_than(day):
        return online
    dated = offline_vectors_asof(settings, symbols, day, layout)
    event(log, "features.point_in_time", day=str(day), newest_online=str(online.newest()))
    return dated


MANIFEST = "build.json"


def _fingerprint(frame: pd.DataFrame | None, until: pd.Timestamp, by: str = "date") -> str:
    """A hash of the rows dated ≤ ``until`` (by ``by``; macro vintages by their release): an
    increment is valid only while the history the stored features came from is unchanged (no
    revision, no back-filled symbol). A macro revision released after ``until`` changes no
    stored feature, so it does not count."""
    if frame is None or frame.empty:
        return "none"
    rows = frame[pd.to_datetime(frame[by]) <= until]
    known = ("symbol", "series", "date", "realtime_start", "open", "high", "low", "close")
    cols = [c for c in (*known, "volume", "value") if c in rows]
    rows = rows.sort_values(cols[:2] if by == "date" else cols[:3])[cols]
    digest = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return f"{len(rows)}:{int(digest.sum(dtype=np.uint64))}"


def _manifest(
    md: Any, names: Sequence[str], last: pd.Timestamp, sectors: dict[str, str], lookback: int
) -> dict[str, Any]:
    return {
        "last_date": str(last.date()),
        "prices": _fingerprint(md.prices, last),
        "market": _fingerprint(md.market, last),
        "macro": _fingerprint(md.macro, last, by="realtime_start"),
        "sectors": sorted(sectors.items()),
        "features": list(names),
        "lookback": lookback,
    }


CURRENT = "current"


def _increment_since(
    settings: Settings, md: Any, names: Sequence[str], sectors: dict[str, str], lookback: int
) -> tuple[pd.Timestamp | None, str]:
    """(first new date, "") when the stored build can be extended; (None, why) otherwise."""
    import json

    root = feast_dir(settings) / "offline"
    path = root / MANIFEST
    if not path.exists() or not all(
        _base_parts(root / f"{v}.parquet") for v in (STOCK_VIEW, MARKET_VIEW, VECTOR_VIEW)
    ):
        return None, "no earlier build"
    try:
        stored = json.loads(path.read_text())
        last = pd.Timestamp(stored["last_date"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable {path.name}: {exc}"
    now = _manifest(md, names, last, sectors, lookback)
    changed = [
        k
        for k in ("features", "sectors", "lookback", "prices", "market", "macro")
        if json.loads(json.dumps(now[k])) != stored.get(k)
    ]
    if changed:
        return None, f"changed since the last build: {', '.join(changed)}"
    dates = pd.to_datetime(md.prices["date"])
    newer = dates[dates > last]
    return (pd.Timestamp(newer.min()), "") if len(newer) else (None, CURRENT)


def build(
    settings: Settings,
    profile: Profile | None = None,
    full: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[Any, FeatureStore]:
    """Clean store → features → offline tables → definitions applied. Returns the feature
    report (what was computed, short histories, absent market series) and the store.

    Nightly, when the clean store only gained new dates since the last build, only those are
    computed, from the trailing ``features.incremental_lookback`` bars
    (:mod:`turbomode.features.incremental`), checked against the stored values on the dates
    before them, and appended; anything else (``full``, a first build, a revised history, a
    changed registry, a failed check) rebuilds everything. ``on_stage`` hears each stage as
    it starts (a full build takes tens of seconds)."""
    import json

    from turbomode.data.ingest import load_clean
    from turbomode.features import distributed
    from turbomode.features.engine import FeatureReport
    from turbomode.features.incremental import build_increment, compare
    from turbomode.io import atomic_write_text
    from turbomode.job_metrics import job_metrics

    stage = on_stage or (lambda _name: None)
    with job_metrics("features_build", settings.stores.pushgateway_url) as metrics:
        stage("reading the clean store")
        md = load_clean(settings)
        sectors = md.universe.sector_map()
        layout = FeatureLayout.from_registry()
        names = layout.all
        lookback = settings.features.incremental_lookback
        since, why = (
            (None, "--full") if full else _increment_since(settings, md, names, sectors, lookback)
        )
        mode = "full"
        if why == CURRENT:  # nothing new: the stored build is current
            last = pd.Timestamp(pd.to_datetime(md.prices["date"]).max())
            mode, rows = "current", 0
            report = FeatureReport(0, 0, 0, names, mode="current")
        elif since is not None:
            stage(f"computing the features of the dates from {since:%Y-%m-%d}")
            inc = build_increment(md.prices, md.market, sectors, since, lookback, macro=md.macro)
            bad = (
                compare(
                    inc.check_rows, stored_vectors(settings, inc.check_dates, layout), layout.all
                )
                if inc.check_dates
                else {}
            )
            if bad:
                why = f"the increment differs from the stored build on {sorted(bad)[:5]}"
                event(log, "features.increment_rejected", logging.WARNING, features=sorted(bad))
            else:
                new = inc.new_rows
                write_offline_tables(new, settings, layout, keep_before=since)
                mode, rows, report = "incremental", len(new), inc.result.report
                report.mode, report.n_rows = "incremental", len(new)
                report.n_dates = int(new["date"].nunique())
                last = pd.Timestamp(new["date"].max())
        if mode == "full":
            # no manifest while the tables are replaced: a crash half-way means a full build
            (feast_dir(settings) / "offline" / MANIFEST).unlink(missing_ok=True)
            n_symbols = md.prices["symbol"].nunique()
            stage(f"computing {len(names)} features for {n_symbols} symbols ({why or 'full'})")
            if distributed.use_ray(settings, n_symbols):
                # the blocks write the tables where they run: nothing collects the frame
                sink = BlockTables.open(settings, layout)
                try:
                    result = distributed.build(
                        settings, md.prices, md.market, sectors, macro=md.macro, sink=sink
                    )
                except BaseException:
                    sink.abandon()
                    raise
                sink.commit(settings)
                rows = result.report.n_rows
            else:
                result = distributed.build(settings, md.prices, md.market, sectors, macro=md.macro)
                stage("writing the offline tables")
                write_offline_tables(result.frame, settings, layout)
                rows = len(result.frame)
            report = result.report
            last = pd.Timestamp(pd.to_datetime(md.prices["date"]).max())
        manifest = _manifest(md, names, last, sectors, lookback)
        manifest["mode"] = mode
        atomic_write_text(
            json.dumps(manifest, default=str), feast_dir(settings) / "offline" / MANIFEST
        )
        stage("applying the feature definitions")
        store = apply(settings, profile)
        metrics.rows.labels(stage="features").inc(rows)
    event(log, "features.built", rows=rows, mode=mode, reason=why or None)
    return report, store
