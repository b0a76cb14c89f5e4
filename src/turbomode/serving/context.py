"""What the service reads from files and re-reads when they change: the universe and the newest
bar of every symbol (the clean store), and the latest scan document.

Each is an immutable snapshot replaced in one assignment, so a request sees the old one or the
new one, never half of each. The watcher compares a cheap token (mtime and size of the files)
before reading anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from turbomode.config import Settings
from turbomode.data.universe import Universe
from turbomode.errors import TurboModeError
from turbomode.workspace import Workspace

BAR_COLUMNS = ["symbol", "open", "high", "low", "close"]


class ContextError(TurboModeError):
    """A file the service needs is missing or unreadable."""


def file_token(*paths: Path) -> tuple[tuple[int, int], ...]:
    """(mtime_ns, size) of each path, (0, 0) when absent: changes when a file is replaced."""
    out = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            out.append((0, 0))
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass(frozen=True)
class MarketSnapshot:
    """Universe members and the bars of the newest date in the clean store.

    ``members``: symbol, sector, cap_class (all members, as the scan scores them);
    ``bars``: symbol, open, high, low, close on ``price_date`` — the entry basis of a
    prediction's stop and target, as the scan's bars of its scan date.
    """

    members: pd.DataFrame
    bars: pd.DataFrame
    price_date: date
    token: tuple[tuple[int, int], ...]
    sector_of: dict[str, str] = field(default_factory=dict)

    @property
    def sectors(self) -> list[str]:
        return sorted(set(self.sector_of.values()))

    def knows(self, symbol: str) -> bool:
        return symbol in self.sector_of

    @cached_property
    def rows(self) -> MemberRows:
        """The members and their closes as arrays, with each symbol's row: computed once per
        loaded market rather than per request (a frame filter and merge per request cost
        more than scoring the symbol)."""
        symbols = self.members["symbol"].to_numpy()
        closes = dict(
            zip(
                self.bars["symbol"].tolist(),
                self.bars["close"].to_numpy(dtype=float).tolist(),
                strict=True,
            )
        )
        return MemberRows(
            symbols=symbols,
            sectors=self.members["sector"].to_numpy(),
            caps=self.members["cap_class"].to_numpy(),
            close=np.array([closes.get(s, np.nan) for s in symbols.tolist()], dtype=float),
            row_of={s: i for i, s in enumerate(symbols.tolist())},
        )


@dataclass(frozen=True)
class MemberRows:
    """Universe members as aligned arrays (see :attr:`MarketSnapshot.rows`); ``close`` is NaN
    for a member without a bar on the price date."""

    symbols: np.ndarray
    sectors: np.ndarray
    caps: np.ndarray
    close: np.ndarray
    row_of: dict[str, int]


def market_paths(settings: Settings) -> tuple[Path, Path]:
    clean = settings.data.clean_dir
    return clean / "prices.parquet", clean / "universe.parquet"


def load_market(settings: Settings) -> MarketSnapshot:
    """Read the universe and only the newest date's bars (a filtered parquet read)."""
    prices, universe_file = market_paths(settings)
    token = file_token(prices, universe_file)
    if not prices.exists() or not universe_file.exists():
        raise ContextError(
            f"no clean store at {settings.data.clean_dir}: run `turbomode ingest` (or `make run`)"
        )
    universe = Universe.read(settings.data.clean_dir, settings.universe)
    members = universe.members[["symbol", "sector", "cap_class"]].reset_index(drop=True)
    newest = pc.max(pq.read_table(prices, columns=["date"]).column("date")).as_py()
    table = pq.read_table(prices, columns=["date", *BAR_COLUMNS], filters=[("date", "==", newest)])
    bars = table.to_pandas()[BAR_COLUMNS].reset_index(drop=True)
    market = MarketSnapshot(
        members=members,
        bars=bars,
        price_date=pd.Timestamp(newest).date(),
        token=token,
        sector_of=dict(zip(members["symbol"], members["sector"], strict=True)),
    )
    _ = market.rows  # once, at load: no request pays for it
    return market


@dataclass(frozen=True)
class ScanSnapshot:
    """The latest scan document (``latest_scan.json``) with its signals as a frame."""

    document: dict[str, Any]
    signals: pd.DataFrame
    sectors: pd.DataFrame
    token: tuple[tuple[int, int], ...]

    @property
    def scan_date(self) -> str | None:
        value = self.document.get("scan_date")
        return None if value is None else str(value)

    @property
    def thresholds(self) -> dict[str, float] | None:
        raw = self.document.get("thresholds")
        return None if not raw else {k: float(v) for k, v in raw.items()}


EMPTY_SCAN = ScanSnapshot({}, pd.DataFrame(), pd.DataFrame(), ((0, 0),))


def scan_path(settings: Settings, override: Path | None = None) -> Path:
    return override or Workspace.of(settings).latest_scan


def load_scan(path: Path) -> ScanSnapshot:
    """Read the scan document; a missing file is an empty snapshot (no scan has run yet)."""
    token = file_token(path)
    if not path.exists():
        return ScanSnapshot({}, pd.DataFrame(), pd.DataFrame(), token)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContextError(f"cannot read the scan document {path}: {exc}") from exc
    signals = pd.DataFrame(doc.get("signals") or [])
    if len(signals):
        signals = signals.sort_values(
            ["effective_confidence", "symbol", "horizon"], ascending=[False, True, True]
        ).reset_index(drop=True)
    return ScanSnapshot(doc, signals, pd.DataFrame(doc.get("sectors") or []), token)
