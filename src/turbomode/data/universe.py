"""The tradable universe: sector, sub-industry, market cap, cap class, tier and membership.

Membership intervals let a backtest on a past date use that date's members, which is the
only defence a survivors-only price file has against survivorship bias.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from turbomode.config import GICS_SECTORS, TierName, UniverseSettings
from turbomode.data.schema import require_columns
from turbomode.errors import SchemaError, UnknownSectorError, UnknownSymbolError
from turbomode.io import read_table

CAP_CLASSES: tuple[str, ...] = ("large", "mid", "small")
TIERS: tuple[str, ...] = get_args(TierName)
DEFAULT_TIER = "Average"
MEMBER_COLUMNS: tuple[str, ...] = (
    "symbol",
    "name",
    "sector",
    "sub_industry",
    "market_cap",
    "cap_class",
    "tier",
)


def cap_class(market_cap: pd.Series, settings: UniverseSettings) -> pd.Series:
    """Large/mid/small from market cap (USD); a missing cap is 'unknown', never guessed."""
    cap = pd.to_numeric(market_cap, errors="coerce")
    out = np.select(
        [cap >= settings.large_cap_min, cap >= settings.mid_cap_min, cap > 0],
        ["large", "mid", "small"],
        default="unknown",
    )
    return pd.Series(out, index=market_cap.index, dtype=object)


def _empty_intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "start_date": pd.Series(dtype="datetime64[ns]"),
            "end_date": pd.Series(dtype="datetime64[ns]"),
        }
    )


def _check_sectors(sectors: pd.Series) -> None:
    bad = sorted(set(sectors.dropna()) - set(GICS_SECTORS))
    if bad:
        raise UnknownSectorError(
            f"unknown sector(s) {bad}; expected one of the 11 GICS sectors: {list(GICS_SECTORS)}"
        )
    if sectors.isna().any():
        raise UnknownSectorError("every symbol needs a sector; some rows have none")


@dataclass(frozen=True)
class Universe:
    """Constituents (one row per symbol) and membership intervals (many per symbol)."""

    members: pd.DataFrame
    intervals: pd.DataFrame = field(default_factory=lambda: _empty_intervals())

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        constituents: pd.DataFrame,
        settings: UniverseSettings | None = None,
        intervals: pd.DataFrame | None = None,
    ) -> Universe:
        """Normalize a constituents frame (symbol, sector required) and optional intervals."""
        settings = settings or UniverseSettings()
        require_columns(constituents, ["symbol", "sector"], "constituents")
        m = constituents.copy()
        m["symbol"] = m["symbol"].astype(str).str.strip()
        dup = m["symbol"][m["symbol"].duplicated()].unique().tolist()
        if dup:
            raise SchemaError(f"constituents list symbol(s) more than once: {dup[:20]}")
        _check_sectors(m["sector"])
        for col in ("name", "sub_industry"):
            if col not in m:
                m[col] = ""
        if "market_cap" not in m:
            m["market_cap"] = np.nan
        m["market_cap"] = pd.to_numeric(m["market_cap"], errors="coerce")
        m["cap_class"] = cap_class(m["market_cap"], settings)
        unknown_tiered = sorted(set(settings.tiers) - set(m["symbol"]))
        if unknown_tiered:
            raise UnknownSymbolError(unknown_tiered, "the universe (tiers in config)")
        m["tier"] = m["symbol"].map(settings.tiers).fillna(DEFAULT_TIER)
        extra = [c for c in m.columns if c not in MEMBER_COLUMNS]
        members = m[list(MEMBER_COLUMNS) + extra].sort_values("symbol").reset_index(drop=True)

        iv = _empty_intervals()
        if intervals is not None and len(intervals):
            require_columns(intervals, ["symbol", "start_date", "end_date"], "membership")
            iv = pd.DataFrame(
                {
                    "symbol": intervals["symbol"].astype(str).str.strip(),
                    "start_date": pd.to_datetime(intervals["start_date"], errors="coerce"),
                    "end_date": pd.to_datetime(intervals["end_date"], errors="coerce"),
                }
            )
            if iv["start_date"].isna().any():
                raise SchemaError("membership intervals have rows without a valid start_date")
            iv = iv.sort_values(["symbol", "start_date"]).reset_index(drop=True)
        return cls(members=members, intervals=iv)

    @classmethod
    def load(
        cls,
        constituents_path: Path | str,
        membership_path: Path | str | None = None,
        settings: UniverseSettings | None = None,
    ) -> Universe:
        """Read a constituents CSV/parquet and optional membership intervals."""
        cons = _read_table(Path(constituents_path))
        iv = _read_table(Path(membership_path)) if membership_path else None
        return cls.from_frames(cons, settings, iv)

    def save(self, directory: Path | str) -> None:
        """Write members and intervals as parquet next to the clean prices."""
        from turbomode.io import atomic_write_parquet

        directory = Path(directory)
        atomic_write_parquet(self.members, directory / "universe.parquet")
        atomic_write_parquet(self.intervals, directory / "membership.parquet")

    @classmethod
    def read(cls, directory: Path | str, settings: UniverseSettings | None = None) -> Universe:
        """Read a universe written by :meth:`save`."""
        directory = Path(directory)
        members = pd.read_parquet(directory / "universe.parquet")
        iv_path = directory / "membership.parquet"
        intervals = pd.read_parquet(iv_path) if iv_path.exists() else None
        return cls.from_frames(members, settings, intervals)

    # ---- queries ------------------------------------------------------------------------
    @property
    def symbols(self) -> list[str]:
        return self.members["symbol"].tolist()

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, symbol: object) -> bool:
        return symbol in set(self.members["symbol"])

    def require(self, symbols: Iterable[str]) -> list[str]:
        """Return the symbols if all are known; otherwise raise naming the unknown ones."""
        wanted = list(symbols)
        unknown = sorted(set(wanted) - set(self.members["symbol"]))
        if unknown:
            raise UnknownSymbolError(unknown)
        return wanted

    def sector_of(self, symbol: str) -> str:
        row = self.members.loc[self.members["symbol"] == symbol, "sector"]
        if row.empty:
            raise UnknownSymbolError([symbol])
        return str(row.iloc[0])

    def sector_map(self) -> dict[str, str]:
        return dict(zip(self.members["symbol"], self.members["sector"], strict=True))

    def select(self, sector: str | None = None, cap: str | None = None) -> list[str]:
        """Symbols of one sector and/or cap class; names are checked, not silently empty."""
        m = self.members
        if sector is not None:
            if sector not in GICS_SECTORS:
                raise UnknownSectorError(f"unknown sector {sector!r}; expected {GICS_SECTORS}")
            m = m[m["sector"] == sector]
        if cap is not None:
            if cap not in (*CAP_CLASSES, "unknown"):
                raise ValueError(f"unknown cap class {cap!r}; expected one of {CAP_CLASSES}")
            m = m[m["cap_class"] == cap]
        return m["symbol"].tolist()

    def members_on(
        self, date: str | pd.Timestamp, assume_member_without_interval: bool = True
    ) -> list[str]:
        """Index members on a date. Symbols with no interval at all count as members when
        ``assume_member_without_interval`` (the default; their membership is unknown)."""
        ts = pd.Timestamp(date)
        iv = self.intervals
        on = iv[(iv["start_date"] <= ts) & (iv["end_date"].isna() | (iv["end_date"] >= ts))]
        members = set(on["symbol"]) & set(self.members["symbol"])
        if assume_member_without_interval:
            members |= set(self.members["symbol"]) - set(iv["symbol"])
        return sorted(members)

    def membership_mask(self, frame: pd.DataFrame) -> pd.Series:
        """Vectorized: True for each (symbol, date) row of ``frame`` that was an index member
        on that date (symbols without intervals count as members)."""
        iv = self.intervals
        key = frame[["symbol", "date"]].reset_index(drop=True)
        key["_row"] = np.arange(len(key))
        joined = key.merge(iv, on="symbol", how="inner")
        inside = (joined["date"] >= joined["start_date"]) & (
            joined["end_date"].isna() | (joined["date"] <= joined["end_date"])
        )
        mask = np.zeros(len(key), dtype=bool)
        mask[joined.loc[inside, "_row"].to_numpy()] = True
        no_interval = ~key["symbol"].isin(set(iv["symbol"])).to_numpy()
        return pd.Series(mask | no_interval, index=frame.index)

    def point_in_time(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (``symbol``, ``date``) whose symbol was an index member on
        that date: what an evaluation may score when the prices hold only today's survivors
        (a stock that joined the index in 2021 was not a candidate in 2019). Without
        intervals every row stays: nothing is known to exclude."""
        if self.intervals.empty:
            return frame
        return frame[self.membership_mask(frame).to_numpy()]

    def summary(self) -> pd.DataFrame:
        """Count of symbols per sector and cap class."""
        return (
            self.members.pivot_table(
                index="sector", columns="cap_class", values="symbol", aggfunc="count", fill_value=0
            )
            .reindex(
                columns=[
                    c for c in (*CAP_CLASSES, "unknown") if c in set(self.members["cap_class"])
                ]
            )
            .astype(int)
        )


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"universe file not found: {path}")
    return read_table(path, "universe file")
