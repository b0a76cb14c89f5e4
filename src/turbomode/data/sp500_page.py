"""The S&P 500 constituents from Wikipedia's public "List of S&P 500 companies" page.

The page is the only free, regularly maintained list with GICS sectors; the live source
builds its universe from it when no constituents file is configured. Parsing is kept apart
from fetching so the parser can be tested on a stored page.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import lxml.html
import pandas as pd

from turbomode.errors import SchemaError, SourceError

SP500_URL = "https://en.wikipedia.org/wiki/List_of_S%26P_500_companies"
TABLE_ID = "constituents"
# Page header -> our column. Headquarters and Founded are on the page but not needed.
COLUMNS: dict[str, str] = {
    "Symbol": "symbol",
    "Security": "name",
    "GICS Sector": "sector",
    "GICS Sub-Industry": "sub_industry",
    "Date added": "date_added",
    "CIK": "cik",
}
OUTPUT_COLUMNS: tuple[str, ...] = tuple(COLUMNS.values())
# Wikipedia asks automated clients to identify themselves; anonymous ones may get HTTP 403.
USER_AGENT = "turbomode/0.1 (S&P 500 constituents list; batch research job)"

_FOOTNOTE = re.compile(r"\[[^\]]*\]")
_ISO_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")


class _HttpGetter(Protocol):
    def get(self, url: str, **kwargs: Any) -> Any: ...


def _cell_text(cell: Any) -> str:
    """Visible text of a cell without footnote markers such as '[3]'."""
    return " ".join(_FOOTNOTE.sub("", cell.text_content()).split())


def yahoo_symbol(symbol: str) -> str:
    """Wikipedia writes class shares with a dot (BRK.B); Yahoo uses a dash (BRK-B)."""
    return symbol.strip().upper().replace(".", "-")


def parse_sp500_page(html: str) -> pd.DataFrame:
    """Parse the constituents table into symbol, name, sector, sub_industry, date_added, cik.

    Raises SchemaError when the table or one of the needed columns is missing, so a change to
    the page's layout stops the job with a clear message instead of an empty universe.
    """
    if not html or not html.strip():
        raise SchemaError("S&P 500 page is empty")
    doc = lxml.html.fromstring(html)
    tables = doc.xpath(f'//table[@id="{TABLE_ID}"]')
    if not tables:
        raise SchemaError(
            f'S&P 500 page has no table with id="{TABLE_ID}"; the page layout may have changed'
        )
    rows = tables[0].xpath("./tr | ./thead/tr | ./tbody/tr")
    header_idx = next(
        (i for i, r in enumerate(rows) if r.xpath("./th") and not r.xpath("./td")), None
    )
    if header_idx is None:
        raise SchemaError(f'S&P 500 table "{TABLE_ID}" has no header row')
    header = [_cell_text(c) for c in rows[header_idx].xpath("./th | ./td")]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise SchemaError(
            f'S&P 500 table "{TABLE_ID}" is missing column(s) {missing}; it has {header}'
        )
    where = {name: header.index(name) for name in COLUMNS}

    records: list[dict[str, str]] = []
    for row in rows[header_idx + 1 :]:
        cells = [_cell_text(c) for c in row.xpath("./th | ./td")]
        if not any(cells):
            continue
        if len(cells) != len(header):
            raise SchemaError(
                f"S&P 500 table row has {len(cells)} cells, the header has {len(header)}: {cells}"
            )
        records.append({out: cells[where[name]] for name, out in COLUMNS.items()})
    if not records:
        raise SchemaError(f'S&P 500 table "{TABLE_ID}" has no rows')

    frame = pd.DataFrame.from_records(records, columns=list(OUTPUT_COLUMNS))
    empty = frame["symbol"] == ""
    if empty.any():
        raise SchemaError(f"S&P 500 table has {int(empty.sum())} row(s) without a symbol")
    frame["symbol"] = frame["symbol"].map(yahoo_symbol)
    # Keep the first ISO date of the cell; older rows sometimes add a note after it.
    frame["date_added"] = pd.to_datetime(
        frame["date_added"].str.extract(_ISO_DATE.pattern, expand=False), errors="coerce"
    ).astype("datetime64[ns]")
    # CIK stays text: it is an identifier with meaningful leading zeros.
    frame["cik"] = frame["cik"].str.strip()
    return frame.sort_values("symbol", kind="stable").reset_index(drop=True)


def fetch_sp500_constituents(
    url: str = SP500_URL,
    session: _HttpGetter | None = None,
    timeout: float = 30.0,
) -> pd.DataFrame:
    """Download the page and parse it; network and HTTP failures raise SourceError."""
    import requests

    try:
        get = session.get if session is not None else requests.get
        response = get(url, timeout=timeout, headers={"User-Agent": USER_AGENT})
        response.raise_for_status()
    except Exception as exc:
        raise SourceError(f"could not fetch the S&P 500 list from {url}: {exc}") from exc
    return parse_sp500_page(response.text)
