"""The one entry point: every registered feature for every (symbol, date), all symbols at once.

Stages: per-symbol families (trend, oscillator, volatility, volume, market context) run in the
bar view; then cross-sectional and calendar families run on the finished per-symbol columns.
Output columns follow the registry, so the model and Feast read the same names.
"""

from __future__ import annotations

import mmap
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.config import SECTOR_ETFS
from turbomode.data.schema import KEY, PRICE_COLUMNS, PRICE_FIELDS, require_columns
from turbomode.errors import SchemaError
from turbomode.features.cross_sectional import CROSS_SECTIONAL, cross_sectional_features
from turbomode.features.cross_sectional import NEEDS as CS_NEEDS
from turbomode.features.indicators import Array
from turbomode.features.layout import Column, Gather, Layout, values
from turbomode.features.macro import MACRO, MACRO_NEEDS, macro_features
from turbomode.features.market import MARKET, MarketContext, market_features, sector_codes
from turbomode.features.registry import REGISTRY, SECTOR_ETF, select_features
from turbomode.features.technical import BAR_FAMILIES, Bars
from turbomode.features.temporal import TEMPORAL, temporal_features

MIN_HISTORY = 251
"""Bars a symbol needs before its longest window (ret_250, one year) has a value."""

_POPULATE_MIN_BYTES = 1 << 26
"""Output blocks at least this large are mapped with MAP_POPULATE (see output_block)."""

_GROUP_NAMES: dict[str, list[str]] = {
    **{g: names for g, (_, names) in BAR_FAMILIES.items()},
    "market": MARKET,
    "cross_sectional": CROSS_SECTIONAL,
    "temporal": TEMPORAL,
    "macro": MACRO,
}


@dataclass
class FeatureReport:
    """What a build did and what it could not do, for logs and the pipeline's metadata."""

    n_rows: int
    n_symbols: int
    n_dates: int
    features: list[str]
    short_history: dict[str, int] = field(default_factory=dict)
    """Symbols with fewer than ``min_history`` bars (their long windows stay NaN)."""
    missing_market: dict[str, list[str]] = field(default_factory=dict)
    """Absent market series → the features left NaN because of it."""
    missing_sector_etfs: dict[str, str] = field(default_factory=dict)
    """Sector → its ETF when the ETF is absent (sector-ETF features NaN for that sector)."""
    missing_macro: dict[str, list[str]] = field(default_factory=dict)
    """Absent macro series (by role) → the features left NaN because of it."""
    unmapped_symbols: list[str] = field(default_factory=list)
    """Symbols without a sector: sector features are NaN for them."""
    nan_share: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (``prepare``, ``per_symbol``, ``panel``, ``assemble``): where a build's
    time goes, and how much of it vectorizing the per-symbol families can win at most."""
    mode: str = "full"
    """full, incremental (the new dates only: turbomode.features.incremental) or current."""

    def summary(self) -> str:
        lines = [
            f"{len(self.features)} features × {self.n_rows:,} rows "
            f"({self.n_symbols} symbols, {self.n_dates} dates) in {self.elapsed_s:.1f} s"
        ]
        if self.stage_s:
            lines.append("stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.stage_s.items()))
        if self.short_history:
            lines.append(
                f"{len(self.short_history)} symbol(s) with short history: {self.short_history}"
            )
        for series, names in self.missing_market.items():
            lines.append(f"market series {series} absent → NaN: {names}")
        if self.missing_macro:
            roles = ", ".join(self.missing_macro)
            n = sum(len(v) for v in self.missing_macro.values())
            lines.append(f"macro series absent ({roles}) → {n} macro feature(s) NaN")
        if self.unmapped_symbols:
            lines.append(f"symbols without sector: {self.unmapped_symbols[:20]}")
        return "\n".join(lines)


@dataclass
class FeatureResult:
    """The feature frame (symbol, date, then one column per feature) and its report."""

    frame: pd.DataFrame
    report: FeatureReport

    @property
    def names(self) -> list[str]:
        return self.report.features


def prepare_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Canonical columns and dtypes, sorted by (symbol, date); duplicate keys are an error."""
    require_columns(prices, PRICE_COLUMNS, "prices")
    if prices.empty:
        raise SchemaError("prices is empty: nothing to compute features from")
    p = pd.DataFrame({"symbol": prices["symbol"].astype(str).to_numpy()})
    date = prices["date"]
    if not pd.api.types.is_datetime64_dtype(date):  # to_datetime scans a datetime column too
        date = pd.to_datetime(date)
    p["date"] = date.to_numpy(dtype="datetime64[ns]")
    for c in (*PRICE_FIELDS, "volume"):
        p[c] = prices[c].to_numpy(dtype=np.float64)
    sym = p["symbol"].to_numpy()
    d = p["date"].to_numpy()
    same = sym[1:] == sym[:-1]
    ordered = bool(p["symbol"].is_monotonic_increasing) and bool(np.all(d[1:][same] > d[:-1][same]))
    if not ordered:
        p = p.sort_values(KEY, kind="stable").reset_index(drop=True)
        sym, d = p["symbol"].to_numpy(), p["date"].to_numpy()
        same = sym[1:] == sym[:-1]
        dup = same & (d[1:] == d[:-1])
        if dup.any():
            shown = p.loc[np.flatnonzero(dup)[:5], KEY].to_dict("records")
            raise SchemaError(
                f"prices has {int(dup.sum())} duplicate (symbol, date) rows, e.g. {shown}"
            )
    return p


def _check(group: str, got: Iterable[str]) -> None:
    want = _GROUP_NAMES[group]
    got = list(got)
    if set(got) != set(want) or len(got) != len(want):
        raise RuntimeError(
            f"family {group!r} returned {sorted(set(got) - set(want))} not registered and "
            f"missed {sorted(set(want) - set(got))}"
        )


def symbol_features(
    prices: pd.DataFrame, ctx: MarketContext, sectors: Mapping[str, str]
) -> tuple[Layout, Iterator[tuple[str, dict[str, Column]]]]:
    """Per-symbol families on a prepared frame, as (group, columns) in registry order.

    Works for any set of symbols, one included, which is what the benchmark's loop runs."""
    layout = Layout.from_frame(prices)
    o, h, lo, c, v = (layout.to_bars(prices[k].to_numpy()) for k in (*PRICE_FIELDS, "volume"))
    bars = Bars(open=o, high=h, low=lo, close=c, volume=v)

    def run() -> Iterator[tuple[str, dict[str, Column]]]:
        # All-NaN windows (a symbol shorter than a window) are expected, not worth a warning.
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for group, (fn, _) in BAR_FAMILIES.items():
                seen = []
                for name, wide in fn(bars):  # one feature at a time: the sink takes it
                    seen.append(name)
                    yield group, {name: layout.bars_column(wide)}
                    del wide
                _check(group, seen)
            names, codes = sector_codes(layout, sectors)
            mk = market_features(layout, bars.ret1, ctx, names, codes)
            bars.release()
            _check("market", mk)
            yield "market", mk

    return layout, run()


def panel_features(
    layout: Layout, cols: dict[str, Array], ctx: MarketContext, sectors: Mapping[str, str]
) -> Iterator[tuple[str, dict[str, Column]]]:
    """Families that look across symbols (cross-sectional) or only at the date (temporal,
    macro)."""
    names, codes = sector_codes(layout, sectors)
    with np.errstate(divide="ignore", invalid="ignore"):
        cs = cross_sectional_features(layout, cols, ctx, names, codes)
    _check("cross_sectional", cs)
    yield "cross_sectional", cs
    tf = temporal_features(layout)
    _check("temporal", tf)
    yield "temporal", tf
    mf = macro_features(layout, ctx.macro)
    _check("macro", mf)
    yield "macro", mf


def build_features(
    prices: pd.DataFrame,
    market: pd.DataFrame | None,
    sectors: Mapping[str, str],
    features: Sequence[str] | None = None,
    dtype: npt.DTypeLike = np.float32,
    min_history: int = MIN_HISTORY,
    macro: pd.DataFrame | None = None,
) -> FeatureResult:
    """Compute features for every (symbol, date) row of ``prices``.

    ``market`` holds SPY, ^VIX, QQQ, IWM and sector ETFs in the same long shape (already on the
    adjusted basis); ``sectors`` maps symbol → GICS sector; ``macro`` the macro series'
    vintages (turbomode.data.macro; None: the macro group is NaN and reported). ``features``
    picks a subset (unknown names raise
    :class:`~turbomode.features.registry.UnknownFeatureError` before any work); ``dtype``
    float32 halves memory, float64 keeps full precision. Row t of every feature uses data
    dated ≤ t only (macro values: released ≤ t); warm-up rows are NaN.
    """
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:
        stages[stage] = time.perf_counter() - t0 - sum(stages.values())

    selected = select_features(features)
    p = prepare_prices(prices)
    ctx = MarketContext(market, macro)
    layout, stream = symbol_features(p, ctx, sectors)
    col_of = {n: j for j, n in enumerate(selected)}
    block = output_block(layout.n_rows, len(selected), np.dtype(dtype))
    lap("prepare")
    nan_count = np.zeros(len(selected), dtype=np.int64)
    needed: dict[str, Array] = {}

    def sink(group_cols: dict[str, Column]) -> None:
        for name, v in group_cols.items():
            if name in CS_NEEDS:
                needed[name] = values(v)
            j = col_of.get(name)
            if j is not None:
                nan_count[j] = write_column(block[:, j], v)

    for _, cols in stream:
        sink(cols)
    lap("per_symbol")
    for _, cols in panel_features(layout, needed, ctx, sectors):
        sink(cols)
    needed.clear()
    lap("panel")

    frame = pd.DataFrame(block, columns=selected, copy=False)
    frame.insert(0, "date", p["date"].to_numpy())
    frame.insert(0, "symbol", p["symbol"].to_numpy())
    report = feature_report(layout, ctx, sectors, selected, nan_count, min_history)
    lap("assemble")
    report.elapsed_s = time.perf_counter() - t0
    report.stage_s = stages
    return FeatureResult(frame=frame, report=report)


def write_column(col: npt.NDArray[Any], v: Column) -> int:
    """Write a family's column into an output column (±inf → NaN); its NaN count.

    The one cast from a family's float64 to the output dtype, shared with the Ray build
    (turbomode.features.distributed) so both give the same bits."""
    with np.errstate(invalid="ignore", over="ignore"):  # ±inf → NaN just below
        if isinstance(v, Gather):
            v.into(col)  # straight from the 2-D view into the output column
        else:
            np.copyto(col, v, casting="unsafe")
    inf = np.isinf(col)
    if inf.any():
        col[inf] = np.nan
    return int(np.count_nonzero(np.isnan(col)))  # while the column is in cache


def output_block(n_rows: int, n_cols: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The (rows × features) output, Fortran order, its pages mapped up front on Linux.

    The block is the build's largest allocation (≈ 640 MB for seven years of the S&P 500);
    faulting it in page by page as the columns are written is slower, and slower still in a
    virtual machine, than one ``MAP_POPULATE`` mapping. Elsewhere: plain ``np.empty``."""
    size = n_rows * n_cols * dtype.itemsize
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or size < max(_POPULATE_MIN_BYTES, 1):  # not Linux, or small
        return np.empty((n_rows, n_cols), dtype=dtype, order="F")
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return np.frombuffer(buf, dtype=dtype).reshape((n_cols, n_rows)).T


def feature_report(
    layout: Layout,
    ctx: MarketContext,
    sectors: Mapping[str, str],
    selected: list[str],
    nan_count: npt.NDArray[np.int64],
    min_history: int,
) -> FeatureReport:
    sel = set(selected)
    short = {
        str(s): int(n)
        for s, n in zip(layout.symbols, layout.n_bars, strict=True)
        if n < min_history
    }
    missing: dict[str, list[str]] = {}
    for series in ("SPY", "^VIX", "QQQ", "IWM"):
        if not ctx.has(series):
            hit = [n for n in REGISTRY.needing(series) if n in sel]
            if hit:
                missing[series] = hit
    used_sectors = {sectors[s] for s in layout.symbols if s in sectors}
    missing_etfs = {
        sec: SECTOR_ETFS.get(sec, "?")
        for sec in sorted(used_sectors)
        if not ctx.has(SECTOR_ETFS.get(sec, ""))
    }
    if missing_etfs:
        hit = [n for n in REGISTRY.needing(SECTOR_ETF) if n in sel]
        for sec, etf in missing_etfs.items():
            missing[f"{etf} ({sec})"] = hit
    missing_macro: dict[str, list[str]] = {}
    for spec in REGISTRY.select(selected):
        for need in spec.needs:
            role = need.removeprefix(MACRO_NEEDS)
            if need.startswith(MACRO_NEEDS) and role not in ctx.macro.roles:
                missing_macro.setdefault(role, []).append(spec.name)
    share = nan_count / max(layout.n_rows, 1)
    nan_share = dict(zip(selected, share.tolist(), strict=True))
    return FeatureReport(
        n_rows=layout.n_rows,
        n_symbols=layout.n_symbols,
        n_dates=len(layout.dates),
        features=list(selected),
        short_history=short,
        missing_market=missing,
        missing_sector_etfs=missing_etfs,
        missing_macro=missing_macro,
        unmapped_symbols=sorted(str(s) for s in layout.symbols if s not in sectors),
        nan_share=nan_share,
    )
