"""Universe: cap classes, tiers, sectors, membership (survivorship) and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import UniverseSettings
from turbomode.data.universe import Universe
from turbomode.errors import SchemaError, UnknownSectorError, UnknownSymbolError


def constituents() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "CCC", "DDD"],
            "sector": ["Energy", "Utilities", "Energy", "Financials"],
            "market_cap": [150e9, 50e9, 5e9, np.nan],
        }
    )


def intervals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["AAA", "BBB", "BBB"],
            "start_date": ["2010-01-01", "2010-01-01", "2015-01-01"],
            "end_date": [None, "2012-12-31", None],
        }
    )


def test_cap_classes_follow_configured_boundaries() -> None:
    u = Universe.from_frames(constituents())
    assert u.members.set_index("symbol")["cap_class"].to_dict() == {
        "AAA": "large",
        "BBB": "mid",
        "CCC": "small",
        "DDD": "unknown",
    }
    u2 = Universe.from_frames(
        constituents(), UniverseSettings(large_cap_min=200e9, mid_cap_min=4e9)
    )
    assert u2.members.set_index("symbol")["cap_class"].tolist() == ["mid", "mid", "mid", "unknown"]


def test_tiers_from_config_default_average_and_unknown_symbol_rejected() -> None:
    u = Universe.from_frames(
        constituents(), UniverseSettings(tiers={"AAA": "Elite", "CCC": "Avoid"})
    )
    assert u.members.set_index("symbol")["tier"].to_dict() == {
        "AAA": "Elite",
        "BBB": "Average",
        "CCC": "Avoid",
        "DDD": "Average",
    }
    with pytest.raises(UnknownSymbolError, match="ZZZ"):
        Universe.from_frames(constituents(), UniverseSettings(tiers={"ZZZ": "Weak"}))


def test_unknown_sector_and_duplicate_symbols_are_errors() -> None:
    bad = constituents()
    bad.loc[1, "sector"] = "Technology"
    with pytest.raises(UnknownSectorError, match="Technology"):
        Universe.from_frames(bad)
    dup = pd.concat([constituents(), constituents().iloc[[0]]])
    with pytest.raises(SchemaError, match="AAA"):
        Universe.from_frames(dup)
    with pytest.raises(SchemaError, match="sector"):
        Universe.from_frames(constituents().drop(columns=["sector"]))


def test_queries_and_unknown_names() -> None:
    u = Universe.from_frames(constituents())
    assert u.select(sector="Energy") == ["AAA", "CCC"]
    assert u.select(cap="mid") == ["BBB"]
    assert u.sector_of("BBB") == "Utilities"
    assert "AAA" in u and "ZZZ" not in u
    with pytest.raises(UnknownSymbolError, match="ZZZ"):
        u.require(["AAA", "ZZZ"])
    with pytest.raises(UnknownSymbolError):
        u.sector_of("ZZZ")
    with pytest.raises(UnknownSectorError):
        u.select(sector="Tech")
    with pytest.raises(ValueError, match="cap class"):
        u.select(cap="huge")


def test_membership_on_a_date_and_vectorized_mask() -> None:
    u = Universe.from_frames(constituents(), intervals=intervals())
    # CCC and DDD have no interval: unknown membership, counted as members by default.
    assert u.members_on("2011-06-01") == ["AAA", "BBB", "CCC", "DDD"]
    assert u.members_on("2013-06-01") == ["AAA", "CCC", "DDD"]
    assert u.members_on("2013-06-01", assume_member_without_interval=False) == ["AAA"]
    assert u.members_on("2009-06-01", assume_member_without_interval=False) == []
    frame = pd.DataFrame(
        {
            "symbol": ["BBB", "BBB", "BBB", "AAA", "CCC"],
            "date": pd.to_datetime(
                ["2011-01-03", "2013-01-03", "2016-01-04", "2009-01-02", "2001-01-02"]
            ),
        }
    )
    assert u.membership_mask(frame).tolist() == [True, False, True, False, True]


HANDWRITTEN_MEMBERSHIP = (
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "handwritten_membership"
    / "sp500_membership_intervals.csv"
)


def test_point_in_time_keeps_the_rows_of_members_on_their_date() -> None:
    """The hand-written membership file: EN02 joins 2023-02-15, EN03 leaves 2023-03-10, EN04
    left in 2020 and rejoined 2023-01-03, UT02 left 2022-12-30; EN05 is not listed."""
    members = pd.DataFrame(
        {
            "symbol": ["EN01", "EN02", "EN03", "EN04", "EN05", "UT01", "UT02"],
            "sector": ["Energy"] * 5 + ["Utilities"] * 2,
        }
    )
    u = Universe.from_frames(members, intervals=pd.read_csv(HANDWRITTEN_MEMBERSHIP))
    days = pd.to_datetime(["2022-12-30", "2023-02-14", "2023-02-15", "2023-03-10", "2023-03-13"])
    frame = pd.DataFrame(
        [(s, d) for d in days for s in members["symbol"]], columns=["symbol", "date"]
    )
    got = u.point_in_time(frame)
    kept = {d.date().isoformat(): sorted(g["symbol"]) for d, g in got.groupby("date")}
    assert kept == {
        "2022-12-30": ["EN01", "EN03", "EN05", "UT01", "UT02"],
        "2023-02-14": ["EN01", "EN03", "EN04", "EN05", "UT01"],
        "2023-02-15": ["EN01", "EN02", "EN03", "EN04", "EN05", "UT01"],
        "2023-03-10": ["EN01", "EN02", "EN03", "EN04", "EN05", "UT01"],
        "2023-03-13": ["EN01", "EN02", "EN04", "EN05", "UT01"],
    }
    # Without intervals nothing is known to exclude: every row stays.
    assert len(Universe.from_frames(members).point_in_time(frame)) == len(frame)


def test_save_and_read_round_trip(tmp_path: Path) -> None:
    u = Universe.from_frames(constituents(), intervals=intervals())
    u.save(tmp_path)
    back = Universe.read(tmp_path)
    pd.testing.assert_frame_equal(u.members, back.members)
    pd.testing.assert_frame_equal(u.intervals, back.intervals)


@pytest.mark.realdata
def test_real_sp500_constituents_and_membership(shared_data_dir: Path) -> None:
    u = Universe.load(
        shared_data_dir / "constituents.csv", shared_data_dir / "sp500_membership_intervals.csv"
    )
    assert len(u) == 529
    assert u.members.groupby("sector").size().to_dict()["Industrials"] >= 70
    assert {"large", "mid", "small", "unknown"} == set(u.members["cap_class"])
    # Survivorship: fewer of today's names were members in 2005 than today.
    assert len(u.members_on("2005-06-30", False)) < len(u.members_on("2024-06-28", False))
    assert "BRK-B" in u
