"""The feature build on Ray, for universes one process cannot build in time (issue #24).

Three sets of Ray tasks, so no process holds the whole (rows × features) block:

1. **symbol blocks**: the per-symbol families (trend … market context) read only a symbol's
   own bars and the market series, so each block of symbols runs the engine's
   :func:`~turbomode.features.engine.symbol_features` alone;
2. **date blocks**: the cross-sectional, calendar and macro families read only the rows of
   their date, so each block of dates runs :func:`~turbomode.features.engine.panel_features`.
   Every symbol block hands every date block just its rows of the columns those families read
   (``cross_sectional.NEEDS``): a shuffle through Ray's object store, not through the driver;
3. **joins**: per symbol block, both halves in the engine's column order, written as
   ``<out>/symbol_block=NNNNN/part-0.parquet`` (a local path or ``s3://``; hive-style, so a
   reader can filter on the block).

The values are the single-process engine's, bit for bit: every family runs the engine's own
code, the date blocks' layouts keep the whole universe on their symbol axis (so ranks, sector
sums and dispersions see the same columns in the same order) and the cast to the output dtype is
the engine's :func:`~turbomode.features.engine.write_column`. Symbol blocks are runs of the
(symbol, date) sort, so the parts in block order are the engine's frame row for row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.cluster import ray_session
from turbomode.config import Settings
from turbomode.features.cross_sectional import CROSS_SECTIONAL
from turbomode.features.cross_sectional import NEEDS as CS_NEEDS
from turbomode.features.engine import (
    MIN_HISTORY,
    FeatureResult,
    build_features,
    feature_report,
    panel_features,
    prepare_prices,
    symbol_features,
    write_column,
)
from turbomode.features.indicators import Array
from turbomode.features.layout import Layout, values
from turbomode.features.macro import MACRO
from turbomode.features.market import MarketContext
from turbomode.features.registry import select_features
from turbomode.features.temporal import TEMPORAL
from turbomode.logs import event

log = logging.getLogger("turbomode.features.distributed")

PANEL: frozenset[str] = frozenset((*CROSS_SECTIONAL, *TEMPORAL, *MACRO))
"""Features the date blocks compute (what the engine's panel_features returns; the registry's
``cross_sectional`` group also holds per-symbol features such as beta, which it does not)."""


@dataclass(frozen=True)
class Piece:
    """One symbol block's rows of one date block: what the panel families read."""

    sym_code: npt.NDArray[np.intp]
    """Global symbol codes (positions in the universe's sorted symbols)."""
    dates: npt.NDArray[np.datetime64]
    cols: dict[str, Array]


def use_ray(settings: Settings, n_symbols: int) -> bool:
    """Whether ``features.engine`` sends a build of ``n_symbols`` to Ray: ``auto`` does from
    ``features.ray_min_symbols`` on, below which Ray's start-up and shuffle cost more than they
    win (benchmarks/bench_scale.py measures where)."""
    engine = settings.features.engine
    if engine == "auto":
        return n_symbols >= settings.features.ray_min_symbols
    return engine == "ray"


def build(
    settings: Settings,
    prices: pd.DataFrame,
    market: pd.DataFrame | None,
    sectors: Mapping[str, str],
    macro: pd.DataFrame | None = None,
    sink: Callable[[pd.DataFrame, int], None] | None = None,
) -> FeatureResult:
    """The full build ``features.engine`` picks for this universe: the engine in this process,
    or the blocks on Ray (the running session, ``compute.ray_address``, or a local one started
    and stopped here), with the parts also written to ``features.ray_output`` when set.

    ``sink(frame, block)`` (Ray only) receives each symbol block's rows in the task that made
    them — the offline tables written where the blocks run — and the frame is then not
    collected (the result's frame is empty)."""
    n_symbols = int(prices["symbol"].nunique())
    if not use_ray(settings, n_symbols):
        return build_features(prices, market, sectors, macro=macro)
    with ray_session(settings):
        return build_features_ray(
            prices,
            market,
            sectors,
            macro=macro,
            out=settings.features.ray_output,
            sink=sink,
            collect=sink is None,
        )


def build_features_ray(
    prices: pd.DataFrame,
    market: pd.DataFrame | None,
    sectors: Mapping[str, str],
    features: Sequence[str] | None = None,
    dtype: npt.DTypeLike = np.float32,
    min_history: int = MIN_HISTORY,
    macro: pd.DataFrame | None = None,
    out: str | None = None,
    symbol_blocks: int | None = None,
    date_blocks: int | None = None,
    collect: bool = True,
    in_process: bool = False,
    sink: Callable[[pd.DataFrame, int], None] | None = None,
) -> FeatureResult:
    """:func:`~turbomode.features.engine.build_features` on the running Ray cluster.

    Same arguments and, with ``collect``, the same frame; ``out`` (a directory or ``s3://``
    URI) also receives the parts. ``collect=False`` leaves the rows in ``out`` only (the frame
    returned is empty, the report complete) — the way a universe larger than the driver's memory
    is built. Blocks default to two per cluster CPU, so a slow block does not hold up the rest.
    ``in_process`` runs the same blocks, shuffle and joins here, one after another, without
    Ray: the decomposition checked in seconds, or one block debugged. ``sink(frame, k)`` is
    called in each join task with symbol block ``k``'s rows (``collect=False`` and a sink need
    no ``out``).
    """
    runner: _Runner = _Inline() if in_process else _Ray()
    if not collect and out is None and sink is None:
        raise ValueError("collect=False needs out or a sink: the rows would go nowhere")
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = time.perf_counter() - t0 - sum(stages.values())

    selected = select_features(features)
    sym_names = [n for n in selected if n not in PANEL]
    panel_names = [n for n in selected if n in PANEL]
    p = prepare_prices(prices)
    layout = Layout.from_frame(p)
    ctx = MarketContext(market, macro)
    cpus = runner.cpus()
    n_sb = min(layout.n_symbols, symbol_blocks or 2 * cpus)
    n_db = min(len(layout.dates), date_blocks or 2 * cpus)
    sym_edges = np.linspace(0, layout.n_symbols, n_sb + 1).round().astype(np.intp)
    row_edges = np.r_[0, np.cumsum(layout.n_bars)][sym_edges]
    date_edges = layout.dates[np.linspace(0, len(layout.dates), n_db + 1).astype(np.intp)[:-1]]
    dt = np.dtype(dtype)
    event(
        log,
        "features.ray.start",
        symbols=layout.n_symbols,
        dates=len(layout.dates),
        rows=layout.n_rows,
        symbol_blocks=n_sb,
        date_blocks=n_db,
        cpus=cpus,
    )
    ctx_ref = runner.put(ctx)
    sectors_ref = runner.put(dict(sectors))
    symbols_ref = runner.put(layout.symbols)
    lap("prepare")

    sym_task = runner.task(_symbol_task, 2 + n_db)
    sym_out: list[Any] = []
    sym_keys: list[Any] = []
    pieces: list[list[Any]] = []  # [symbol block][date block]
    for k in range(n_sb):
        block = p.iloc[row_edges[k] : row_edges[k + 1]].reset_index(drop=True)
        refs = sym_task(block, ctx_ref, sectors_ref, sym_names, dt, date_edges, int(sym_edges[k]))
        sym_out.append(refs[0])
        sym_keys.append(refs[1])
        pieces.append(list(refs[2:]))
    del p
    date_task = runner.task(_date_task, n_sb)
    panel_out: list[list[Any]] = []  # [date block][symbol block]
    for j in range(n_db):
        refs = date_task(
            symbols_ref, ctx_ref, sectors_ref, panel_names, dt, *(pieces[k][j] for k in range(n_sb))
        )
        panel_out.append(list(refs) if n_sb > 1 else [refs])
    join = runner.task(_join_task, 1)
    joins = [
        join(
            sym_out[k],
            selected,
            sym_names,
            panel_names,
            date_edges,
            out,
            k,
            collect,
            sink,
            sym_keys[k],
            *(panel_out[j][k] for j in range(n_db)),
        )
        for k in range(n_sb)
    ]
    nan_count = np.zeros(len(selected), dtype=np.int64)
    got: dict[int, pd.DataFrame] = {}
    for i, (k, (part, counts)) in enumerate(runner.done(joins)):
        nan_count += counts
        if part is not None:
            got[k] = part
        event(log, "features.ray.block", block=k, done=i + 1, of=n_sb)
    lap("blocks")
    if collect:
        parts = [got[k] for k in range(n_sb)]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        del got, parts
    else:
        frame = pd.DataFrame(columns=["symbol", "date", *selected])
    report = feature_report(layout, ctx, sectors, selected, nan_count, min_history)
    lap("assemble")
    report.elapsed_s = time.perf_counter() - t0
    report.stage_s = stages
    event(log, "features.ray.done", rows=layout.n_rows, seconds=round(report.elapsed_s, 2))
    return FeatureResult(frame=frame, report=report)


def read_parts(out: str) -> pd.DataFrame:
    """The frame a build wrote to ``out``, in the engine's row order (the block column
    dropped)."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(out)
    table = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table()
    frame = table.to_pandas()
    frame = frame.sort_values("symbol_block", kind="stable").drop(columns="symbol_block")
    return frame.reset_index(drop=True)


def _date_block_of(
    dates: npt.NDArray[np.datetime64], date_edges: npt.NDArray[np.datetime64]
) -> npt.NDArray[np.intp]:
    return np.searchsorted(date_edges, dates, side="right").astype(np.intp) - 1


class _Runner(Protocol):
    def cpus(self) -> int: ...
    def put(self, value: Any) -> Any: ...
    def task(self, fn: Callable[..., Any], num_returns: int) -> Callable[..., Any]: ...
    def done(self, refs: list[Any]) -> Iterator[tuple[int, Any]]: ...


class _Ray:
    """Tasks on the running Ray cluster, one CPU each; results as they finish."""

    def __init__(self) -> None:
        import ray

        self.ray = ray

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def put(self, value: Any) -> Any:
        return self.ray.put(value)

    def task(self, fn: Callable[..., Any], num_returns: int) -> Callable[..., Any]:
        return self.ray.remote(num_cpus=1, num_returns=num_returns)(fn).remote

    def done(self, refs: list[Any]) -> Iterator[tuple[int, Any]]:
        pending = {ref: k for k, ref in enumerate(refs)}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            yield pending.pop(ready[0]), self.ray.get(ready[0])


class _Inline:
    """The same tasks called in this process, in submission order."""

    def cpus(self) -> int:
        return 1

    def put(self, value: Any) -> Any:
        return value

    def task(self, fn: Callable[..., Any], num_returns: int) -> Callable[..., Any]:
        return fn

    def done(self, refs: list[Any]) -> Iterator[tuple[int, Any]]:
        yield from enumerate(refs)


def _symbol_task(
    prices: pd.DataFrame,
    ctx: MarketContext,
    sectors: dict[str, str],
    names: list[str],
    dtype: np.dtype[Any],
    date_edges: npt.NDArray[np.datetime64],
    sym_offset: int,
) -> tuple[Any, ...]:
    """Per-symbol features of one block (output dtype, engine order) and, per date block, the
    rows the panel families read (float64, before the output cast, as the engine keeps them)."""
    layout, stream = symbol_features(prices, ctx, sectors)
    col_of = {n: j for j, n in enumerate(names)}
    block = np.empty((layout.n_rows, len(names)), dtype=dtype, order="F")
    needed: dict[str, Array] = {}
    for _, cols in stream:
        for name, v in cols.items():
            if name in CS_NEEDS:
                needed[name] = values(v)
            j = col_of.get(name)
            if j is not None:
                write_column(block[:, j], v)
    dates = prices["date"].to_numpy(dtype="datetime64[ns]")
    which = _date_block_of(dates, date_edges)
    sym_code = layout.sym_code + sym_offset
    pieces = []
    for j in range(len(date_edges)):
        rows = np.flatnonzero(which == j)
        pieces.append(Piece(sym_code[rows], dates[rows], {k: v[rows] for k, v in needed.items()}))
    return (block, prices[["symbol", "date"]], *pieces)


def _date_task(
    symbols: npt.NDArray[np.object_],
    ctx: MarketContext,
    sectors: dict[str, str],
    names: list[str],
    dtype: np.dtype[Any],
    *pieces: Piece,
) -> Any:
    """Panel features of one date block's rows, split back by symbol block."""
    sym_code = np.concatenate([pc.sym_code for pc in pieces])
    dates = np.concatenate([pc.dates for pc in pieces])
    date_code, uniq = pd.factorize(dates, sort=True)
    n_bars = np.bincount(sym_code, minlength=len(symbols)).astype(np.intp)
    starts = np.r_[0, np.cumsum(n_bars)[:-1]]
    layout = Layout(
        symbols=symbols,  # the whole universe: the same date-view columns as the engine
        dates=np.asarray(uniq, dtype="datetime64[ns]"),
        sym_code=sym_code,
        date_code=date_code.astype(np.intp),
        pos=np.arange(len(sym_code), dtype=np.intp) - starts[sym_code],
        n_bars=n_bars,
    )
    cols = {k: np.concatenate([pc.cols[k] for pc in pieces]) for k in pieces[0].cols}
    col_of = {n: j for j, n in enumerate(names)}
    block = np.empty((layout.n_rows, len(names)), dtype=dtype, order="F")
    for _, group in panel_features(layout, cols, ctx, sectors):
        for name, v in group.items():
            j = col_of.get(name)
            if j is not None:
                write_column(block[:, j], v)
    edges = np.cumsum([len(pc.sym_code) for pc in pieces])[:-1]
    split = np.split(block, edges)
    return tuple(split) if len(split) > 1 else split[0]


def _join_task(
    sym_block: npt.NDArray[Any],
    selected: list[str],
    sym_names: list[str],
    panel_names: list[str],
    date_edges: npt.NDArray[np.datetime64],
    out: str | None,
    k: int,
    collect: bool,
    sink: Callable[[pd.DataFrame, int], None] | None,
    keys: pd.DataFrame,
    *panel_parts: npt.NDArray[Any],
) -> tuple[pd.DataFrame | None, npt.NDArray[np.int64]]:
    """One symbol block's rows with every selected feature; written to ``out``."""
    block = np.empty((len(keys), len(selected)), dtype=sym_block.dtype, order="F")
    at = {n: j for j, n in enumerate(selected)}
    for i, n in enumerate(sym_names):
        block[:, at[n]] = sym_block[:, i]
    which = _date_block_of(keys["date"].to_numpy(dtype="datetime64[ns]"), date_edges)
    panel_cols = [at[n] for n in panel_names]
    for j, part in enumerate(panel_parts):
        rows = np.flatnonzero(which == j)
        for i, c in enumerate(panel_cols):
            block[rows, c] = part[:, i]
    counts = np.isnan(block).sum(axis=0).astype(np.int64)
    frame = pd.DataFrame(block, columns=selected, copy=False)
    frame.insert(0, "date", keys["date"].to_numpy())
    frame.insert(0, "symbol", keys["symbol"].to_numpy())
    if out is not None:
        _write_part(frame, out, k)
    if sink is not None:
        sink(frame, k)
    return (frame if collect else None), counts


def _write_part(frame: pd.DataFrame, out: str, k: int) -> None:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, root = pafs.FileSystem.from_uri(out)
    directory = f"{root.rstrip('/')}/symbol_block={k:05d}"
    fs.create_dir(directory, recursive=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, f"{directory}/part-0.parquet", filesystem=fs, compression="zstd")
