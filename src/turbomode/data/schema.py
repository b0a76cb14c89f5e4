"""The one long price frame every source returns and every consumer reads."""

from __future__ import annotations

import pandas as pd

from turbomode.errors import SchemaError

PRICE_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "volume")
PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close")
KEY: list[str] = ["symbol", "date"]


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a SchemaError naming every missing column."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{what} is missing column(s) {missing}; it has {sorted(map(str, frame.columns))}"
        )


def empty_prices() -> pd.DataFrame:
    """An empty frame with the canonical dtypes."""
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "date": pd.Series(dtype="datetime64[ns]"),
            **{c: pd.Series(dtype="float64") for c in (*PRICE_FIELDS, "volume")},
        }
    )


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in canonical order first, rows sorted by (symbol, date), a fresh index."""
    extra = [c for c in frame.columns if c not in PRICE_COLUMNS]
    out = frame[list(PRICE_COLUMNS) + extra]
    return out.sort_values(KEY, kind="stable").reset_index(drop=True)
