"""Stop distance and price levels: hand-worked numbers, clamping, bad inputs, vector = scalar."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from turbomode.config import GICS_SECTORS, RiskSettings
from turbomode.errors import SchemaError, UnknownSectorError
from turbomode.risk.levels import (
    FRAME_OUTPUTS,
    RiskInputError,
    confidence_modifier,
    levels,
    levels_frame,
    stop_distance,
)

SETTINGS = RiskSettings()

# (sector, ATR, confidence, horizon, expected = ATR × sector × confidence modifier × horizon)
SECTOR_CASES = [
    ("Information Technology", 2.0, 0.7, 2, 2.0 * 1.3 * 1.0 * 1.5),
    ("Financials", 1.5, 0.5, 1, 1.5 * 1.1 * 0.8 * 1.0),
    ("Health Care", 3.0, 0.9, 5, 3.0 * 1.1 * 1.2 * 2.0),
    ("Industrials", 2.0, 0.6, 1, 2.0 * 1.0 * 0.9 * 1.0),
    ("Energy", 4.0, 0.8, 2, 4.0 * 1.2 * 1.1 * 1.5),
    ("Consumer Discretionary", 2.5, 0.7, 5, 2.5 * 1.2 * 1.0 * 2.0),
    ("Consumer Staples", 1.0, 0.75, 1, 1.0 * 0.9 * 1.05 * 1.0),
    ("Utilities", 0.8, 0.65, 2, 0.8 * 0.8 * 0.95 * 1.5),
    ("Materials", 2.2, 0.85, 5, 2.2 * 1.0 * 1.15 * 2.0),
    ("Real Estate", 1.2, 0.55, 1, 1.2 * 0.9 * 0.85 * 1.0),
    ("Communication Services", 3.5, 0.7, 2, 3.5 * 1.1 * 1.0 * 1.5),
]

HORIZON_CASES = [
    (1, 2.0 * 1.3 * 1.0 * 1.0),
    (2, 2.0 * 1.3 * 1.0 * 1.5),
    (5, 2.0 * 1.3 * 1.0 * 2.0),
]


def test_the_sector_table_covers_every_gics_sector() -> None:
    assert sorted(case[0] for case in SECTOR_CASES) == sorted(GICS_SECTORS)


@pytest.mark.parametrize(("sector", "atr", "confidence", "horizon", "expected"), SECTOR_CASES)
def test_stop_distance_per_sector(
    sector: str, atr: float, confidence: float, horizon: int, expected: float
) -> None:
    assert stop_distance(atr, sector, confidence, horizon, SETTINGS) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize(("horizon", "expected"), HORIZON_CASES)
def test_stop_distance_per_horizon(horizon: int, expected: float) -> None:
    got = stop_distance(2.0, "Information Technology", 0.7, horizon, SETTINGS)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (0.0, 0.8),
        (0.3, 0.8),
        (0.5, 0.8),
        (0.6, 0.9),
        (0.7, 1.0),
        (0.9, 1.2),
        (0.95, 1.2),
        (1.0, 1.2),
    ],
)
def test_confidence_modifier_is_linear_and_clamped(confidence: float, expected: float) -> None:
    assert confidence_modifier(confidence, SETTINGS) == pytest.approx(expected, rel=1e-12)


def test_clamping_reaches_the_stop_distance() -> None:
    low = stop_distance(2.0, "Industrials", 0.2, 1, SETTINGS)
    high = stop_distance(2.0, "Industrials", 0.99, 1, SETTINGS)
    assert low == pytest.approx(2.0 * 1.0 * 0.8 * 1.0, rel=1e-12)
    assert high == pytest.approx(2.0 * 1.0 * 1.2 * 1.0, rel=1e-12)


def test_settings_ranges_are_used() -> None:
    custom = RiskSettings(confidence_range=(0.6, 0.8), confidence_modifier_range=(1.0, 2.0))
    assert confidence_modifier(0.7, custom) == pytest.approx(1.5, rel=1e-12)
    assert confidence_modifier(0.5, custom) == pytest.approx(1.0, rel=1e-12)


def test_long_levels_worked_example() -> None:
    lv = levels("BUY", 100.0, 2.0, "Information Technology", 0.7, 2, SETTINGS)
    d = 2.0 * 1.3 * 1.0 * 1.5  # 3.9
    assert lv.side == "BUY"
    assert lv.stop_distance == pytest.approx(d, rel=1e-12)
    assert lv.stop == pytest.approx(100.0 - 3.9, rel=1e-12)
    assert lv.target == pytest.approx(100.0 + 3.9 * 2.5, rel=1e-12)
    assert (lv.r1, lv.r2, lv.r3) == pytest.approx((103.9, 107.8, 111.7), rel=1e-12)


def test_short_levels_mirror() -> None:
    lv = levels("short", 50.0, 1.0, "Utilities", 0.5, 1, SETTINGS)
    d = 1.0 * 0.8 * 0.8 * 1.0  # 0.64
    assert lv.side == "SELL"
    assert lv.stop == pytest.approx(50.0 + 0.64, rel=1e-12)
    assert lv.target == pytest.approx(50.0 - 0.64 * 2.5, rel=1e-12)
    assert (lv.r1, lv.r2, lv.r3) == pytest.approx((50.0 - d, 50.0 - 2 * d, 50.0 - 3 * d))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"sector": "Crypto"}, UnknownSectorError, "Crypto"),
        ({"horizon": 3}, RiskInputError, "horizon 3"),
        ({"atr": -1.0}, RiskInputError, "ATR"),
        ({"atr": 0.0}, RiskInputError, "ATR"),
        ({"atr": math.nan}, RiskInputError, "ATR"),
        ({"atr": math.inf}, RiskInputError, "ATR"),
        ({"confidence": math.nan}, RiskInputError, "confidence"),
        ({"confidence": 1.5}, RiskInputError, "confidence"),
        ({"side": "HOLD"}, RiskInputError, "side"),
        ({"entry_price": 0.0}, RiskInputError, "entry price"),
        ({"entry_price": math.nan}, RiskInputError, "entry price"),
    ],
)
def test_bad_inputs_raise_value_errors_that_name_them(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    args: dict[str, object] = {
        "side": "BUY",
        "entry_price": 100.0,
        "atr": 2.0,
        "sector": "Energy",
        "confidence": 0.7,
        "horizon": 1,
    }
    args.update(kwargs)
    with pytest.raises(error, match=words) as info:
        levels(settings=SETTINGS, **args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def _scan_frame(n: int = 500, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "side": rng.choice(["BUY", "SELL", "long", "short"], n),
            "close": rng.uniform(5.0, 900.0, n),
            "atr": rng.uniform(0.05, 40.0, n),
            "sector": rng.choice(list(GICS_SECTORS), n),
            "confidence": rng.uniform(0.0, 1.0, n),
            "horizon": rng.choice([1, 2, 5], n),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


def test_levels_frame_agrees_exactly_with_the_scalar_function() -> None:
    frame = _scan_frame()
    out = levels_frame(frame, SETTINGS)
    assert list(out.columns) == list(FRAME_OUTPUTS)
    assert out.index.equals(frame.index)
    expected = []
    columns = [frame[c].tolist() for c in ("side", "close", "atr", "sector", "confidence")]
    for side, close, atr, sector, confidence, horizon in zip(
        *columns, frame["horizon"].tolist(), strict=True
    ):
        lv = levels(side, close, atr, sector, confidence, int(horizon), SETTINGS)
        expected.append([lv.stop, lv.target, lv.stop_distance, lv.r1, lv.r2, lv.r3])
    assert np.array_equal(out.to_numpy(), np.array(expected))  # bit for bit, no tolerance


def test_levels_frame_errors_name_the_problem() -> None:
    frame = _scan_frame(20)
    with pytest.raises(SchemaError, match="atr"):
        levels_frame(frame.drop(columns="atr"), SETTINGS)
    bad = frame.copy()
    bad.loc[105, "sector"] = "Crypto"
    with pytest.raises(UnknownSectorError, match="Crypto"):
        levels_frame(bad, SETTINGS)
    bad = frame.copy()
    bad.loc[103, "atr"] = -1.0
    with pytest.raises(RiskInputError, match=r"ATR.*1 row\(s\).*103"):
        levels_frame(bad, SETTINGS)
    bad = frame.copy()
    bad.loc[101, "horizon"] = 3
    with pytest.raises(RiskInputError, match="horizon"):
        levels_frame(bad, SETTINGS)
    bad = frame.copy()
    bad.loc[102, "side"] = "HOLD"
    with pytest.raises(RiskInputError, match="HOLD"):
        levels_frame(bad, SETTINGS)
