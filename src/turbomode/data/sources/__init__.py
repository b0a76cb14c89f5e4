"""Market data sources behind one interface; :func:`get_source` picks one from settings."""

from __future__ import annotations

from pathlib import Path

from turbomode.config import Settings
from turbomode.data.sources.base import MacroSource, MarketData, MarketDataSource
from turbomode.errors import SourceError

SOURCE_NAMES = ("synthetic", "parquet", "csv", "yfinance")
MACRO_SOURCE_NAMES = ("fred",)

__all__ = [
    "MACRO_SOURCE_NAMES",
    "SOURCE_NAMES",
    "MacroSource",
    "MarketData",
    "MarketDataSource",
    "get_macro_source",
    "get_source",
]


def get_source(
    settings: Settings, name: str | None = None, path: Path | str | None = None
) -> MarketDataSource:
    """Build the source named (default: ``settings.data.source``)."""
    name = name or settings.data.source
    if name == "synthetic":
        from turbomode.data.sources.synthetic import SyntheticSource

        return SyntheticSource(settings)
    if name in ("parquet", "csv"):
        from turbomode.data.sources.files import FileSource

        where = path or settings.data.source_path
        if where is None:
            raise SourceError(
                f"the {name} source needs a path: `turbomode ingest --source {name} PATH` "
                "or TURBOMODE_DATA__SOURCE_PATH"
            )
        return FileSource(where, settings, kind=name)  # type: ignore[arg-type]
    if name == "yfinance":
        from turbomode.data.sources.yahoo import YFinanceSource

        return YFinanceSource(settings)
    raise SourceError(f"unknown source {name!r}; choose one of {SOURCE_NAMES}")


def get_macro_source(settings: Settings, name: str = "fred") -> MacroSource:
    """Build the macro source named (FRED is the one there is)."""
    if name == "fred":
        from turbomode.data.sources.fred import FredSource

        return FredSource(settings)
    raise SourceError(f"unknown macro source {name!r}; choose one of {MACRO_SOURCE_NAMES}")
