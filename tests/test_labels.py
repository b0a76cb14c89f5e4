"""Horizon labels: next-open entry, thresholds per mode, unlabeled tails, class balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import LabelSettings
from turbomode.features import indicators as ind
from turbomode.labels import BUY, HOLD, SELL, class_balance, label_columns, make_labels


def _frame(close: list[float], open_: list[float], sym: str = "A") -> pd.DataFrame:
    n = len(close)
    return pd.DataFrame(
        {
            "symbol": sym,
            "date": pd.bdate_range("2022-01-03", periods=n),
            "open": open_,
            "high": np.maximum(close, open_) * 1.01,
            "low": np.minimum(close, open_) * 0.99,
            "close": close,
            "volume": 1e6,
        }
    )


def test_forward_return_enters_at_next_open() -> None:
    close = [10.0, 11.0, 12.0, 9.0, 10.0]
    open_ = [10.0, 10.5, 11.5, 12.5, 9.5]
    lab = make_labels(_frame(close, open_), LabelSettings(mode="fixed", relative_to="none"))
    # h=1 at t=0: open[1]=10.5 → close[1]=11; h=2 at t=0: close[2]/open[1]
    assert lab["fwd_ret_1"][0] == pytest.approx(11 / 10.5 - 1)
    assert lab["fwd_ret_2"][0] == pytest.approx(12 / 10.5 - 1)
    assert lab["fwd_ret_2"][1] == pytest.approx(9 / 11.5 - 1)
    # the last h rows have no forward window
    assert lab["fwd_ret_1"].isna().tolist() == [False] * 4 + [True]
    assert lab["label_2"].isna().tolist() == [False] * 3 + [True] * 2
    assert lab["label_5"].isna().all()
    # fixed ±10 %: 9/11.5−1 = −21.7 % → SELL; 11/10.5−1 = 4.8 % → HOLD
    assert lab["label_2"][1] == SELL and lab["label_1"][0] == HOLD
    assert lab["label_1"][2] == SELL  # 9/12.5 − 1 = −28 %
    assert str(lab["label_1"].dtype) == "Int8"


def test_atr_mode_thresholds_scale_with_atr() -> None:
    rng = np.random.default_rng(0)
    close = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 80))))
    open_ = list(np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.005, 80)))
    df = _frame(close, open_)
    s = LabelSettings(mode="atr", atr_multiple={1: 0.5, 2: 0.7, 5: 1.0}, relative_to="none")
    lab = make_labels(df, s)
    h, lo, c = (df[k].to_numpy()[:, None] for k in ("high", "low", "close"))
    atr_pct = (ind.atr(h, lo, c, 14) / c)[:, 0]
    np.testing.assert_allclose(lab["atr_pct_label"], atr_pct, equal_nan=True)
    assert lab["label_1"][:13].isna().all()  # ATR warm-up: unlabeled
    for hz, k in s.atr_multiple.items():
        fwd, thr = lab[f"fwd_ret_{hz}"].to_numpy(), k * atr_pct
        ok = ~np.isnan(fwd) & ~np.isnan(thr)
        want = np.where(fwd >= thr, BUY, np.where(fwd <= -thr, SELL, HOLD))[ok]
        np.testing.assert_array_equal(lab[f"label_{hz}"].to_numpy()[ok].astype(int), want)
        assert lab[f"label_{hz}"][~ok].isna().all()
    # a larger multiple can only move rows towards HOLD
    wide = make_labels(df, LabelSettings(atr_multiple={1: 2.0, 2: 2.0, 5: 2.0}, relative_to="none"))
    assert (wide["label_1"] == HOLD).sum() >= (lab["label_1"] == HOLD).sum()


def test_sector_relative_labels_remove_the_sector_move() -> None:
    """Labels compare each return with its sector's mean that day; a move the whole sector
    shares labels nobody, and the raw forward return is kept for the IC."""
    n = 40
    close = 100 * np.exp(np.cumsum(np.full(n, 0.02)))  # every stock +2 % a day, open to close
    open_ = close / np.exp(0.02)
    frames = [_frame(list(close * m), list(open_ * m), s) for s, m in (("A", 1), ("B", 2))]
    # C also jumps +5 % between the open and the close of bar 30 (so fwd_ret_1 at t = 29)
    c_close, c_open = (
        close * np.r_[np.ones(30), np.full(10, 1.05)],
        open_ * np.r_[np.ones(31), np.full(9, 1.05)],
    )
    df = pd.concat([*frames, _frame(list(c_close), list(c_open), "C")])
    sectors = {"A": "Energy", "B": "Energy", "C": "Energy"}
    raw = make_labels(df, LabelSettings(relative_to="none"), sectors=sectors)
    rel = make_labels(df, LabelSettings(relative_to="sector"), sectors=sectors)
    np.testing.assert_array_equal(raw["fwd_ret_1"], rel["fwd_ret_1"])
    known = rel["label_1"].notna()
    jump = rel["date"] == pd.bdate_range("2022-01-03", periods=n)[29]
    peers = known & (rel["symbol"] != "C")
    # A and B rise 2 % a day: BUY on raw returns, HOLD against their sector; on C's jump day
    # they lag the sector mean and are SELL, and C is BUY.
    assert (raw.loc[peers & ~jump, "label_1"] == BUY).all()
    assert (rel.loc[known & ~jump, "label_1"] == HOLD).all()
    assert (rel.loc[peers & jump, "label_1"] == SELL).all()
    assert (rel.loc[(rel["symbol"] == "C") & jump, "label_1"] == BUY).all()


def test_symbols_do_not_bleed_into_each_other() -> None:
    a = _frame([10.0, 10.0, 10.0], [10.0, 10.0, 10.0], "A")
    b = _frame([50.0, 60.0, 70.0], [50.0, 55.0, 65.0], "B")
    lab = make_labels(pd.concat([b, a]), LabelSettings(mode="fixed", relative_to="none"))
    la = lab[lab["symbol"] == "A"]
    assert la["fwd_ret_1"].tolist()[:2] == [0.0, 0.0] and np.isnan(la["fwd_ret_1"].iloc[-1])


def test_bad_settings() -> None:
    df = _frame([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="horizon"):
        make_labels(df, LabelSettings(atr_multiple={1: 0.5}, relative_to="none"))
    with pytest.raises(ValueError, match="mode"):
        make_labels(df, mode="quantile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sector map"):
        make_labels(df, LabelSettings())
    with pytest.raises(ValueError, match=r"no sector for symbol\(s\) \['A'\]"):
        make_labels(df, LabelSettings(), sectors={"B": "Energy"})
    assert label_columns([1, 5]) == [
        "atr_pct_label",
        "fwd_ret_1",
        "label_1",
        "fwd_ret_5",
        "label_5",
    ]


def test_class_balance() -> None:
    lab = pd.DataFrame({"label_1": pd.array([0, 1, 1, 2, None], dtype="Int8")})
    bal = class_balance(lab)
    assert bal.loc[1].to_dict() == {"SELL": 0.25, "HOLD": 0.5, "BUY": 0.25, "n": 4}


@pytest.mark.realdata
def test_real_data_balance_legacy_rule_is_all_hold(shared_data_dir: Path) -> None:
    """The legacy ±10 % rule leaves ~99.8 % of 1-day rows HOLD; the ATR rule does not."""
    px = pd.read_parquet(shared_data_dir / "prices.parquet", filters=[("date", ">=", "2022-06-28")])
    px = px[px["symbol"].isin(sorted(px["symbol"].unique())[::10])]
    fixed = class_balance(make_labels(px, LabelSettings(mode="fixed", relative_to="none")))
    atr = class_balance(make_labels(px, LabelSettings(mode="atr", relative_to="none")))
    sectors = pd.read_csv(shared_data_dir / "constituents.csv").set_index("symbol")["sector"]
    px = px[px["symbol"].isin(sectors.index)]
    rel = class_balance(make_labels(px, LabelSettings(), sectors=sectors.to_dict()))
    for hz in (1, 2, 5):
        assert 0.20 < rel.loc[hz, "BUY"] < 0.40 and 0.20 < rel.loc[hz, "SELL"] < 0.40
    assert fixed.loc[1, "HOLD"] > 0.98
    assert 0.10 < atr.loc[1, "BUY"] < 0.40 and 0.10 < atr.loc[1, "SELL"] < 0.40
