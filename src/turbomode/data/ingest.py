"""Ingest: load from a source, validate, write the clean store and a quarantine report.

The clean store is the hand-off to everything downstream (features, training, scans). Every
file in it is replaced atomically, so re-running ingest after a crash gives the same state.

Its last step is the macro step (``macro.source``, :func:`refresh_macro`): the macro series'
vintages (``clean/macro.parquet``) come with the market data (the synthetic market's), from
FRED (refreshed at every ingest, so the nightly chain refreshes them), or not at all — and a
data directory never keeps one market's macro series beside another's prices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from turbomode.config import Settings
from turbomode.data.macro import (
    MacroReport,
    read_macro,
    remove_macro,
    stored_macro_source,
    validate_macro,
    write_macro,
)
from turbomode.data.sources import (
    MacroSource,
    MarketData,
    MarketDataSource,
    get_macro_source,
    get_source,
)
from turbomode.data.sources.base import DateLike, date_range, describe_selection
from turbomode.data.universe import Universe
from turbomode.data.validation import ValidationResult, validate_prices
from turbomode.errors import SourceError
from turbomode.io import atomic_write_json, atomic_write_parquet, atomic_write_text
from turbomode.job_metrics import job_metrics
from turbomode.logs import event

log = logging.getLogger("turbomode.ingest")
STEPS = ("load", "validate prices", "validate market", "write", "macro")


@dataclass
class IngestReport:
    """What one ingest run did, for the console, the JSON report and metrics."""

    source: str
    prices: ValidationResult
    market: ValidationResult
    universe: Universe
    skipped: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    macro: MacroReport | None = None

    def summary(self) -> dict[str, Any]:
        clean = self.prices.clean
        out = {
            "source": self.source,
            "rows_in": self.prices.rows_in,
            "rows_clean": self.prices.rows_out,
            "rows_quarantined": len(self.prices.quarantine),
            "market_rows_in": self.market.rows_in,
            "market_rows_clean": self.market.rows_out,
            "market_rows_quarantined": len(self.market.quarantine),
            "symbols": int(clean["symbol"].nunique()) if len(clean) else 0,
            "market_symbols": sorted(self.market.clean["symbol"].unique().tolist()),
            "first_date": str(clean["date"].min().date()) if len(clean) else None,
            "last_date": str(clean["date"].max().date()) if len(clean) else None,
            "universe_size": len(self.universe),
            "rules": {"prices": self.prices.counts(), "market": self.market.counts()},
            "skipped": self.skipped,
            "paths": self.paths,
            "seconds": round(self.seconds, 3),
        }
        if self.macro is not None:
            out["macro"] = self.macro.summary()
        return out


def _report_frame(prices: ValidationResult, market: ValidationResult, part: str) -> pd.DataFrame:
    frames = []
    for table, result in (("prices", prices), ("market", market)):
        rep = getattr(result, part)
        if len(rep):
            frames.append(rep.assign(table=table))
    if not frames:
        return pd.DataFrame(columns=["table", "symbol", "date", "rule", "value"])
    out = pd.concat(frames, ignore_index=True)
    return out[["table", "symbol", "date", "rule", "value"]]


def validate_market_data(
    md: MarketData, settings: Settings
) -> tuple[ValidationResult, ValidationResult]:
    """Validate stocks (only universe members pass) and market series."""
    prices = validate_prices(
        md.prices, settings.validation, known_symbols=set(md.universe.symbols), what="prices"
    )
    market = validate_prices(md.market, settings.validation, what="market")
    return prices, market


def write_clean(report: IngestReport, directory: Path) -> dict[str, str]:
    """Write the clean store; each file atomically."""
    paths = {
        "prices": directory / "prices.parquet",
        "market": directory / "market.parquet",
        "quarantine": directory / "quarantine.csv",
        "flags": directory / "flags.csv",
        "report": directory / "ingest_report.json",
    }
    atomic_write_parquet(report.prices.clean, paths["prices"])
    atomic_write_parquet(report.market.clean, paths["market"])
    report.universe.save(directory)
    for part in ("quarantine", "flags"):
        frame = _report_frame(report.prices, report.market, part)
        atomic_write_text(frame.to_csv(index=False), paths[part])
    report.paths = {k: str(v) for k, v in paths.items()}
    report.paths["universe"] = str(directory / "universe.parquet")
    atomic_write_json(report.summary(), paths["report"])
    return report.paths


def ingest(
    settings: Settings,
    source: MarketDataSource | None = None,
    symbols: Sequence[str] | None = None,
    start: DateLike = None,
    end: DateLike = None,
    on_step: Callable[[str], None] | None = None,
    write: bool = True,
) -> IngestReport:
    """Load → validate → write the clean store. ``on_step`` is told as each step ends."""
    step = on_step or (lambda _name: None)
    t0 = time.perf_counter()
    date_range(start, end)  # a start after the end fails here, before any source is asked
    src = source or get_source(settings)
    with job_metrics("ingest", settings.stores.pushgateway_url) as metrics:
        event(log, "ingest.start", source=src.name, symbols=len(symbols) if symbols else "all")
        md = src.load(symbols, start, end)
        step("load")
        prices, market = validate_market_data(md, settings)
        step("validate prices")
        step("validate market")
        metrics.rows.labels(stage="in").inc(prices.rows_in)
        metrics.rows.labels(stage="clean").inc(prices.rows_out)
        metrics.rows.labels(stage="quarantined").inc(len(prices.quarantine))
        if prices.rows_out == 0:
            raise SourceError(
                f"no clean price rows from source {src.name!r}"
                f"{describe_selection(symbols, start, end)} "
                f"({prices.rows_in} in, {len(prices.quarantine)} quarantined)"
            )
        report = IngestReport(src.name, prices, market, md.universe, md.skipped)
        if write:
            write_clean(report, settings.data.clean_dir)
        step("write")
        if write:
            report.macro = refresh_macro(settings, md)
        step("macro")
        report.seconds = time.perf_counter() - t0
        if write:
            atomic_write_json(report.summary(), report.paths["report"])
    event(
        log,
        "ingest.done",
        source=src.name,
        rows_in=prices.rows_in,
        rows_clean=prices.rows_out,
        quarantined=len(prices.quarantine),
        seconds=round(report.seconds, 3),
    )
    return report


def refresh_macro(settings: Settings, md: MarketData) -> MacroReport:
    """The ingest's macro step, by ``macro.source``: ``fred`` refreshes from FRED (a failure
    is logged and reported, and the stored series stay: the market data must not wait for
    FRED); ``market`` writes the market source's own series, or — when it has none — removes
    what another market source left (series fetched from FRED stay); ``none`` removes them."""
    directory = settings.data.clean_dir
    mode = settings.macro.source
    if mode == "fred":
        try:
            return ingest_macro(settings)
        except SourceError as exc:
            event(log, "ingest.macro_failed", logging.WARNING, error=str(exc))
            kept = stored_macro_source(directory) is not None
            return MacroReport("fred", error=str(exc), action="kept" if kept else "none")
    if mode == "market" and md.macro is not None:
        report = MacroReport(md.source, validate_macro(md.macro))
        write_macro(report, directory)
        return report
    stored = stored_macro_source(directory)
    if mode == "market" and stored == "fred":
        return MacroReport("fred", action="kept")
    removed = remove_macro(directory)
    if removed:
        event(log, "ingest.macro_removed", previous=stored, source=md.source, mode=mode)
    return MacroReport(
        md.source if mode == "market" else "none", action="removed" if removed else "none"
    )


def ingest_macro(
    settings: Settings,
    source: MacroSource | None = None,
    start: DateLike = None,
    end: DateLike = None,
    write: bool = True,
) -> MacroReport:
    """Macro series from a macro source (default FRED) → validation → ``clean/macro.parquet``:
    what ``turbomode ingest --source fred`` runs. Prices are not touched."""
    t0 = time.perf_counter()
    src = source or get_macro_source(settings)
    with job_metrics("ingest_macro", settings.stores.pushgateway_url) as metrics:
        event(log, "ingest.macro.start", source=src.name)
        checked = validate_macro(src.load(start, end))
        metrics.rows.labels(stage="in").inc(checked.rows_in)
        metrics.rows.labels(stage="clean").inc(len(checked.clean))
        metrics.rows.labels(stage="quarantined").inc(len(checked.quarantine))
        if checked.clean.empty:
            raise SourceError(
                f"no clean macro rows from source {src.name!r} "
                f"({checked.rows_in} in, {len(checked.quarantine)} quarantined)"
            )
        report = MacroReport(src.name, checked)
        report.seconds = time.perf_counter() - t0
        if write:
            write_macro(report, settings.data.clean_dir)
    event(
        log,
        "ingest.macro.done",
        source=src.name,
        rows_in=checked.rows_in,
        rows_clean=len(checked.clean),
        quarantined=len(checked.quarantine),
        seconds=round(report.seconds, 3),
    )
    return report


def load_clean(settings: Settings) -> MarketData:
    """Read the clean store written by :func:`ingest` (what downstream stages consume); its
    macro series when it holds any."""
    directory = settings.data.clean_dir
    if not (directory / "prices.parquet").exists():
        raise SourceError(f"no clean store at {directory}: run `turbomode ingest` first")
    return MarketData(
        prices=pd.read_parquet(directory / "prices.parquet"),
        market=pd.read_parquet(directory / "market.parquet"),
        universe=Universe.read(directory, settings.universe),
        source="clean",
        macro=read_macro(directory),
    )
