"""Feast's Ray offline store with a point-in-time join that is right and runs on the cluster.

The production profile joins training sets on the Ray the jobs share. Feast 0.67's
``RayOfflineStore`` is kept for everything but ``get_historical_features`` — reading the parquet
sources, materialization (``pull_latest_from_table_or_query``), the retrieval job — because its
two joins are not usable on daily bars (measured on this project's tables, README "Scale"):

* the *windowed* join (feature tables above ``broadcast_join_threshold_mb``) matches an entity
  row only with feature rows in the same ``window_size_for_joins`` bucket, one hour by default,
  so a row dated after its features' bar gets nothing; and its groups are formed per block
  after a union, so rows of one key in two blocks never meet;
* the *broadcast* join collects the feature table on the driver and joins the entity rows as
  one block; its ``merge_asof`` needs the right side sorted by time alone, raises on a table
  sorted by key and time, and falls back to a row-by-row loop: 102 s of one CPU for 6,465 rows
  that DuckDB joins in about one second. It also ignores the views' TTL.

The join here is Ray Data's own distributed group-by: entity rows and the views' feature rows,
aligned to one schema, are shuffled by join key across the cluster, and each key's rows are
joined by a backward as-of join bounded by the view's TTL — Feast's DuckDB semantics (latest
feature row with ``ts ≤ t`` and ``ts ≥ t − ttl``; on equal times the latest created). Nothing is
collected on the driver until the caller asks for the frame.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast import FileSource
from feast.infra.offline_stores.contrib.ray_offline_store.ray import (
    RayOfflineStore,
    RayOfflineStoreConfig,
    RayRetrievalJob,
)

STORE_TYPE: Final = "turbomode.feast_ray.PointInTimeRayOfflineStore"
SIDE = "__tm_side"  # 0: an entity row, 1: a feature row
ENTITY_TS = "event_timestamp"


class PointInTimeRayOfflineStoreConfig(RayOfflineStoreConfig):
    """Feast's Ray offline store settings, under this store's type."""

    type: Literal["turbomode.feast_ray.PointInTimeRayOfflineStore"] = STORE_TYPE  # type: ignore[assignment]


def source_directory(path: str) -> str:
    """The directory of a table's parts: the project's sources name a glob of them, which
    DuckDB reads and Ray Data does not, so one set of definitions serves both stores."""
    return path[: -len("/*.parquet")] if path.endswith("/*.parquet") else path


def _as_directory(source: Any) -> Any:
    """A copy of a FileSource that names the directory of its parts."""
    if not isinstance(source, FileSource) or not source.path.endswith("/*.parquet"):
        return source
    return FileSource(
        name=source.name,
        path=source_directory(source.path),
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        field_mapping=source.field_mapping,
    )


class PointInTimeRayOfflineStore(RayOfflineStore):
    """Feast's Ray offline store, its point-in-time join replaced (module docstring); its
    reads given the directory of a source's parts, and run on the cluster from a Ray Client."""

    @staticmethod
    def pull_latest_from_table_or_query(
        config: Any, data_source: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return _on_cluster(
            RayOfflineStore.pull_latest_from_table_or_query,
            config,
            _as_directory(data_source),
            *args,
            **kwargs,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config: Any, data_source: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return _on_cluster(
            RayOfflineStore.pull_all_from_table_or_query,
            config,
            _as_directory(data_source),
            *args,
            **kwargs,
        )

    @staticmethod
    def get_historical_features(
        config: Any,
        feature_views: list[Any],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RayRetrievalJob:
        return _on_cluster(
            _historical, config, feature_views, feature_refs, entity_df, full_feature_names
        )


def _on_cluster(fn: Any, config: Any, *args: Any, **kwargs: Any) -> RayRetrievalJob:
    """``fn``'s retrieval job, here — or, where this process is a Ray Client (a ``ray://``
    address, how the chart's jobs join the RayCluster), run as a task on the cluster and
    brought back as a frame: Ray Data needs a core worker, which a client has not ("'Worker'
    object has no attribute 'core_worker'")."""
    import ray
    from ray.util.client import ray as client

    if not client.is_connected():
        return fn(config, *args, **kwargs)

    def run() -> tuple[pd.DataFrame, Any, bool, list[str]]:
        job = fn(config, *args, **kwargs)
        return job.to_df(), job._feature_pa_types, job._full_feature_names, job._feature_refs

    task = ray.remote(num_cpus=0)(run).remote()  # the join's own tasks take the CPUs
    frame, types, full, refs = ray.get(task)
    job = RayRetrievalJob(
        frame, staging_location=config.offline_store.storage_path, config=config.offline_store
    )
    job._prefer_ray_datasets = False
    job._feature_pa_types, job._full_feature_names, job._feature_refs = types, full, refs
    job._on_demand_feature_views = []
    return job


def _historical(
    config: Any,
    feature_views: list[Any],
    feature_refs: list[str],
    entity_df: pd.DataFrame | str | None,
    full_feature_names: bool,
) -> RayRetrievalJob:
    """The point-in-time join (module docstring) as a lazy Ray dataset."""
    import ray.data
    from ray.data.expressions import col, lit

    if not isinstance(entity_df, pd.DataFrame):
        raise ValueError("this Ray offline store joins a pandas entity frame only")
    store = RayOfflineStore()
    store._init_ray(config)
    if ENTITY_TS not in entity_df.columns:
        raise ValueError(f"the entity frame has no {ENTITY_TS!r} column")
    entities = entity_df.copy()
    entities[ENTITY_TS] = pd.to_datetime(entities[ENTITY_TS], utc=True).astype(
        "datetime64[us, UTC]"
    )
    if entities[ENTITY_TS].isna().any():
        raise ValueError(f"the entity frame has rows without an {ENTITY_TS!r}")
    low, high = entities[ENTITY_TS].min(), entities[ENTITY_TS].max()
    result: Any = ray.data.from_pandas(entities)
    schema = pa.Schema.from_pandas(entities, preserve_index=False).remove_metadata()
    for view in feature_views if not entities.empty else []:
        prefix = view.projection.name_to_use() + ":"
        names = [r.split(":", 1)[1] for r in feature_refs if r.startswith(prefix)]
        if not names:
            continue
        if getattr(view, "transformation", None) is not None or not hasattr(view, "ttl"):
            raise ValueError(f"{view.name}: only plain feature views are joined here")
        source = view.batch_source
        if source.field_mapping:
            raise ValueError(f"{view.name}: a source field mapping is not supported here")
        mapping = view.projection.join_key_map or {}
        keys = [c.name for c in view.entity_columns]
        ts, created = source.timestamp_field, source.created_timestamp_column or None
        ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
        since = low - ttl if ttl is not None else None
        path = source_directory(store._get_source_path(source, config))
        # Row groups outside the entity rows' span (less the TTL) are pruned at the read.
        bound = col(ts) <= lit(high.to_pydatetime())
        if since is not None:
            bound = bound & (col(ts) >= lit(since.to_pydatetime()))
        columns = [*keys, ts, *([created] if created else []), *names]
        features = ray.data.read_parquet(path).select_columns(columns).filter(expr=bound)
        renames = {ts: ENTITY_TS, **{k: mapping.get(k, k) for k in keys}}
        if created:
            renames[created] = "__tm_created"
        out_names = (
            [f"{view.projection.name_to_use()}__{n}" for n in names]
            if (full_feature_names)
            else names
        )
        renames.update(dict(zip(names, out_names, strict=True)))
        result, schema = _asof_join(
            result,
            schema,
            features,
            renames,
            on=[mapping.get(k, k) for k in keys],
            names=out_names,
            ttl=ttl,
            created=bool(created),
        )
    if entities.empty:  # nothing to join (and no time span to read): the columns only
        empty = {c: pd.Series(dtype=entities[c].dtype) for c in entities.columns}
        for view in feature_views:
            prefix = view.projection.name_to_use() + ":"
            for ref in (r for r in feature_refs if r.startswith(prefix)):
                name = ref.split(":", 1)[1]
                out = f"{view.projection.name_to_use()}__{name}" if full_feature_names else name
                empty[out] = pd.Series(dtype="float32")
        result = pd.DataFrame(empty)  # as a frame: an empty Ray dataset loses its columns
    job = RayRetrievalJob(
        result, staging_location=config.offline_store.storage_path, config=config.offline_store
    )
    job._prefer_ray_datasets = not isinstance(result, pd.DataFrame)
    job._full_feature_names = full_feature_names
    job._on_demand_feature_views = []
    job._feature_refs = feature_refs
    job._entity_df = entity_df.head(1000)
    job._metadata = job._create_metadata()
    return job


def _asof_join(
    entities: Any,
    entity_schema: pa.Schema,
    features: Any,
    renames: dict[str, str],
    on: list[str],
    names: list[str],
    ttl: timedelta | None,
    created: bool,
) -> tuple[Any, pa.Schema]:
    """Entity rows with ``names`` joined point in time, grouped by ``on`` across the cluster;
    the joined rows and their schema."""
    read = features.schema()
    feature_schema = pa.schema(
        [pa.field(renames.get(n, n), t) for n, t in zip(read.names, read.types, strict=True)]
    )
    common = pa.schema(
        [
            *entity_schema,
            *[f for f in feature_schema if f.name not in entity_schema.names],
            pa.field(SIDE, pa.int8()),
        ]
    )
    clash = sorted(set(names) & set(entity_schema.names))
    if clash:
        raise ValueError(f"entity columns named like requested features: {clash}")
    feature_types = {f.name: f.type for f in feature_schema}
    out_schema = pa.schema([*entity_schema, *[pa.field(n, feature_types[n]) for n in names]])

    def align(batch: pa.Table, side: int, rename: bool) -> pa.Table:
        if rename:
            batch = batch.rename_columns([renames.get(c, c) for c in batch.column_names])
        n = batch.num_rows
        cols = [
            batch.column(f.name).cast(f.type)
            if f.name in batch.column_names
            else pa.nulls(n, f.type)
            for f in common
            if f.name != SIDE
        ]
        return pa.Table.from_arrays([*cols, pa.array(np.full(n, side, np.int8))], schema=common)

    left = entities.map_batches(
        align, batch_format="pyarrow", fn_kwargs={"side": 0, "rename": False}
    )
    right = features.map_batches(
        align, batch_format="pyarrow", fn_kwargs={"side": 1, "rename": True}
    )
    tolerance = pd.Timedelta(ttl) if ttl is not None else None
    keep = [f.name for f in entity_schema]

    def join(group: pa.Table) -> pa.Table:
        side = group.column(SIDE)
        rows = group.filter(pc.equal(side, 0)).select(keep).to_pandas()
        if rows.empty:
            return out_schema.empty_table()
        rows["__tm_pos"] = np.arange(len(rows))
        rows = rows.sort_values(ENTITY_TS, kind="stable")
        sort = [ENTITY_TS, "__tm_created"] if created else [ENTITY_TS]
        feats = group.filter(pc.equal(side, 1)).select([*sort, *names]).to_pandas()
        if created:  # the newest created wins a tie; a row without one loses it (as DuckDB)
            feats = feats.sort_values(sort, kind="stable", na_position="first")
        else:
            feats = feats.sort_values(ENTITY_TS, kind="stable")
        feats = feats.drop_duplicates(ENTITY_TS, keep="last")
        merged = pd.merge_asof(
            rows,
            feats[[ENTITY_TS, *names]],
            on=ENTITY_TS,
            direction="backward",
            tolerance=tolerance,
        )
        merged = merged.sort_values("__tm_pos").drop(columns="__tm_pos")
        return pa.Table.from_pandas(merged, schema=out_schema, preserve_index=False)

    joined = left.union(right).groupby(on).map_groups(join, batch_format="pyarrow")
    return joined, out_schema
