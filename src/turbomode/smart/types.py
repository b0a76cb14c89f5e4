"""The records of the Smart Scanner: the :class:`SignalV2` it publishes (its ``Tier`` and
regime names live with its settings in :mod:`turbomode.config`).

A SignalV2 is one line of the nightly report: the raw and adjusted strength, the symbol's tier
and the market regime that sized it, the size, shares and currency risk, the exit plan, and —
for a signal the portfolio did not take — the reason it was skipped. It is written as JSON (for
machines), CSV (for spreadsheets) and a console summary (for people); JSON and CSV read back
into equal records, so a report can be re-checked later.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from turbomode.config import REGIMES, Tier
from turbomode.errors import SchemaError, TurboModeError
from turbomode.io import atomic_write_json, atomic_write_text


class SmartInputError(TurboModeError, ValueError):
    """An input to the Smart Scanner arithmetic (rate, price, tier, regime, bar) that cannot be
    used."""


def check_regime(regime: str) -> str:
    """The regime name; anything but BULL, BEAR, CHOPPY or VOLATILE is an error, never a
    silent 1.0 multiplier."""
    if regime not in REGIMES:
        raise SmartInputError(f"unknown regime {regime!r}; expected one of {REGIMES}")
    return regime


def to_tier(value: Tier | str) -> Tier:
    """A tier from its enum, value ('Elite') or name ('ELITE'); unknown names raise."""
    if isinstance(value, Tier):
        return value
    text = str(value)
    for tier in Tier:
        if text in (tier.value, tier.name):
            return tier
    raise SmartInputError(f"unknown tier {value!r}; expected one of {[t.value for t in Tier]}")


@dataclass(frozen=True)
class SignalV2:
    """One Smart Scanner call for a long entry at the next bar.

    Strengths are on a 0–100 scale. ``size`` is the fraction of equity, ``shares`` the whole
    shares it buys at ``price`` and ``risk`` the currency lost if the stop is hit
    (shares × (price − stop)). ``heat`` is size × stop distance as a fraction of equity.
    A skipped signal keeps its computed strength and plan but has size, shares and risk 0 and
    a ``skip_reason``; exit fields are None only for a tier that is never traded.
    """

    symbol: str
    sector: str
    signal_date: date
    price: float
    strength_raw: float
    strength_adjusted: float
    tier: Tier
    regime: str
    size: float
    shares: int
    risk: float
    heat: float
    target_1: float | None
    target_2: float | None
    stop: float | None
    max_hold_days: int | None
    sector_momentum: float | None = None
    modifiers: tuple[str, ...] = ()
    earnings_soon: bool = False
    skip_reason: str | None = None

    @property
    def taken(self) -> bool:
        """True when the portfolio accepted the signal."""
        return self.skip_reason is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the date as ISO text, the tier as its value, modifiers a list."""
        d = asdict(self)
        d["signal_date"] = self.signal_date.isoformat()
        d["tier"] = self.tier.value
        d["modifiers"] = list(self.modifiers)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignalV2:
        """The inverse of :meth:`to_dict`; a missing or unknown key is a :class:`SchemaError`."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        extra = sorted(set(data) - set(names))
        if missing or extra:
            raise SchemaError(f"SignalV2 record: missing keys {missing}, unknown keys {extra}")
        raw_date = data["signal_date"]
        return cls(
            symbol=str(data["symbol"]),
            sector=str(data["sector"]),
            signal_date=raw_date if isinstance(raw_date, date) else date.fromisoformat(raw_date),
            price=float(data["price"]),
            strength_raw=float(data["strength_raw"]),
            strength_adjusted=float(data["strength_adjusted"]),
            tier=to_tier(data["tier"]),
            regime=check_regime(str(data["regime"])),
            size=float(data["size"]),
            shares=int(data["shares"]),
            risk=float(data["risk"]),
            heat=float(data["heat"]),
            target_1=_opt_float(data["target_1"]),
            target_2=_opt_float(data["target_2"]),
            stop=_opt_float(data["stop"]),
            max_hold_days=None if data["max_hold_days"] is None else int(data["max_hold_days"]),
            sector_momentum=_opt_float(data["sector_momentum"]),
            modifiers=tuple(str(m) for m in data["modifiers"]),
            earnings_soon=bool(data["earnings_soon"]),
            skip_reason=None if data["skip_reason"] is None else str(data["skip_reason"]),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


# --- JSON ----------------------------------------------------------------------------------


def signals_to_json(signals: Iterable[SignalV2]) -> list[dict[str, Any]]:
    """The records as a list of dicts, in the given order."""
    return [s.to_dict() for s in signals]


def write_signals_json(signals: Iterable[SignalV2], path: Path | str) -> None:
    """Write the records as a JSON list, atomically (a reader never sees half a report)."""
    atomic_write_json(signals_to_json(signals), path)


def read_signals_json(path: Path | str) -> list[SignalV2]:
    """Read a file written by :func:`write_signals_json`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise SchemaError(f"{path}: expected a JSON list of SignalV2 records")
    return [SignalV2.from_dict(d) for d in data]


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SignalV2))
MODIFIER_SEPARATOR = ";"


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "modifiers":
        return MODIFIER_SEPARATOR.join(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


def signals_to_csv(signals: Iterable[SignalV2]) -> str:
    """CSV text with a header of :data:`CSV_COLUMNS`; None is an empty cell and modifiers are
    joined with ';' (rule names cannot contain it)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in signals:
        d = s.to_dict()
        writer.writerow([_csv_cell(c, d[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def write_signals_csv(signals: Iterable[SignalV2], path: Path | str) -> None:
    """Write :func:`signals_to_csv` atomically."""
    atomic_write_text(signals_to_csv(signals), path)


_OPTIONAL = {"target_1", "target_2", "stop", "max_hold_days", "sector_momentum", "skip_reason"}


def read_signals_csv(path: Path | str) -> list[SignalV2]:
    """Read a file written by :func:`write_signals_csv` back into equal records."""
    text = Path(path).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise SchemaError(f"{path}: expected columns {list(CSV_COLUMNS)}, got {reader.fieldnames}")
    out = []
    for row in reader:
        d: dict[str, Any] = {k: (None if k in _OPTIONAL and v == "" else v) for k, v in row.items()}
        d["modifiers"] = [m for m in row["modifiers"].split(MODIFIER_SEPARATOR) if m]
        d["earnings_soon"] = row["earnings_soon"] == "True"
        out.append(SignalV2.from_dict(d))
    return out


# --- console -------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:.{digits}f}%"


def _price(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_summary(signals: Sequence[SignalV2]) -> str:
    """A fixed-width table of the taken signals, then one line per skipped signal with its
    reason, then the totals (positions, size and heat taken)."""
    taken = [s for s in signals if s.taken]
    skipped = [s for s in signals if not s.taken]
    header = (
        f"{'symbol':<7}{'tier':<8}{'str':>6}{'adj':>6}{'size':>7}{'shares':>8}{'risk':>10}"
        f"{'stop':>9}{'t1':>9}{'t2':>9}{'hold':>5}  modifiers"
    )
    lines = [f"Smart Scanner — {len(taken)} taken, {len(skipped)} skipped", header]
    for s in taken:
        flag = " [earnings]" if s.earnings_soon else ""
        lines.append(
            f"{s.symbol:<7}{s.tier.value:<8}{s.strength_raw:>6.1f}{s.strength_adjusted:>6.1f}"
            f"{_pct(s.size):>7}{s.shares:>8}{s.risk:>10.2f}{_price(s.stop):>9}"
            f"{_price(s.target_1):>9}{_price(s.target_2):>9}{s.max_hold_days or 0:>5}  "
            f"{', '.join(s.modifiers) or '-'}{flag}"
        )
    if skipped:
        lines.append("skipped:")
        lines += [f"  {s.symbol:<7}{s.strength_adjusted:>6.1f}  {s.skip_reason}" for s in skipped]
    total_size = sum(s.size for s in taken)
    total_heat = sum(s.heat for s in taken)
    lines.append(f"total size {_pct(total_size)}, heat {_pct(total_heat, 2)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Holding:
    """An open position as the portfolio constraints see it: ``size`` is the fraction of
    equity still held and ``stop_distance`` the fraction of the entry price the stop sits
    below it (0 once a trailing stop is at or above the entry: no heat left)."""

    ticker: str
    sector: str
    size: float
    stop_distance: float

    @property
    def heat(self) -> float:
        """size × stop distance."""
        return self.size * self.stop_distance
