"""Persisted tiers and universe: file layout, byte-identical re-runs, a latest that only moves
forward, and loaders that default to Average / everything kept, with a note."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from turbomode.config import Settings, Tier
from turbomode.errors import SchemaError
from turbomode.smart.state import (
    load_tiers,
    load_universe,
    month_label,
    quarter_label,
    state_dir,
    write_tiers,
    write_universe,
)
from turbomode.smart.tiers import Curation, SymbolRank


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data={"data_dir": tmp_path})


def _rank(sym: str, tier: Tier, n: int = 12, win: float = 0.6, payoff: float = 1.5) -> SymbolRank:
    return SymbolRank(sym, tier, n, win, 0.01, payoff, f"{sym} measured")


RANKS = {
    "AAA": _rank("AAA", Tier.ELITE),
    "BBB": _rank("BBB", Tier.AVOID, win=0.2),
    "CCC": SymbolRank("CCC", Tier.AVERAGE, 0, math.nan, math.nan, math.nan, "no evidence"),
}


def test_labels() -> None:
    assert month_label(date(2024, 6, 30)) == "2024-06"
    assert [quarter_label(date(2024, m, 5)) for m in (1, 3, 4, 6, 7, 12)] == [
        "2024Q1",
        "2024Q1",
        "2024Q2",
        "2024Q2",
        "2024Q3",
        "2024Q4",
    ]


def test_tiers_file_layout_round_trip_and_nan_as_null(settings: Settings) -> None:
    path = write_tiers(settings, date(2024, 6, 17), 5, RANKS)
    assert path == state_dir(settings) / "tiers_2024-06.json"
    assert (state_dir(settings) / "tiers_latest.json").read_bytes() == path.read_bytes()
    doc = json.loads(path.read_text())
    assert doc["as_of"] == "2024-06-01" and doc["horizon"] == 5
    assert doc["counts"] == {"Elite": 1, "Strong": 0, "Average": 1, "Weak": 0, "Avoid": 1}
    assert doc["symbols"]["CCC"]["win_rate"] is None  # JSON has no NaN

    state = load_tiers(settings, date(2024, 6, 28))
    assert state.note is None and state.as_of == date(2024, 6, 1) and state.path == path
    assert state.tiers == {"AAA": Tier.ELITE, "BBB": Tier.AVOID, "CCC": Tier.AVERAGE}
    assert state.ranks["AAA"] == RANKS["AAA"]
    assert math.isnan(state.ranks["CCC"].payoff)
    assert state.tier("ZZZ") is Tier.AVERAGE


def test_tiers_rerun_is_byte_identical(settings: Settings) -> None:
    first = write_tiers(settings, date(2024, 6, 1), 5, RANKS).read_bytes()
    again = write_tiers(settings, date(2024, 6, 20), 5, dict(reversed(list(RANKS.items()))))
    assert again.read_bytes() == first
    assert sorted(p.name for p in state_dir(settings).iterdir()) == [
        "tiers_2024-06.json",
        "tiers_latest.json",
    ]


def test_latest_only_moves_forward_and_a_day_reads_its_month(settings: Settings) -> None:
    write_tiers(settings, date(2024, 7, 1), 5, {"AAA": _rank("AAA", Tier.STRONG)})
    write_tiers(settings, date(2024, 6, 1), 5, RANKS)  # a back-fill
    assert load_tiers(settings).as_of == date(2024, 7, 1)
    assert load_tiers(settings, date(2024, 6, 9)).tier("AAA") is Tier.ELITE
    assert load_tiers(settings, date(2024, 7, 9)).tier("AAA") is Tier.STRONG
    later = load_tiers(settings, date(2024, 9, 2))  # no August/September ranking yet
    assert later.as_of == date(2024, 7, 1)
    assert later.note is not None and "no ranking for 2024-09" in later.note


def test_no_ranking_means_average_with_a_note(settings: Settings) -> None:
    for state in (load_tiers(settings), load_tiers(settings, date(2024, 6, 1))):
        assert state.as_of is None and state.tiers == {}
        assert state.tier("AAA") is Tier.AVERAGE
        assert state.note is not None and "every symbol is Average" in state.note
    write_tiers(settings, date(2024, 6, 1), 5, RANKS)
    before = load_tiers(settings, date(2024, 5, 31))  # nothing as old as May
    assert before.as_of is None and before.tier("BBB") is Tier.AVERAGE


def test_universe_layout_idempotence_and_defaults(settings: Settings) -> None:
    empty = load_universe(settings, date(2024, 8, 1))
    assert empty.allows("ANY") and empty.note is not None and "every symbol kept" in empty.note

    cur = Curation(date(2024, 7, 1), ("AAA", "CCC"), {"BBB": "Avoid twice"})
    path = write_universe(settings, cur, 5)
    assert path.name == "universe_2024Q3.json"
    first = path.read_bytes()
    assert write_universe(settings, cur, 5).read_bytes() == first
    assert (state_dir(settings) / "universe_latest.json").read_bytes() == first

    write_universe(settings, Curation(date(2024, 4, 1), ("AAA", "BBB", "CCC"), {}), 5)
    assert load_universe(settings).quarter == "2024Q3"  # the back-fill did not move latest
    q3 = load_universe(settings, date(2024, 9, 30))
    assert q3.note is None and not q3.allows("BBB") and q3.allows("AAA") and q3.allows("NEW")
    assert q3.dropped == {"BBB": "Avoid twice"}
    assert load_universe(settings, date(2024, 5, 2)).allows("BBB")  # Q2's curation
    assert load_universe(settings, date(2024, 3, 31)).as_of is None


def test_a_foreign_or_broken_file_is_a_schema_error(settings: Settings) -> None:
    d = state_dir(settings)
    d.mkdir(parents=True)
    (d / "tiers_2024-06.json").write_text('{"kind": "universe"}')
    with pytest.raises(SchemaError, match="not a Smart Scanner tiers file"):
        load_tiers(settings, date(2024, 6, 3))
    (d / "universe_latest.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_universe(settings)
