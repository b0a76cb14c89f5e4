"""The S&P 500 list page parser, on a hand-written page in Wikipedia's markup (not a capture:
the test machines cannot reach Wikipedia)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from turbomode.data.sp500_page import (
    OUTPUT_COLUMNS,
    SP500_URL,
    fetch_sp500_constituents,
    parse_sp500_page,
)
from turbomode.data.universe import Universe
from turbomode.errors import SchemaError, SourceError

PAGE = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "handwritten_sp500"
    / "list_of_sp500_companies.html"
)


@pytest.fixture(scope="module")
def html() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_parses_constituents_table(html: str) -> None:
    df = parse_sp500_page(html)
    assert list(df.columns) == list(OUTPUT_COLUMNS)
    assert df["symbol"].tolist() == ["AAPL", "BF-B", "BRK-B", "JPM", "MMM", "MSFT"]
    brk = df.set_index("symbol").loc["BRK-B"]
    assert brk["name"] == "Berkshire Hathaway"
    assert brk["sector"] == "Financials"
    assert brk["sub_industry"] == "Multi-Sector Holdings"
    assert brk["date_added"] == pd.Timestamp("2010-02-16")
    assert brk["cik"] == "0001067983"  # leading zeros kept
    aapl = df.set_index("symbol").loc["AAPL"]
    assert aapl["sub_industry"] == "Technology Hardware, Storage & Peripherals"
    # A footnote marker after the date ("1982-10-31[4]") does not spoil it.
    assert df.set_index("symbol").loc["BF-B", "date_added"] == pd.Timestamp("1982-10-31")
    assert df["date_added"].dtype == "datetime64[ns]"
    # Only the constituents table is read, not the "changes" table below it.
    assert "BIO" not in set(df["symbol"])


def test_result_builds_a_universe(html: str) -> None:
    uni = Universe.from_frames(parse_sp500_page(html))
    assert len(uni) == 6
    assert uni.sector_of("BF-B") == "Consumer Staples"
    assert uni.select(sector="Information Technology") == ["AAPL", "MSFT"]


def test_page_without_table_is_a_schema_error() -> None:
    page = "<html><body><h1>List of S&amp;P 500 companies</h1><table><tr><td>x</td></tr></table>"
    with pytest.raises(SchemaError, match='no table with id="constituents"'):
        parse_sp500_page(page)
    with pytest.raises(SchemaError, match="empty"):
        parse_sp500_page("  ")


def test_missing_column_is_named(html: str) -> None:
    broken = html.replace("<th>GICS Sub-Industry</th>", "<th>Industry</th>")
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['GICS Sub-Industry'\]"):
        parse_sp500_page(broken)


def test_table_without_rows_is_a_schema_error() -> None:
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "Symbol",
            "Security",
            "GICS Sector",
            "GICS Sub-Industry",
            "Headquarters Location",
            "Date added",
            "CIK",
            "Founded",
        )
    )
    page = f'<table id="constituents"><tbody><tr>{header}</tr></tbody></table>'
    with pytest.raises(SchemaError, match="no rows"):
        parse_sp500_page(page)


class _Resp:
    def __init__(self, text: str, status: int) -> None:
        self.text = text
        self.status_code = status

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


class _Session:
    def __init__(self, text: str, status: int = 200) -> None:
        self.response = _Resp(text, status)
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def get(self, url: str, **kwargs: Any) -> _Resp:
        self.seen.append((url, kwargs))
        return self.response


def test_fetch_uses_a_timeout_and_a_user_agent(html: str) -> None:
    session = _Session(html)
    df = fetch_sp500_constituents(session=session)
    assert len(df) == 6
    url, kwargs = session.seen[0]
    assert url == SP500_URL
    assert kwargs["timeout"] > 0
    assert "turbomode" in kwargs["headers"]["User-Agent"]


def test_fetch_http_error_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="could not fetch the S&P 500 list"):
        fetch_sp500_constituents(session=_Session("", status=503))
