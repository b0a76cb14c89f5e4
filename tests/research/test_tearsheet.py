"""The tear sheet: its figures are the factor functions' figures, and it writes a readable
page, plots and JSON (NaN as null) atomically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.errors import SchemaError
from turbomode.research import factor as fx
from turbomode.research.tearsheet import (
    PLOTS,
    EmptyWindowError,
    compare,
    tear_sheet,
    write_comparison,
)

DATES = pd.bdate_range("2024-01-01", periods=70)
SYMBOLS = [f"S{i:02d}" for i in range(36)]
SECTORS = {s: ("Energy", "Utilities", "Financials")[i % 3] for i, s in enumerate(SYMBOLS)}
SECTORS["S35"] = "Tiny"  # a lone name: its sector IC is undefined (null in the JSON)
START, END = DATES[5], DATES[60]


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(11)
    shape = (len(DATES), len(SYMBOLS))
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, shape), axis=0))
    opens = close * np.exp(rng.normal(0, 0.01, shape))
    prices = pd.DataFrame(
        {
            "symbol": np.tile(SYMBOLS, len(DATES)),
            "date": np.repeat(DATES, len(SYMBOLS)),
            "open": opens.ravel(),
            "close": close.ravel(),
        }
    )
    fwd = fx.forward_returns(prices, [1])
    # a score with a real but noisy link to the next-open return
    scores = fwd[["symbol", "date"]].assign(
        score=fwd["ret_open_1"].fillna(0) + rng.normal(0, 0.03, len(fwd))
    )
    return prices, scores


def _no_nan(value: str) -> None:
    raise AssertionError(f"JSON holds {value}")


def test_figures_equal_the_factor_functions_and_files_are_written(
    market: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    prices, scores = market
    sheet = tear_sheet(scores, prices, SECTORS, START, END, "noisy", cost_bps=5.0)
    paths = sheet.write(tmp_path / "sheet")
    assert set(paths) == {*PLOTS, "json", "html"}
    for name in PLOTS:
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "sheet").iterdir() if p.name.startswith(".")]
    doc = json.loads(paths["json"].read_text(), parse_constant=_no_nan)

    # the same figures computed directly from the factor functions
    inside = scores[scores["date"].between(START, END)]
    frame = inside.merge(fx.forward_returns(prices), on=["symbol", "date"], how="left")
    frame["sector"] = frame["symbol"].map(SECTORS)
    ic_open = fx.daily_ic(frame, "score", "ret_open_1")
    assert doc["ic_summary"]["open"] == pytest.approx(fx.ic_summary(ic_open))
    within = fx.ic_summary(fx.daily_ic(frame, "score", "ret_close_1", group="sector"))
    assert doc["ic_summary"]["close_sector"] == pytest.approx(within)
    assert doc["headline"]["ic_open"] == pytest.approx(ic_open.mean())
    assert doc["ic_daily"]["open"] == pytest.approx(ic_open.tolist(), nan_ok=True)
    assert doc["ic_daily"]["cumulative_open"][-1] == pytest.approx(ic_open.sum())
    months = fx.ic_by_month(ic_open)
    assert [r["mean"] for r in doc["ic_by_month"]] == pytest.approx(months["mean"].tolist())
    decay = fx.ic_decay(frame, "score", fx.forward_returns(prices), basis="close")
    assert [r["mean"] for r in doc["ic_decay"]["close"]] == pytest.approx(decay["mean"].tolist())
    deciles = fx.decile_returns(frame, "score", "ret_open_1")
    assert [r["mean_ret"] for r in doc["deciles"]] == pytest.approx(deciles["mean_ret"].tolist())
    book = fx.long_short(frame, "score", prices, cost_bps=5.0, group="sector")
    assert doc["long_short"]["sector_neutral"]["summary"] == pytest.approx(fx.ls_summary(book))
    assert doc["long_short"]["sector_neutral"]["daily"]["net"] == pytest.approx(
        book["net"].tolist()
    )
    energy = fx.sector_ic(frame, "score", "ret_open_1", min_obs=5).loc["Energy"]
    row = next(r for r in doc["sector_ic"] if r["sector"] == "Energy")
    assert row["mean_open"] == pytest.approx(energy["mean"])
    tiny = next(r for r in doc["sector_ic"] if r["sector"] == "Tiny")
    assert tiny["mean_open"] is None  # NaN → null

    assert doc["window"] == {"start": "2024-01-08", "end": "2024-03-25"}
    assert doc["counts"]["days"] == 56 and doc["counts"]["symbols"] == 36
    assert doc["headline"]["ic_open"] > 0.1  # the planted link shows

    page = paths["html"].read_text()
    assert "<title>Tear sheet: noisy</title>" in page
    assert "2024-01-08 → 2024-03-25" in page
    for name in PLOTS:
        assert f'<img src="{name}.png"' in page
    assert "Energy" in page and f"{ic_open.mean():+.4f}" in page


def test_window_limits_and_empty_window(market: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    prices, scores = market
    sheet = tear_sheet(scores, prices, SECTORS, DATES[10], DATES[19], "short")
    assert sheet.counts["days"] == 10
    assert sheet.ic.index.min() == DATES[10] and sheet.ic.index.max() == DATES[19]
    with pytest.raises(EmptyWindowError, match="no finite scores"):
        tear_sheet(scores, prices, SECTORS, "2030-01-01", "2030-02-01", "later")
    again = scores[scores["date"] == START].iloc[:1]
    with pytest.raises(SchemaError, match="1 duplicate"):
        tear_sheet(pd.concat([scores, again]), prices, SECTORS, START, END, "dup")
    with pytest.raises(ValueError, match="before"):
        tear_sheet(scores, prices, SECTORS, END, START, "backwards")


def test_compare_and_comparison_files(
    market: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    prices, scores = market
    a = tear_sheet(scores, prices, SECTORS, START, END, "noisy")
    b = tear_sheet(scores.assign(score=-scores["score"]), prices, SECTORS, START, END, "flipped")
    table = compare([a, b])
    assert list(table.index) == ["noisy", "flipped"]
    assert table.at["flipped", "ic_open"] == pytest.approx(-table.at["noisy", "ic_open"])
    paths = write_comparison([a, b], tmp_path)
    md = paths["md"].read_text()
    assert "| figure | noisy | flipped |" in md
    assert f"{a.headline()['ic_open']:+.4f}" in md
    assert "flipped" in paths["html"].read_text()
    assert json.loads(paths["json"].read_text())["headline"]["noisy"]["ic_open"] == pytest.approx(
        a.headline()["ic_open"]
    )


def test_only_index_members_of_each_day_are_scored(
    market: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """With the hand-written membership file (symbols renamed onto this market's), a stock
    counts only on the days it was in the index: what a survivors-only price file needs."""
    from turbomode.data.universe import Universe

    prices, scores = market
    names = {"EN01": "S00", "EN02": "S01", "EN03": "S02", "EN04": "S03", "UT02": "S04"}
    shifted = pd.read_csv(
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "handwritten_membership"
        / "sp500_membership_intervals.csv"
    )
    shifted = shifted[shifted["symbol"].isin(list(names))]
    # The file's 2023 dates moved one year on, into this market's 2024 window.
    for col in ("start_date", "end_date"):
        day = pd.to_datetime(shifted[col])
        shifted[col] = day.where(day < "2023-01-01", day + pd.DateOffset(years=1))
    shifted["symbol"] = shifted["symbol"].map(names)
    universe = Universe.from_frames(
        pd.DataFrame({"symbol": SYMBOLS, "sector": "Energy"}), intervals=shifted
    )
    full = tear_sheet(scores, prices, SECTORS, START, END, "all")
    pit = tear_sheet(scores, prices, SECTORS, START, END, "members", universe=universe)
    window = scores[scores["date"].between(START, END)]
    kept = universe.point_in_time(window)
    # S01 joins 2024-02-15; S02's last day, 2024-03-10, is a Sunday, so it is last scored on
    # Friday 2024-03-08; S04 left at the end of 2022: never a member here.
    assert set(window["symbol"]) - set(kept["symbol"]) == {"S04"}
    assert kept.loc[kept["symbol"] == "S01", "date"].min() == pd.Timestamp("2024-02-15")
    assert kept.loc[kept["symbol"] == "S02", "date"].max() == pd.Timestamp("2024-03-08")
    assert pit.counts["rows"] == len(kept) < full.counts["rows"]
    assert pit.counts["rows_outside_the_index"] == len(window) - len(kept)
    assert full.counts["rows_outside_the_index"] == 0
    alone = tear_sheet(kept, prices, SECTORS, START, END, "members only")
    pd.testing.assert_frame_equal(pit.ic, alone.ic)  # the same as scoring members alone
