"""Every validation rule with good and bad rows, and the no-silent-drop promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turbomode.config import ValidationSettings
from turbomode.data.validation import QUARANTINE_RULES, validate_prices
from turbomode.errors import SchemaError

DATES = pd.bdate_range("2024-01-01", periods=6)


def good_frame(symbols: tuple[str, ...] = ("AAA", "BBB")) -> pd.DataFrame:
    rows = []
    for k, sym in enumerate(symbols):
        for i, d in enumerate(DATES):
            base = 100.0 + 10 * k + i
            rows.append(
                {
                    "symbol": sym,
                    "date": d,
                    "open": base,
                    "high": base + 2,
                    "low": base - 2,
                    "close": base + 1,
                    "volume": 1000.0 + i,
                }
            )
    return pd.DataFrame(rows)


def rules_of(result) -> dict[tuple[str, str], str]:
    q = result.quarantine
    return {
        (s, str(d.date())): r for s, d, r in zip(q["symbol"], q["date"], q["rule"], strict=True)
    }


def test_good_rows_pass_untouched() -> None:
    frame = good_frame()
    result = validate_prices(frame)
    assert result.rows_in == len(frame) == result.rows_out
    assert result.quarantine.empty and result.flags.empty
    pd.testing.assert_frame_equal(
        result.clean, frame.astype({"volume": "float64"}), check_dtype=False
    )
    assert str(result.clean["date"].dtype) == "datetime64[ns]"


def test_missing_columns_name_the_problem() -> None:
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['volume'\]"):
        validate_prices(good_frame().drop(columns=["volume"]))


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", np.nan, "missing_value"),
        ("volume", np.nan, "missing_value"),
        ("close", 0.0, "non_positive_price"),
        ("low", -1.0, "non_positive_price"),
        ("volume", -5.0, "negative_volume"),
        ("high", 50.0, "high_below_low"),
        ("close", 200.0, "ohlc_outside_range"),
        ("close", "12,5", "unparseable"),
        ("date", "not a date", "unparseable"),
    ],
)
def test_each_rule_quarantines_only_the_bad_row(column: str, value: object, rule: str) -> None:
    frame = good_frame().astype({column: object})
    frame.loc[3, column] = value
    result = validate_prices(frame)
    assert len(result.quarantine) == 1
    assert result.quarantine.loc[0, "rule"] == rule
    assert result.quarantine.loc[0, "symbol"] == "AAA"
    assert result.rows_out == len(frame) - 1
    assert rule in QUARANTINE_RULES


def test_ohlc_tolerance_lets_a_tiny_quirk_pass() -> None:
    frame = good_frame()
    frame.loc[2, "low"] = frame.loc[2, "open"] * 1.001  # low 0.1 % above the open
    assert validate_prices(frame).quarantine.empty
    strict = validate_prices(frame, ValidationSettings(ohlc_tolerance=0.0))
    assert strict.quarantine["rule"].tolist() == ["ohlc_outside_range"]


def test_exact_duplicate_keeps_one_copy() -> None:
    frame = good_frame()
    frame = pd.concat([frame, frame.iloc[[4]]], ignore_index=True)
    result = validate_prices(frame)
    assert result.quarantine["rule"].tolist() == ["duplicate"]
    assert result.rows_out == len(frame) - 1
    assert not result.clean.duplicated(["symbol", "date"]).any()


def test_conflicting_duplicates_are_all_quarantined() -> None:
    frame = good_frame()
    twin = frame.iloc[[4]].copy()
    twin["close"] += 0.5
    frame = pd.concat([frame, twin], ignore_index=True)
    result = validate_prices(frame)
    assert result.quarantine["rule"].tolist() == ["duplicate_conflict"] * 2
    assert result.rows_out == len(frame) - 2


def test_extreme_move_catches_only_the_jump_day() -> None:
    frame = good_frame()
    # A 10x level jump from day 3 on (an unadjusted split): only day 3 moves from its predecessor.
    mask = (frame["symbol"] == "BBB") & (frame["date"] >= DATES[3])
    frame.loc[mask, ["open", "high", "low", "close"]] *= 10
    result = validate_prices(frame)
    assert rules_of(result) == {("BBB", str(DATES[3].date())): "extreme_move"}
    assert "previous_close=" in result.quarantine.loc[0, "value"]
    off = validate_prices(frame, ValidationSettings(max_abs_log_return=None))
    assert off.quarantine.empty


def test_rebound_after_a_caught_bad_bar_is_kept() -> None:
    frame = good_frame()
    bad = (frame["symbol"] == "BBB") & (frame["date"] == DATES[2])
    frame.loc[bad, ["open", "high", "low", "close"]] *= 10  # one corrupted bar
    result = validate_prices(frame)
    # Day 3 falls back to the normal level: judged against day 1 (the last good bar), it passes.
    assert rules_of(result) == {("BBB", str(DATES[2].date())): "extreme_move"}
    assert result.quarantine.loc[0, "value"] == "previous_close=112.0 close=1130.0"
    assert result.rows_in == result.rows_out + 1


def closes_frame(closes: list[float]) -> pd.DataFrame:
    """One symbol's bars with these closes (open = high = low = close)."""
    dates = pd.bdate_range("2024-01-01", periods=len(closes))
    c = np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {"symbol": "AAA", "date": dates, "open": c, "high": c, "low": c, "close": c, "volume": 1e3}
    )


def test_a_crash_that_holds_costs_only_its_first_bar() -> None:
    # PWR in July 2002: −68 % in a day, then closes wavering around the bound; a real move.
    closes = [12.66, 12.71, 9.88, 9.69, 8.97, 2.87, 2.94, 3.33, 3.27, 2.83, 2.74, 2.53]
    result = validate_prices(closes_frame(closes))
    assert list(rules_of(result)) == [("AAA", "2024-01-08")]
    assert result.rows_out == len(closes) - 1


def test_two_bad_bars_in_a_row_are_both_caught() -> None:
    frame = good_frame()
    bad = (frame["symbol"] == "BBB") & frame["date"].isin(DATES[2:4])
    frame.loc[bad, ["open", "high", "low", "close"]] /= 10
    result = validate_prices(frame)
    assert set(rules_of(result)) == {("BBB", str(d.date())) for d in DATES[2:4]}
    assert result.rows_out == len(frame) - 2


@pytest.mark.parametrize("symbols", [(), ("AAA",)])
def test_empty_or_one_row_frames_validate(symbols: tuple[str, ...]) -> None:
    frame = good_frame(symbols).head(1) if symbols else good_frame().iloc[0:0]
    result = validate_prices(frame, known_symbols={"AAA"})
    assert result.rows_in == result.rows_out == len(frame)
    assert result.quarantine.empty and result.flags.empty
    assert list(result.clean.columns) == list(frame.columns)


def test_rows_outside_the_universe_are_quarantined_by_name() -> None:
    result = validate_prices(good_frame(("AAA", "ZZZ")), known_symbols={"AAA"})
    assert set(result.quarantine["rule"]) == {"not_in_universe"}
    assert set(result.quarantine["symbol"]) == {"ZZZ"}
    assert set(result.clean["symbol"]) == {"AAA"}


def test_calendar_gap_is_flagged_not_removed() -> None:
    frame = good_frame()
    frame = frame.drop(
        index=frame.index[(frame["symbol"] == "AAA") & frame["date"].isin(DATES[2:4])]
    )
    result = validate_prices(frame)
    assert result.quarantine.empty and result.rows_out == len(frame)
    gaps = result.flags[result.flags["rule"] == "calendar_gap"]
    assert gaps["symbol"].tolist() == ["AAA", "AAA"]
    assert gaps["date"].tolist() == list(DATES[2:4])


def test_late_start_is_not_a_gap_but_an_explicit_calendar_finds_holes() -> None:
    frame = good_frame()
    frame = frame.drop(index=frame.index[(frame["symbol"] == "AAA") & (frame["date"] < DATES[2])])
    assert validate_prices(frame).flags.empty
    full = pd.bdate_range(DATES[0], periods=8)
    gappy = frame[frame["date"] != DATES[4]]
    result = validate_prices(gappy, calendar=full)
    assert (result.flags["date"] == DATES[4]).sum() == 2


def test_zero_volume_flagged_but_not_for_an_index() -> None:
    frame = good_frame(("AAA", "^VIX"))
    frame["volume"] = 0.0
    result = validate_prices(frame)
    assert result.quarantine.empty
    assert set(result.flags["symbol"]) == {"AAA"}
    assert set(result.flags["rule"]) == {"zero_volume"}


def test_string_dates_timezones_and_int_volume_are_normalized() -> None:
    frame = good_frame()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    frame["volume"] = frame["volume"].astype("int64")
    a = validate_prices(frame).clean
    frame2 = good_frame()
    frame2["date"] = frame2["date"].dt.tz_localize("America/New_York")
    b = validate_prices(frame2).clean
    pd.testing.assert_frame_equal(a, b)
    assert a["volume"].dtype == "float64"


def test_first_failing_rule_wins_and_counts_add_up() -> None:
    frame = good_frame()
    frame.loc[0, ["close", "low"]] = [np.nan, -1.0]  # missing value beats non-positive
    frame.loc[1, "volume"] = -1.0
    frame = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    result = validate_prices(frame)
    assert sorted(result.quarantine["rule"]) == ["duplicate", "missing_value", "negative_volume"]
    assert result.counts() == {"duplicate": 1, "missing_value": 1, "negative_volume": 1}
    result.check_conservation()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 11),
            st.sampled_from(["nan", "neg", "hl", "dup", "conflict", "text", "jump"]),
        ),
        max_size=8,
    )
)
def test_random_corruption_never_loses_a_row(corruptions: list[tuple[int, str]]) -> None:
    frame = good_frame().astype({"close": object})
    extra = []
    for row, kind in corruptions:
        if kind == "nan":
            frame.loc[row, "volume"] = np.nan
        elif kind == "neg":
            frame.loc[row, "open"] = -3.0
        elif kind == "hl":
            frame.loc[row, ["high", "low"]] = [1.0, 2.0]
        elif kind == "text":
            frame.loc[row, "close"] = "n/a"
        elif kind == "jump":
            frame.loc[row, ["open", "high", "low", "close"]] = [1e4, 1e4, 1e4, 1e4]
        elif kind == "dup":
            extra.append(frame.iloc[[row]].copy())
        else:
            twin = frame.iloc[[row]].copy()
            twin["volume"] = twin["volume"] + 1
            extra.append(twin)
    full = pd.concat([frame, *extra], ignore_index=True)
    result = validate_prices(full)
    assert result.rows_in == result.rows_out + len(result.quarantine)
    clean = result.clean
    assert not clean.duplicated(["symbol", "date"]).any()
    assert (clean[["open", "high", "low", "close"]] > 0).all().all()
    assert not clean.isna().any().any()
    assert (clean["high"] >= clean["low"]).all()
