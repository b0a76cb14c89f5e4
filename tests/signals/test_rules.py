"""Signal rules: entry thresholds, decay and age, capacity and replacement, sector overview."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from turbomode.config import SignalSettings
from turbomode.errors import SchemaError
from turbomode.records.signals import Side, Signal
from turbomode.signals.rules import (
    InvalidProbabilityError,
    age_bucket,
    effective_confidence,
    entry_candidates,
    entry_thresholds,
    invalid_probability_mask,
    lifts,
    night_candidates,
    quantile_thresholds,
    sector_overview,
    select_active,
    signal_age,
    signals_from_frame,
    signals_to_frame,
    threshold_for_quantile,
)

AS_OF = date(2024, 3, 15)  # a Friday
S = SignalSettings()


def _scores(rows: list[tuple[str, float, float, float]], **extra: object) -> pd.DataFrame:
    """(symbol, p_buy, p_hold, p_sell) rows on one horizon, close 100 and ATR 2."""
    n = len(rows)
    frame = pd.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "sector": "Energy",
            "cap_class": "large",
            "horizon": 1,
            "p_buy": [r[1] for r in rows],
            "p_hold": [r[2] for r in rows],
            "p_sell": [r[3] for r in rows],
            "close": [100.0] * n,
            "atr": [2.0] * n,
        }
    )
    for name, value in extra.items():
        frame[name] = value
    return frame


def _sig(
    symbol: str,
    confidence: float,
    age: int = 0,
    *,
    side: Side = "BUY",
    cap_class: str = "large",
    horizon: int = 1,
    sector: str = "Energy",
) -> Signal:
    p_side, p_other = confidence, (1.0 - confidence) / 2
    p_buy, p_sell = (p_side, p_other) if side == "BUY" else (p_other, p_side)
    return Signal(
        symbol=symbol,
        sector=sector,
        cap_class=cap_class,
        horizon=horizon,
        side=side,
        signal_date=AS_OF - timedelta(days=age),
        p_buy=p_buy,
        p_hold=p_other,
        p_sell=p_sell,
        confidence=confidence,
        close=100.0,
        atr=2.0,
        entry_low=97.0,
        entry_high=103.0,
        stop=96.0,
        target=110.0,
        stop_distance=4.0,
        model_version="v1",
    )


def _keys(signals: list[Signal]) -> list[str]:
    return [s.symbol for s in signals]


# --------------------------------------------------------------------------- entry


def test_threshold_exactly_at_entry_probability_fires_and_just_below_does_not() -> None:
    scores = _scores(
        [
            ("AT_BUY", 0.60, 0.30, 0.10),
            ("BELOW_BUY", 0.5999, 0.3001, 0.10),
            ("AT_SELL", 0.10, 0.30, 0.60),
            ("BELOW_SELL", 0.10, 0.3001, 0.5999),
        ]
    )
    out = entry_candidates(scores, S)
    assert out["symbol"].tolist() == ["AT_BUY", "AT_SELL"]
    assert out["side"].tolist() == ["BUY", "SELL"]
    assert out["confidence"].tolist() == [0.60, 0.60]
    assert out["entry_low"].tolist() == pytest.approx([97.0, 97.0])
    assert out["entry_high"].tolist() == pytest.approx([103.0, 103.0])


def test_shorts_disabled_gives_no_sell_and_no_fallback_buy() -> None:
    scores = _scores([("B", 0.70, 0.20, 0.10), ("S", 0.05, 0.15, 0.80)])
    out = entry_candidates(scores, SignalSettings(shorts_enabled=False))
    assert out["symbol"].tolist() == ["B"]
    # both sides pass a low threshold, SELL is the more likely: no BUY in its place
    both = _scores([("X", 0.44, 0.10, 0.46)])
    low = {"buy_threshold": 0.40, "sell_threshold": 0.40}
    assert entry_candidates(both, SignalSettings(shorts_enabled=False), **low).empty
    assert entry_candidates(both, S, **low)["side"].tolist() == ["SELL"]


def test_both_sides_passing_larger_wins_and_tie_gives_no_signal() -> None:
    scores = _scores(
        [("TIE", 0.45, 0.10, 0.45), ("BUY", 0.46, 0.10, 0.44), ("SELL", 0.40, 0.15, 0.45)]
    )
    out = entry_candidates(scores, S, buy_threshold=0.40, sell_threshold=0.40)
    assert out["symbol"].tolist() == ["BUY", "SELL"]
    assert out["side"].tolist() == ["BUY", "SELL"]
    assert out["confidence"].tolist() == [0.46, 0.45]


def test_entry_keeps_extra_columns_order_and_resets_index() -> None:
    scores = _scores([("A", 0.1, 0.2, 0.7), ("B", 0.2, 0.7, 0.1), ("C", 0.9, 0.05, 0.05)], run="n1")
    scores.index = [10, 11, 12]
    out = entry_candidates(scores, SignalSettings(entry_range=0.05))
    assert out.index.tolist() == [0, 1]
    assert out["symbol"].tolist() == ["A", "C"]
    assert out["run"].tolist() == ["n1", "n1"]
    assert out["entry_low"].tolist() == pytest.approx([95.0, 95.0])
    assert out["entry_high"].tolist() == pytest.approx([105.0, 105.0])
    empty = entry_candidates(scores.iloc[:0], S)
    assert empty.empty
    assert {"side", "confidence", "entry_low", "entry_high", "run"} <= set(empty.columns)


def test_bad_probabilities_raise_naming_only_the_bad_symbols() -> None:
    scores = _scores(
        [
            ("GOOD", 0.7, 0.2, 0.1),
            ("NAN", math.nan, 0.5, 0.5),
            ("SUM", 0.7, 0.3, 0.1),
            ("NEG", 1.2, -0.1, -0.1),
            ("INF", math.inf, 0.0, 0.0),
            ("TOL", 0.6, 0.3, 0.1 + 5e-7),  # within 1e-6: fine
        ]
    )
    with pytest.raises(InvalidProbabilityError) as info:
        entry_candidates(scores, S)
    assert isinstance(info.value, ValueError)
    assert info.value.symbols == ["INF", "NAN", "NEG", "SUM"]
    message = str(info.value)
    assert "4 score row(s)" in message
    assert "NAN (h=1)" in message and "SUM (h=1)" in message
    assert "GOOD" not in message and "TOL" not in message
    # the scan sets the failures aside first; the good rows then go through
    mask = invalid_probability_mask(scores)
    assert mask.tolist() == [False, True, True, True, True, False]
    assert entry_candidates(scores[~mask], S)["symbol"].tolist() == ["GOOD", "TOL"]


def test_missing_score_column_and_bad_threshold_are_refused() -> None:
    with pytest.raises(SchemaError, match="atr"):
        entry_candidates(_scores([("A", 0.7, 0.2, 0.1)]).drop(columns="atr"), S)
    with pytest.raises(ValueError, match="buy_threshold"):
        entry_candidates(_scores([("A", 0.7, 0.2, 0.1)]), S, buy_threshold=0.0)


def test_threshold_for_quantile_passes_the_top_share_with_a_floor() -> None:
    p = np.arange(1, 101) / 100  # 0.01 … 1.00
    t = threshold_for_quantile(p, 0.95, floor=0.40)
    assert t == pytest.approx(0.9505)
    assert int((p >= t).sum()) == 5
    # an unsure night: the 95th percentile is 0.3475, the floor holds
    unsure = np.linspace(0.20, 0.35, 101)
    assert threshold_for_quantile(unsure, 0.95, floor=0.40) == 0.40
    # non-finite values are ignored
    assert threshold_for_quantile([*p, math.nan], 0.95, floor=0.40) == pytest.approx(0.9505)
    with pytest.raises(ValueError, match="quantile"):
        threshold_for_quantile(p, 1.5, floor=0.4)
    with pytest.raises(ValueError, match="no finite"):
        threshold_for_quantile([math.nan], 0.95, floor=0.4)


def test_quantile_threshold_feeds_entry_candidates() -> None:
    rows = [(f"S{i:02d}", b, 0.9 - b, 0.1) for i, b in enumerate(np.linspace(0.30, 0.79, 50))]
    scores = _scores(rows)
    t = threshold_for_quantile(scores["p_buy"], 0.90, floor=0.40)
    out = entry_candidates(scores, S, buy_threshold=t)
    assert out["symbol"].tolist() == [f"S{i:02d}" for i in range(45, 50)]
    assert (out["side"] == "BUY").all()


def test_entry_thresholds_by_mode() -> None:
    scores = pd.DataFrame(
        {"p_buy": [0.10, 0.20, 0.30, 0.40, 0.50], "p_sell": [0.50, 0.45, 0.30, 0.20, 0.05]}
    )
    fixed = SignalSettings(threshold_mode="fixed", entry_probability=0.6)
    assert entry_thresholds(fixed, scores) == {"buy": 0.6, "sell": 0.6}
    # Fixed mode is the settings', whatever a scan recorded.
    assert entry_thresholds(fixed, measured={"buy": 1.5, "sell": 1.4}) == {"buy": 0.6, "sell": 0.6}

    quantile = SignalSettings(
        threshold_mode="quantile", threshold_quantile=0.75, threshold_floor=0.25
    )
    # Quantile mode works on lifts, P over the model's prior (1/3 without prior columns):
    # np.quantile, linear: P(BUY) 0.10..0.50 → 0.40 → lift 1.20; P(SELL) → 0.45 → 1.35.
    assert entry_thresholds(quantile, scores) == pytest.approx({"buy": 1.20, "sell": 1.35})
    quantile.threshold_floor_lift = 1.26
    assert entry_thresholds(quantile, scores) == pytest.approx({"buy": 1.26, "sell": 1.35})
    quantile.threshold_quantile = 0.5
    assert entry_thresholds(quantile, scores) == pytest.approx({"buy": 1.26, "sell": 1.26})
    with_prior = scores.assign(prior_buy=0.25, prior_sell=0.5)
    assert entry_thresholds(quantile, with_prior) == pytest.approx({"buy": 1.26, "sell": 1.26})
    quantile.threshold_floor_lift = 1.0
    assert entry_thresholds(quantile, with_prior) == pytest.approx({"buy": 1.2, "sell": 1.0})
    # No scores: nothing to take a quantile of, the floor stands.
    assert entry_thresholds(quantile, scores.iloc[0:0]) == {"buy": 1.0, "sell": 1.0}
    assert entry_thresholds(quantile) == {"buy": 1.0, "sell": 1.0}
    # A scan's measure of the whole night stands for the few rows a request scores.
    measured = {"buy": 1.5, "sell": 1.4}
    assert entry_thresholds(quantile, with_prior, measured=measured) == measured


def test_night_candidates_compare_what_the_mode_thresholds() -> None:
    """Fixed mode compares P(side) with entry_probability; quantile mode compares lifts with
    the night's quantile of lifts (or the thresholds given)."""
    rows = [("A", 0.62, 0.28, 0.10), ("B", 0.45, 0.45, 0.10), ("C", 0.30, 0.30, 0.40)]
    scores = _scores(rows, prior_buy=0.3, prior_sell=0.3)
    fixed = SignalSettings(threshold_mode="fixed")
    assert night_candidates(scores, fixed)["symbol"].tolist() == ["A"]  # P(BUY) ≥ 0.60
    quantile = SignalSettings(threshold_mode="quantile", threshold_quantile=0.5)
    # BUY lifts 2.07, 1.5, 1.0: the median 1.5 passes A and B; SELL lifts 0.33, 0.33, 1.33:
    # the median is below the 1.0 floor, which C's passes.
    got = night_candidates(scores, quantile)
    assert list(zip(got["symbol"], got["side"], strict=True)) == [
        ("A", "BUY"),
        ("B", "BUY"),
        ("C", "SELL"),
    ]
    given = night_candidates(scores, quantile, {"buy": 2.0, "sell": 1.4})
    assert given["symbol"].tolist() == ["A"]


# --------------------------------------------------------------------------- decay


def test_effective_confidence_exact_values() -> None:
    assert effective_confidence(0.8, 0, S) == pytest.approx(0.8)
    assert effective_confidence(0.8, 7, S) == pytest.approx(0.68)  # 0.8 × (1 − 0.5 × 0.3)
    assert effective_confidence(0.8, 14, S) == pytest.approx(0.56)
    assert effective_confidence(0.8, 20, S) == pytest.approx(0.8 * (1 - 20 / 14 * 0.3))
    assert effective_confidence(0.8, 50, S) == 0.0  # the line crosses 0 at 46.7 days
    assert effective_confidence(0.8, 10, S) == pytest.approx(0.628571, abs=1e-6)
    assert effective_confidence(0.8, 5, S) == pytest.approx(0.714286, abs=1e-6)
    assert isinstance(effective_confidence(0.8, 7, S), float)


def test_effective_confidence_is_vectorized() -> None:
    out = effective_confidence(np.array([0.8, 0.8, 0.8, 0.7]), np.array([0, 7, 14, 100]), S)
    assert isinstance(out, np.ndarray)
    assert out.tolist() == pytest.approx([0.8, 0.68, 0.56, 0.0])
    broadcast = effective_confidence(pd.Series([0.8, 0.6]), 7, S)
    assert broadcast.tolist() == pytest.approx([0.68, 0.51])
    with pytest.raises(ValueError, match="age_days"):
        effective_confidence(0.8, -1, S)


def test_age_bucket_boundaries() -> None:
    assert age_bucket(0, 14) == "hot"
    assert age_bucket(3.49, 14) == "hot"
    assert age_bucket(3.5, 14) == "warm"
    assert age_bucket(6.99, 14) == "warm"
    assert age_bucket(7, 14) == "cool"
    assert age_bucket(10.49, 14) == "cool"
    assert age_bucket(10.5, 14) == "cold"
    assert age_bucket(14, 14) == "cold"
    assert age_bucket(400, 14) == "cold"
    ages = np.array([0, 3, 4, 7, 10, 11, 30])
    assert age_bucket(ages, 14).tolist() == ["hot", "hot", "warm", "cool", "cool", "cold", "cold"]
    assert age_bucket([6.9, 7, 14, 21], 28).tolist() == ["hot", "warm", "cool", "cold"]
    with pytest.raises(ValueError):
        age_bucket(-1, 14)


def test_signal_age_counts_calendar_days() -> None:
    friday, monday = date(2024, 3, 15), date(2024, 3, 18)
    assert signal_age(friday, monday) == 3  # the weekend ages a signal too
    assert signal_age(friday, friday) == 0
    assert signal_age(pd.Timestamp("2024-03-01"), datetime(2024, 3, 15, 22, 30)) == 14
    with pytest.raises(ValueError, match="after as_of"):
        signal_age(monday, friday)


# --------------------------------------------------------------------------- capacity


def test_capacity_keeps_the_top_20_of_21_per_class_and_side() -> None:
    fresh = [_sig(f"S{i:02d}", 0.60 + i * 0.01) for i in range(21)]  # S00 weakest
    other_class = _sig("MID", 0.61, cap_class="mid")
    other_side = _sig("SHORT", 0.61, side="SELL")
    r = select_active([], [*fresh, other_class, other_side], AS_OF, S)
    assert len(r.active) == 22
    assert _keys(r.active)[:3] == ["S20", "S19", "S18"]  # ordered by effective confidence
    assert "S00" not in _keys(r.active)
    assert {"MID", "SHORT"} <= set(_keys(r.active))
    assert [(d.signal.symbol, d.reason) for d in r.dropped] == [("S00", "capacity_full")]
    assert r.added == r.active and r.kept == [] and r.replaced == []


def _full_class(weak: Signal) -> list[Signal]:
    """20 BUYs in (large, BUY): 19 strong ones aged 1 day, plus ``weak``."""
    return [*(_sig(f"K{i:02d}", 0.90, age=1) for i in range(19)), weak]


def test_fresh_065_replaces_an_aged_080_at_age_10() -> None:
    aged = _sig("OLD", 0.80, age=10)  # 0.8 × (1 − 10/14 × 0.3) = 0.6286
    new = _sig("NEW", 0.65)
    r = select_active(_full_class(aged), [new], AS_OF, S)
    assert len(r.active) == 20
    assert "NEW" in _keys(r.active) and "OLD" not in _keys(r.active)
    assert [(x.old.symbol, x.new.symbol, x.reason) for x in r.replaced] == [
        ("OLD", "NEW", "capacity")
    ]
    assert [(d.signal.symbol, d.reason, d.by) for d in r.dropped] == [("OLD", "displaced", new)]
    assert r.added == [new]
    assert len(r.kept) == 19


def test_fresh_062_does_not_replace_an_aged_080_at_age_5() -> None:
    aged = _sig("OLD", 0.80, age=5)  # 0.7143 > 0.62
    existing = _full_class(aged)
    r = select_active(existing, [_sig("NEW", 0.62)], AS_OF, S)
    assert set(_keys(r.active)) == set(_keys(existing))
    assert r.kept == r.active and r.added == [] and r.replaced == []
    assert [(d.signal.symbol, d.reason, d.by) for d in r.dropped] == [
        ("NEW", "capacity_full", None)
    ]


def test_equal_effective_confidence_keeps_the_incumbent() -> None:
    aged = _sig("OLD", 0.80, age=7)  # 0.68 after decay (0.6799999… in floats)
    r = select_active(_full_class(aged), [_sig("NEW", 0.68)], AS_OF, S)
    assert "OLD" in _keys(r.active) and "NEW" not in _keys(r.active)
    r = select_active(_full_class(aged), [_sig("NEW", 0.6801)], AS_OF, S)
    assert "NEW" in _keys(r.active) and "OLD" not in _keys(r.active)


def test_ties_break_by_symbol_then_horizon() -> None:
    fresh = [
        _sig("B", 0.7, horizon=1),
        _sig("A", 0.7, horizon=5),
        _sig("A", 0.7, horizon=2),
        _sig("C", 0.7, horizon=1),
    ]
    r = select_active([], fresh, AS_OF, SignalSettings(capacity_per_class_side=3))
    assert [s.key for s in r.active] == [("A", 2), ("A", 5), ("B", 1)]
    assert [d.signal.key for d in r.dropped] == [("C", 1)]
    again = select_active(
        [], list(reversed(fresh)), AS_OF, SignalSettings(capacity_per_class_side=3)
    )
    assert again == r


def test_same_side_refresh_replaces_and_keeps_the_slot() -> None:
    old = _sig("AAA", 0.90, age=5)  # the strongest in the class …
    existing = [*(_sig(f"K{i:02d}", 0.80, age=1) for i in range(19)), old]
    refresh = _sig("AAA", 0.61)  # … refreshed weaker than all the others: still its slot
    r = select_active(existing, [refresh], AS_OF, S)
    assert refresh in r.active and old not in r.active and len(r.active) == 20
    assert r.active[-1] == refresh  # ranked last, age restarted at 0
    assert [(x.old, x.new, x.reason) for x in r.replaced] == [(old, refresh, "refresh")]
    assert [(d.signal, d.reason, d.by) for d in r.dropped] == [(old, "superseded", refresh)]
    assert r.added == [refresh] and len(r.kept) == 19


def test_opposite_side_reverses_and_competes_on_its_own_side() -> None:
    old = _sig("AAA", 0.75, age=3)
    flip = _sig("AAA", 0.66, side="SELL")
    r = select_active([old, _sig("BBB", 0.7)], [flip], AS_OF, S)
    assert _keys(r.active) == ["BBB", "AAA"] and r.active[1].side == "SELL"
    assert [(x.old, x.new, x.reason) for x in r.replaced] == [(old, flip, "reversal")]
    # a full SELL class the reversal cannot enter: the old BUY still goes
    sells = [_sig(f"K{i:02d}", 0.9, age=1, side="SELL") for i in range(20)]
    r = select_active([old, *sells], [flip], AS_OF, S)
    assert old not in r.active and flip not in r.active and r.replaced == []
    assert {(d.signal.side, d.reason) for d in r.dropped} == {
        ("BUY", "superseded"),
        ("SELL", "capacity_full"),
    }


def test_lowered_capacity_trims_the_weakest_incumbents() -> None:
    existing = [_sig("A", 0.9), _sig("B", 0.8), _sig("C", 0.7), _sig("D", 0.6)]
    r = select_active(existing, [_sig("N", 0.85)], AS_OF, SignalSettings(capacity_per_class_side=2))
    assert _keys(r.active) == ["A", "N"]
    assert [(d.signal.symbol, d.reason) for d in r.dropped] == [
        ("B", "displaced"),
        ("C", "over_capacity"),
        ("D", "over_capacity"),
    ]
    assert [(x.old.symbol, x.new.symbol) for x in r.replaced] == [("B", "N")]


def test_selection_partitions_its_inputs() -> None:
    existing = [
        _sig(f"E{i}", 0.6 + 0.03 * i, age=i, side="BUY" if i % 2 else "SELL") for i in range(12)
    ]
    fresh = [_sig(f"E{i}", 0.7, side="BUY") for i in range(0, 12, 3)]
    fresh += [_sig(f"F{i}", 0.55 + 0.04 * i, side="SELL" if i % 2 else "BUY") for i in range(10)]
    r = select_active(existing, fresh, AS_OF, SignalSettings(capacity_per_class_side=4))
    assert sorted(map(id, r.active)) == sorted(map(id, r.kept + r.added))
    assert sorted(map(id, r.active + [d.signal for d in r.dropped])) == sorted(
        map(id, existing + fresh)
    )
    assert len({s.key for s in r.active}) == len(r.active)
    for side in ("BUY", "SELL"):
        assert sum(s.side == side for s in r.active) <= 4


def test_selection_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="more than one"):
        select_active([], [_sig("A", 0.7), _sig("A", 0.8)], AS_OF, S)
    with pytest.raises(ValueError, match="older than the active"):
        select_active([_sig("A", 0.7, age=1)], [_sig("A", 0.8, age=2)], AS_OF, S)
    with pytest.raises(ValueError, match="after as_of"):
        select_active([], [_sig("A", 0.7, age=-1)], AS_OF, S)


# --------------------------------------------------------------------------- overview


def test_sector_overview_numbers_and_stances() -> None:
    active = [
        _sig("E1", 0.8, age=0, sector="Energy"),
        _sig("E2", 0.7, age=7, sector="Energy"),  # 0.595
        _sig("E3", 0.6, age=14, sector="Energy"),  # 0.42
        _sig("E4", 0.9, age=0, side="SELL", sector="Energy"),
        _sig("F1", 0.7, sector="Financials"),  # net 1: neutral
        _sig("U1", 0.8, side="SELL", sector="Utilities"),
        _sig("U2", 0.6, side="SELL", sector="Utilities"),
        *(_sig(f"H{i}", 0.7, sector="Health Care") for i in range(6)),
        *(_sig(f"h{i}", 0.7, side="SELL", sector="Health Care") for i in range(4)),
        *(_sig(f"I{i}", 0.7, sector="Industrials") for i in range(7)),
        *(_sig(f"i{i}", 0.7, side="SELL", sector="Industrials") for i in range(5)),
    ]
    out = sector_overview(active, AS_OF, S, sectors=["Materials"]).set_index("sector")
    assert list(out.index) == [
        "Energy",
        "Financials",
        "Health Care",
        "Industrials",
        "Materials",
        "Utilities",
    ]
    e = out.loc["Energy"]
    assert (e.n_buy, e.n_sell, e.net) == (3, 1, 2)
    assert e.mean_eff_buy == pytest.approx((0.8 + 0.595 + 0.42) / 3)
    assert e.mean_eff_sell == pytest.approx(0.9)
    assert e.buy_share == pytest.approx(0.75)
    assert e.stance == "bullish"
    assert out.loc["Financials", "stance"] == "neutral"
    assert (out.loc["Utilities", "net"], out.loc["Utilities", "stance"]) == (-2, "bearish")
    assert math.isnan(out.loc["Utilities", "mean_eff_buy"])
    assert out.loc["Utilities", "mean_eff_sell"] == pytest.approx(0.7)
    assert out.loc["Health Care", "stance"] == "bullish"  # net 2, share exactly 60 %
    assert out.loc["Industrials", "stance"] == "neutral"  # net 2, share 58 %
    m = out.loc["Materials"]
    assert (m.n_buy, m.n_sell, m.net, m.stance) == (0, 0, 0, "neutral")
    assert math.isnan(m.buy_share)
    assert out["n_buy"].dtype == "int64"
    empty = sector_overview([], AS_OF, S)
    assert empty.empty and "stance" in empty.columns


# --------------------------------------------------------------------------- frames


def _with_levels(candidates: pd.DataFrame) -> pd.DataFrame:
    out = candidates.copy()
    out["stop_distance"] = 2.0 * out["atr"]
    sign = np.where(out["side"] == "BUY", 1.0, -1.0)
    out["stop"] = out["close"] - sign * out["stop_distance"]
    out["target"] = out["close"] + sign * 2.5 * out["stop_distance"]
    return out


def test_signals_from_frame_and_back() -> None:
    scores = _scores([("A", 0.7, 0.2, 0.1), ("B", 0.1, 0.2, 0.7)])
    scores.loc[1, "horizon"] = 5
    frame = _with_levels(entry_candidates(scores, S))
    versions = {("Energy", 1): "v7", ("Energy", 5): "v9"}
    signals = signals_from_frame(frame, pd.Timestamp("2024-03-15"), versions)
    a, b = signals
    assert (a.symbol, a.side, a.horizon, a.model_version) == ("A", "BUY", 1, "v7")
    assert (b.symbol, b.side, b.horizon, b.model_version) == ("B", "SELL", 5, "v9")
    assert a.signal_date == date(2024, 3, 15) and type(a.signal_date) is date
    assert (a.confidence, a.stop, a.target, a.stop_distance) == (0.7, 96.0, 110.0, 4.0)
    assert (b.stop, b.target, b.entry_low, b.entry_high) == (104.0, 90.0, 97.0, 103.0)
    assert isinstance(a.confidence, float) and isinstance(a.horizon, int)
    assert signals_from_frame(frame, AS_OF, "v1")[1].model_version == "v1"

    back = signals_to_frame(signals)
    assert back["symbol"].tolist() == ["A", "B"]
    assert back["signal_date"].tolist() == [pd.Timestamp("2024-03-15")] * 2
    assert back["stop"].tolist() == [96.0, 104.0]
    aged = signals_to_frame(signals, as_of=date(2024, 3, 22), settings=S)
    assert aged["age_days"].tolist() == [7, 7]
    assert aged["effective_confidence"].tolist() == pytest.approx([0.595, 0.595])
    assert aged["age_bucket"].tolist() == ["cool", "cool"]
    empty = signals_to_frame([], as_of=AS_OF, settings=S)
    assert empty.empty and "effective_confidence" in empty.columns
    assert empty["confidence"].dtype == "float64"


def test_signals_from_frame_refuses_half_built_rows() -> None:
    frame = _with_levels(entry_candidates(_scores([("A", 0.7, 0.2, 0.1)]), S))
    with pytest.raises(ValueError, match="no model version"):
        signals_from_frame(frame, AS_OF, {("Energy", 5): "v1"})
    with pytest.raises(SchemaError, match="stop"):
        signals_from_frame(frame.drop(columns="stop"), AS_OF, "v1")
    broken = frame.copy()
    broken.loc[0, "target"] = math.nan
    with pytest.raises(ValueError, match=r"\['A'\]"):
        signals_from_frame(broken, AS_OF, "v1")
    assert signals_from_frame(frame.iloc[:0], AS_OF, "v1") == []


def test_quantile_mode_ranks_lifts_over_each_models_class_prior() -> None:
    """Calibrated probabilities sit around different priors (a 5-day BUY is likelier than a
    1-day one): the night's quantile is taken over P / prior, comparable across them."""
    rows = [("A", 0.30, 0.45, 0.25), ("B", 0.28, 0.45, 0.27), ("C", 0.20, 0.45, 0.35)]
    scores = _scores(rows, prior_buy=0.27, prior_sell=0.27)
    scores.loc[2, ["prior_buy", "prior_sell"]] = 0.40  # C's model has other priors
    lift_buy, lift_sell = lifts(scores)
    np.testing.assert_allclose(lift_buy, [0.30 / 0.27, 0.28 / 0.27, 0.20 / 0.40])
    np.testing.assert_allclose(lift_sell, [0.25 / 0.27, 0.27 / 0.27, 0.35 / 0.40])
    limits = quantile_thresholds(scores, S.model_copy(update={"threshold_quantile": 0.5}))
    assert limits["buy"] == pytest.approx(0.28 / 0.27)  # the median lift, above the 1.0 floor
    assert limits["sell"] == 1.0  # median SELL lift 0.875 < 1.0: the floor holds
    got = entry_candidates(
        scores, S, buy_threshold=limits["buy"], sell_threshold=limits["sell"], on="lift"
    )
    # A and B reach the BUY lift; C's P(SELL) 0.35 is below its own prior 0.40 (lift 0.875),
    # though above A's and B's — by probability it would have been the strongest SELL.
    assert list(zip(got["symbol"], got["side"], strict=True)) == [("A", "BUY"), ("B", "BUY")]
    assert got["confidence"].tolist() == [0.30, 0.28]  # confidence stays the probability
    # Without priors (the stacked ensemble) the lift is 3 × P: the same order as P.
    plain = _scores(rows)
    np.testing.assert_allclose(lifts(plain)[0], 3 * plain["p_buy"].to_numpy())
