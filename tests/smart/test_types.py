"""SignalV2: JSON and CSV round trips, schema errors, the console summary."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from turbomode.config import Tier
from turbomode.errors import SchemaError
from turbomode.smart.types import (
    CSV_COLUMNS,
    SignalV2,
    SmartInputError,
    check_regime,
    format_summary,
    read_signals_csv,
    read_signals_json,
    signals_to_csv,
    to_tier,
    write_signals_csv,
    write_signals_json,
)

TAKEN = SignalV2(
    symbol="XOM",
    sector="Energy",
    signal_date=date(2024, 3, 1),
    price=40.0,
    strength_raw=80.0,
    strength_adjusted=84.0,
    tier=Tier.STRONG,
    regime="BEAR",
    size=0.12,
    shares=300,
    risk=360.0,
    heat=0.0036,
    target_1=40.8,
    target_2=41.2,
    stop=38.8,
    max_hold_days=4,
    sector_momentum=0.013,
    modifiers=("oversold", "high_volume"),
    earnings_soon=False,
)
SKIPPED = SignalV2(
    symbol="BAD",
    sector="Utilities",
    signal_date=date(2024, 3, 1),
    price=1 / 3,
    strength_raw=55.5,
    strength_adjusted=44.4,
    tier=Tier.AVOID,
    regime="BEAR",
    size=0.0,
    shares=0,
    risk=0.0,
    heat=0.0,
    target_1=None,
    target_2=None,
    stop=None,
    max_hold_days=None,
    sector_momentum=None,
    modifiers=(),
    earnings_soon=True,
    skip_reason="tier Avoid is never traded, even with a comma",
)


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "signals.json"
    write_signals_json([TAKEN, SKIPPED], path)
    assert read_signals_json(path) == [TAKEN, SKIPPED]
    raw = json.loads(path.read_text())
    assert raw[0]["tier"] == "Strong"
    assert raw[0]["signal_date"] == "2024-03-01"
    assert raw[0]["modifiers"] == ["oversold", "high_volume"]
    assert raw[1]["target_1"] is None


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "signals.csv"
    write_signals_csv([TAKEN, SKIPPED], path)
    back = read_signals_csv(path)
    assert back == [TAKEN, SKIPPED]
    assert back[1].price == 1 / 3  # floats survive exactly
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert "oversold;high_volume" in lines[1]


def test_csv_of_nothing_is_a_header() -> None:
    assert signals_to_csv([]) == ",".join(CSV_COLUMNS) + "\n"


def test_schema_errors(tmp_path: Path) -> None:
    d = TAKEN.to_dict()
    del d["risk"]
    with pytest.raises(SchemaError, match=r"missing keys \['risk'\]"):
        SignalV2.from_dict(d)
    with pytest.raises(SchemaError, match=r"unknown keys \['colour'\]"):
        SignalV2.from_dict({**TAKEN.to_dict(), "colour": "red"})
    path = tmp_path / "bad.csv"
    path.write_text("symbol,size\nX,0.1\n")
    with pytest.raises(SchemaError, match="expected columns"):
        read_signals_csv(path)
    path.write_text('{"symbol": "X"}')
    with pytest.raises(SchemaError, match="JSON list"):
        read_signals_json(path)


def test_tier_and_regime_names() -> None:
    assert to_tier("Elite") is Tier.ELITE
    assert to_tier("ELITE") is Tier.ELITE
    with pytest.raises(SmartInputError, match="unknown tier"):
        to_tier("Superb")
    assert check_regime("VOLATILE") == "VOLATILE"
    with pytest.raises(SmartInputError, match="unknown regime"):
        check_regime("bull")
    with pytest.raises(SmartInputError):
        SignalV2.from_dict({**TAKEN.to_dict(), "regime": "SIDEWAYS"})


def test_console_summary() -> None:
    text = format_summary([TAKEN, SKIPPED])
    lines = text.splitlines()
    assert lines[0] == "Smart Scanner — 1 taken, 1 skipped"
    assert lines[2].split()[:5] == ["XOM", "Strong", "80.0", "84.0", "12.0%"]
    assert lines[2].endswith("oversold, high_volume")
    assert lines[3] == "skipped:"
    assert lines[4].split(None, 2) == [
        "BAD",
        "44.4",
        "tier Avoid is never traded, even with a comma",
    ]
    assert lines[-1] == "total size 12.0%, heat 0.36%"
