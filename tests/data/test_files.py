"""Parquet/CSV source: directory and single-file layouts, pushdown filters, adj_close rebase,
and ../shared/data read in place."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import Settings
from turbomode.data.sources import get_source
from turbomode.data.sources.files import FileSource, rebase_adjusted
from turbomode.errors import SourceError, UnknownSymbolError

from .test_validation import good_frame


def write_dir(tmp_path: Path, fmt: str = "parquet") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prices = good_frame(("AAA", "BBB"))
    prices["date"] = prices["date"].dt.strftime("%Y-%m-%d")
    market = good_frame(("SPY",))
    market["date"] = market["date"].dt.strftime("%Y-%m-%d")
    market["adj_close"] = market["close"] * 0.9
    if fmt == "parquet":
        prices.to_parquet(tmp_path / "prices.parquet", index=False)
        market.to_parquet(tmp_path / "market.parquet", index=False)
    else:
        prices.to_csv(tmp_path / "prices.csv", index=False)
        market.to_csv(tmp_path / "market.csv", index=False)
    pd.DataFrame(
        {"symbol": ["AAA", "BBB", "CCC"], "sector": ["Energy", "Utilities", "Materials"]}
    ).to_csv(tmp_path / "constituents.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_directory_layout_with_filters(tmp_path: Path, fmt: str) -> None:
    src = get_source(Settings(), fmt, write_dir(tmp_path, fmt))
    md = src.load(["AAA"], "2024-01-02", "2024-01-04")
    assert md.source == fmt
    assert set(md.prices["symbol"]) == {"AAA"}
    assert sorted(pd.to_datetime(md.prices["date"]).dt.day.tolist()) == [2, 3, 4]
    assert set(md.market["symbol"]) == {"SPY"}
    assert len(md.universe) == 3


def test_skipped_reports_symbols_without_rows(tmp_path: Path) -> None:
    md = FileSource(write_dir(tmp_path)).load(["AAA", "CCC"])
    assert md.skipped == {"CCC": "no price rows in the file"}
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        FileSource(tmp_path).load(["NOPE"])


def test_market_adj_close_rebases_all_prices() -> None:
    frame = pd.DataFrame(
        {
            "symbol": ["SPY"],
            "date": ["2024-01-02"],
            "open": [100.0],
            "high": [110.0],
            "low": [90.0],
            "close": [105.0],
            "adj_close": [84.0],
            "volume": [1.0],
        }
    )
    out = rebase_adjusted(frame)
    assert "adj_close" not in out
    np.testing.assert_allclose(out[["open", "high", "low", "close"]].iloc[0], [80, 88, 72, 84])


def test_clear_errors_for_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        FileSource(tmp_path / "nope")
    with pytest.raises(SourceError, match="no prices"):
        FileSource(tmp_path)
    good_frame().to_parquet(tmp_path / "prices.parquet")
    with pytest.raises(SourceError, match="constituents"):
        FileSource(tmp_path)
    with pytest.raises(SourceError, match="needs a path"):
        get_source(Settings(), "parquet")
    with pytest.raises(SourceError, match="unknown source"):
        get_source(Settings(), "bloomberg")


@pytest.mark.realdata
def test_shared_data_is_read_in_place(shared_data_dir: Path) -> None:
    md = FileSource(shared_data_dir).load(["AAPL", "BRK-B"], "2024-06-01", "2024-06-28")
    assert set(md.prices["symbol"]) == {"AAPL", "BRK-B"}
    assert md.prices.groupby("symbol").size().tolist() == [19, 19]
    spy = md.market[md.market["symbol"] == "SPY"]
    assert len(spy) == 19
    # Rebased: SPY's open/high/low are on the dividend-adjusted basis, like the close.
    assert (spy["low"] <= spy["close"]).all() and (spy["close"] <= spy["high"]).all()
    assert md.universe.sector_of("AAPL") == "Information Technology"
