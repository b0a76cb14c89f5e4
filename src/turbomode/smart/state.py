"""The Smart Scanner's persisted state: the monthly tiers and the quarterly universe.

Both are small JSON artifacts under ``settings.data.data_dir / "smart"``, written atomically
(:mod:`turbomode.io`), so the nightly smart scan reads what the last monthly/quarterly job
decided without recomputing it, and an operator can read (and diff) every decision:

* ``tiers_<YYYY-MM>.json`` — the ranking in force for that month, plus ``tiers_latest.json``;
* ``universe_<YYYY>Q<q>.json`` — the curation in force for that quarter, plus
  ``universe_latest.json``.

A file holds only what was decided and from what (no wall-clock time), with sorted keys, so
re-running a month or a quarter on the same outcomes writes the same bytes. ``*_latest`` is
only moved forward: back-filling an older month never makes it the latest.

Loaders never fail for lack of history: with no ranking yet every symbol is Average (no
evidence either way), with no curation yet every symbol is kept — each with a note that says
so, for the scan's output.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from turbomode.config import TIER_ORDER, Settings, Tier
from turbomode.errors import SchemaError
from turbomode.io import atomic_write_json
from turbomode.smart.tiers import Curation, SymbolRank, month_start, quarter_start
from turbomode.smart.types import to_tier
from turbomode.workspace import Workspace

STATE_DIR = "smart"
_TIERS_RE = re.compile(r"^tiers_(\d{4})-(\d{2})\.json$")
_UNIVERSE_RE = re.compile(r"^universe_(\d{4})Q([1-4])\.json$")


def state_dir(settings: Settings) -> Path:
    """Where the Smart Scanner's artifacts live: ``<data_dir>/smart``."""
    return Workspace.of(settings).smart_dir


def month_label(day: date) -> str:
    """``YYYY-MM`` of ``day``'s month."""
    return f"{day.year:04d}-{day.month:02d}"


def quarter_label(day: date) -> str:
    """``YYYYQq`` of ``day``'s quarter."""
    return f"{day.year:04d}Q{(day.month - 1) // 3 + 1}"


def _finite(x: float) -> float | None:
    """JSON has no NaN: an undefined rate is null."""
    return float(x) if math.isfinite(x) else None


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def _latest_is_older(latest: Path, key: str, value: str) -> bool:
    """True when ``latest`` is missing, unreadable or holds an older period than ``value``."""
    if not latest.exists():
        return True
    try:
        return str(json.loads(latest.read_text(encoding="utf-8")).get(key, "")) <= value
    except (OSError, ValueError):
        return True


def _read(path: Path, kind: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SchemaError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise SchemaError(f"{path}: not a Smart Scanner {kind} file")
    return data


def _newest_up_to(directory: Path, pattern: re.Pattern[str], key: tuple[int, int]) -> Path | None:
    """The period file with the largest (year, month|quarter) not after ``key``."""
    best: tuple[tuple[int, int], Path] | None = None
    if not directory.is_dir():
        return None
    for p in directory.iterdir():
        m = pattern.match(p.name)
        if m is None:
            continue
        k = (int(m.group(1)), int(m.group(2)))
        if k <= key and (best is None or k > best[0]):
            best = (k, p)
    return None if best is None else best[1]


# --- tiers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TierState:
    """The ranking in force: ``ranks`` per ranked symbol; any other symbol is Average.

    ``as_of`` is the ranking date (a month start) and ``path`` the file it came from; both
    are None, with a ``note``, when no ranking exists yet.
    """

    as_of: date | None
    horizon: int | None
    ranks: dict[str, SymbolRank] = field(default_factory=dict)
    path: Path | None = None
    note: str | None = None

    @property
    def tiers(self) -> dict[str, Tier]:
        """symbol → tier for the ranked symbols (the scanner treats the rest as Average)."""
        return {s: r.tier for s, r in self.ranks.items()}

    def tier(self, symbol: str) -> Tier:
        """The symbol's tier; Average when the ranking does not know it."""
        r = self.ranks.get(symbol)
        return Tier.AVERAGE if r is None else r.tier


def tiers_document(as_of: date, horizon: int, ranks: Mapping[str, SymbolRank]) -> dict[str, Any]:
    """The JSON form of one ranking (no wall-clock time: the same inputs give the same file)."""
    counts = {t.value: 0 for t in TIER_ORDER}
    for r in ranks.values():
        counts[r.tier.value] += 1
    return {
        "kind": "tiers",
        "month": month_label(as_of),
        "as_of": as_of.isoformat(),
        "horizon": int(horizon),
        "counts": counts,
        "symbols": {
            sym: {
                "tier": r.tier.value,
                "n": int(r.n),
                "win_rate": _finite(r.win_rate),
                "expectancy": _finite(r.expectancy),
                "payoff": _finite(r.payoff),
                "reason": r.reason,
            }
            for sym, r in sorted(ranks.items())
        },
    }


def write_tiers(
    settings: Settings, as_of: date, horizon: int, ranks: Mapping[str, SymbolRank]
) -> Path:
    """Write ``tiers_<YYYY-MM>.json`` for ``as_of``'s month and, unless a newer month is already
    the latest, ``tiers_latest.json``. Returns the month's file."""
    start = month_start(as_of)
    doc = tiers_document(start, horizon, ranks)
    directory = state_dir(settings)
    path = directory / f"tiers_{doc['month']}.json"
    atomic_write_json(doc, path)
    latest = directory / "tiers_latest.json"
    if _latest_is_older(latest, "month", doc["month"]):
        atomic_write_json(doc, latest)
    return path


def _tier_state(path: Path) -> TierState:
    data = _read(path, "tiers")
    try:
        ranks = {
            str(sym): SymbolRank(
                symbol=str(sym),
                tier=to_tier(v["tier"]),
                n=int(v["n"]),
                win_rate=_nan(v["win_rate"]),
                expectancy=_nan(v["expectancy"]),
                payoff=_nan(v["payoff"]),
                reason=str(v["reason"]),
            )
            for sym, v in data["symbols"].items()
        }
        return TierState(
            as_of=date.fromisoformat(data["as_of"]),
            horizon=int(data["horizon"]),
            ranks=ranks,
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"{path}: malformed tiers file ({exc})") from exc


def load_tiers(settings: Settings, day: date | None = None) -> TierState:
    """The ranking in force on ``day``: the newest month file not after ``day``'s month (None:
    ``tiers_latest.json``). Without one, every symbol is Average and the note says why."""
    directory = state_dir(settings)
    if day is None:
        latest = directory / "tiers_latest.json"
        path = latest if latest.exists() else None
    else:
        path = _newest_up_to(directory, _TIERS_RE, (day.year, day.month))
    if path is None:
        when = "" if day is None else f" for {month_label(day)} or earlier"
        return TierState(
            as_of=None,
            horizon=None,
            note=f"no ranking{when} in {directory}: every symbol is Average "
            "(run `turbomode ranking update`)",
        )
    state = _tier_state(path)
    if day is not None and state.as_of is not None and state.as_of != month_start(day):
        note = f"no ranking for {month_label(day)} yet: using {month_label(state.as_of)}'s"
        return TierState(state.as_of, state.horizon, state.ranks, state.path, note)
    return state


# --- universe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UniverseState:
    """The curation in force: ``dropped`` symbols (with why) are out; every other is in."""

    as_of: date | None
    horizon: int | None
    kept: tuple[str, ...] = ()
    dropped: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    note: str | None = None

    def allows(self, symbol: str) -> bool:
        """False only for a symbol the curation dropped (a symbol new to the index is in)."""
        return symbol not in self.dropped

    @property
    def quarter(self) -> str | None:
        return None if self.as_of is None else quarter_label(self.as_of)


def universe_document(curation: Curation, horizon: int) -> dict[str, Any]:
    """The JSON form of one curation."""
    return {
        "kind": "universe",
        "quarter": quarter_label(curation.as_of),
        "as_of": curation.as_of.isoformat(),
        "horizon": int(horizon),
        "n_kept": len(curation.kept),
        "n_dropped": len(curation.dropped),
        "kept": list(curation.kept),
        "dropped": dict(sorted(curation.dropped.items())),
    }


def write_universe(settings: Settings, curation: Curation, horizon: int) -> Path:
    """Write ``universe_<YYYY>Q<q>.json`` and, unless a newer quarter is the latest,
    ``universe_latest.json``. Returns the quarter's file."""
    doc = universe_document(curation, horizon)
    directory = state_dir(settings)
    path = directory / f"universe_{doc['quarter']}.json"
    atomic_write_json(doc, path)
    latest = directory / "universe_latest.json"
    if _latest_is_older(latest, "quarter", doc["quarter"]):
        atomic_write_json(doc, latest)
    return path


def _universe_state(path: Path) -> UniverseState:
    data = _read(path, "universe")
    try:
        return UniverseState(
            as_of=date.fromisoformat(data["as_of"]),
            horizon=int(data["horizon"]),
            kept=tuple(str(s) for s in data["kept"]),
            dropped={str(k): str(v) for k, v in data["dropped"].items()},
            path=path,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SchemaError(f"{path}: malformed universe file ({exc})") from exc


def load_universe(settings: Settings, day: date | None = None) -> UniverseState:
    """The curation in force on ``day``: the newest quarter file not after ``day``'s quarter
    (None: ``universe_latest.json``). Without one, nothing is dropped and the note says so."""
    directory = state_dir(settings)
    if day is None:
        latest = directory / "universe_latest.json"
        path = latest if latest.exists() else None
    else:
        q0 = quarter_start(day)
        path = _newest_up_to(directory, _UNIVERSE_RE, (q0.year, (q0.month - 1) // 3 + 1))
    if path is None:
        return UniverseState(
            as_of=None,
            horizon=None,
            note=f"no universe curation in {directory}: every symbol kept "
            "(run `turbomode universe curate`)",
        )
    return _universe_state(path)
