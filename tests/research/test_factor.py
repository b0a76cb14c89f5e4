"""The factor measures against hand computations and scipy on small, hand-written data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from turbomode.errors import SchemaError
from turbomode.research import factor as f

D = pd.bdate_range("2024-01-01", periods=6)


def _shuffle(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)


# ------------------------------------------------------------------ forward returns


def test_forward_returns_by_each_symbols_own_bars() -> None:
    a = pd.DataFrame(
        {
            "symbol": "A",
            "date": D[:4],
            "open": [10.0, 11.0, 12.0, 13.0],
            "close": [10.5, 11.5, 12.5, 13.5],
        }
    )
    # B skips D[1]: its next bar after D[0] is D[2].
    b = pd.DataFrame(
        {"symbol": "B", "date": D[[0, 2, 3]], "open": [20.0, 22.0, 24.0], "close": [21, 23, 25]}
    )
    fwd = f.forward_returns(_shuffle(pd.concat([a, b])), horizons=[1, 2])
    assert list(fwd.columns) == [
        "symbol", "date", "ret_open_1", "ret_open_2", "ret_close_1", "ret_close_2",
    ]  # fmt: skip
    row = fwd.set_index(["symbol", "date"])
    a0 = row.loc[("A", D[0])]
    assert a0["ret_open_1"] == pytest.approx(11.5 / 11 - 1)  # close[t+1] / open[t+1]
    assert a0["ret_open_2"] == pytest.approx(12.5 / 11 - 1)  # close[t+2] / open[t+1]
    assert a0["ret_close_1"] == pytest.approx(12.5 / 11.5 - 1)  # close[t+2] / close[t+1]
    assert a0["ret_close_2"] == pytest.approx(13.5 / 11.5 - 1)  # close[t+3] / close[t+1]
    a2 = row.loc[("A", D[2])]
    assert a2["ret_open_1"] == pytest.approx(13.5 / 13 - 1)
    assert np.isnan(a2["ret_open_2"]) and np.isnan(a2["ret_close_1"])
    assert np.isnan(row.loc[("A", D[3])]).all()
    b0 = row.loc[("B", D[0])]
    assert b0["ret_open_1"] == pytest.approx(23 / 22 - 1)
    assert b0["ret_close_1"] == pytest.approx(25 / 23 - 1)


def test_forward_returns_rejects_duplicates() -> None:
    p = pd.DataFrame({"symbol": ["A", "A"], "date": [D[0], D[0]], "open": 1.0, "close": 1.0})
    with pytest.raises(SchemaError, match="duplicate"):
        f.forward_returns(p)


# ------------------------------------------------------------------ IC


def test_daily_ic_matches_scipy_per_date() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for i, d in enumerate(D[:3]):
        n = 15 if i < 2 else 9  # the last date has too few names
        score = rng.integers(0, 5, n).astype(float)  # ties
        ret = rng.normal(size=n)
        score[0] = np.nan  # a missing score drops the row
        ret[1] = np.inf  # so does a non-finite return
        rows.append(
            pd.DataFrame({"symbol": [f"S{j}" for j in range(n)], "date": d, "s": score, "r": ret})
        )
    frame = pd.concat(rows)
    ic = f.daily_ic(_shuffle(frame), "s", "r")
    for d in D[:2]:
        sub = frame[(frame["date"] == d) & np.isfinite(frame["s"]) & np.isfinite(frame["r"])]
        assert ic[d] == pytest.approx(spearmanr(sub["s"], sub["r"]).statistic, abs=1e-12)
    assert np.isnan(ic[D[2]])


def _two_sectors(x_ret: list[float], y_ret: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["x1", "x2", "x3", "y1", "y2", "y3"],
            "date": D[0],
            "sector": ["X"] * 3 + ["Y"] * 3,
            "score": [1.0, 2.0, 3.0, 11.0, 12.0, 13.0],  # sector Y sits 10 higher
            "ret": x_ret + y_ret,
        }
    )


def test_within_group_ic_by_hand() -> None:
    frame = _two_sectors([0.01, 0.03, 0.02], [-0.06, -0.05, -0.04])
    # Percentile ranks inside each sector, centred on the sector's mean (2/3):
    #   score  X: -1/3, 0, 1/3    Y: -1/3, 0, 1/3
    #   ret    X: -1/3, 1/3, 0    Y: -1/3, 0, 1/3
    # Σxy = 1/9 + 0 + 0 + 1/9 + 0 + 1/9 = 3/9; Σx² = Σy² = 4/9 → r = 0.75
    ic = f.daily_ic(frame, "score", "ret", group="sector", min_obs=6)
    assert ic[D[0]] == pytest.approx(0.75)


def test_pure_sector_offset_scores_zero_within_but_not_pooled() -> None:
    # Inside each sector the score ranks the returns +1 in X and −1 in Y; its only real
    # information is the sector offset, which picks Y (the sector that went up more).
    frame = _two_sectors([0.01, 0.02, 0.03], [0.06, 0.05, 0.04])
    within = f.daily_ic(frame, "score", "ret", group="sector", min_obs=6)
    pooled = f.daily_ic(frame, "score", "ret", min_obs=6)
    assert within[D[0]] == pytest.approx(0.0, abs=1e-12)
    # ranks 1..6 vs 1,2,3,6,5,4: Σd² = 8 → 1 − 6·8 / (6·35) = 0.7714…
    assert pooled[D[0]] == pytest.approx(1 - 48 / 210)


def test_within_group_ic_ignores_sector_offsets_and_small_groups() -> None:
    rng = np.random.default_rng(1)
    n = 40
    frame = pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)] * 3,
            "date": np.repeat(D[:3], n),
            "sector": (["A"] * 18 + ["B"] * 20 + ["C"] * 2) * 3,
            "score": rng.normal(size=3 * n),
            "ret": rng.normal(size=3 * n),
        }
    )
    base = f.daily_ic(frame, "score", "ret", group="sector")
    shifted = frame.assign(score=frame["score"] + frame["sector"].map({"A": 5, "B": -5, "C": 9}))
    pd.testing.assert_series_equal(base, f.daily_ic(shifted, "score", "ret", group="sector"))
    # sector C (2 names) is dropped: the same as leaving it out
    without_c = f.daily_ic(frame[frame["sector"] != "C"], "score", "ret", group="sector")
    pd.testing.assert_series_equal(base, without_c)


def test_ic_summary_and_by_month() -> None:
    ic = pd.Series(
        [0.1, -0.1, 0.3, np.nan, 0.2],
        index=pd.to_datetime(
            ["2024-01-02", "2024-01-03", "2024-01-04", "2024-02-01", "2024-02-02"]
        ),
    )
    s = f.ic_summary(ic)
    v = np.array([0.1, -0.1, 0.3, 0.2])
    assert s["n_days"] == 4
    assert s["mean"] == pytest.approx(0.125)
    assert s["std"] == pytest.approx(v.std(ddof=1))
    assert s["t"] == pytest.approx(0.125 / (v.std(ddof=1) / 2))
    assert s["pos_share"] == pytest.approx(0.75)
    assert s["icir"] == pytest.approx(0.125 / v.std(ddof=1))
    m = f.ic_by_month(ic)
    assert list(m.index) == ["2024-01", "2024-02"]
    assert m.loc["2024-01", "mean"] == pytest.approx(0.1)
    assert m.loc["2024-02", "n"] == 1


def test_sector_ic_and_ic_decay() -> None:
    rng = np.random.default_rng(2)
    n = 24
    frame = pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)] * 4,
            "date": np.repeat(D[:4], n),
            "sector": (["A"] * 12 + ["B"] * 12) * 4,
            "score": rng.normal(size=4 * n),
        }
    )
    frame["ret"] = np.where(frame["sector"] == "A", frame["score"], -frame["score"])
    table = f.sector_ic(frame, "score", "ret")
    assert table.loc["A", "mean"] == pytest.approx(1.0)
    assert table.loc["B", "mean"] == pytest.approx(-1.0)
    assert table.loc["A", "n_days"] == 4
    fwd = frame[["symbol", "date"]].assign(
        ret_open_1=frame["score"], ret_open_2=-frame["score"], ret_close_1=0.0, ret_close_2=0.0
    )
    decay = f.ic_decay(frame, "score", fwd, horizons=[1, 2])
    assert decay.loc[1, "mean"] == pytest.approx(1.0)
    assert decay.loc[2, "mean"] == pytest.approx(-1.0)
    assert f.ic_decay(frame, "score", fwd, horizons=[1], basis="close")["n_days"].iloc[0] == 0


# ------------------------------------------------------------------ portfolios


def test_decile_returns_by_hand() -> None:
    frame = pd.DataFrame(
        {
            "symbol": list("ABCD") * 2,
            "date": np.repeat(D[:2], 4),
            "score": [1, 2, 3, 4, 4, 3, 2, 1],
            "ret": [0.01, -0.01, 0.02, 0.04, 0.02, 0.02, 0.0, 0.02],
        }
    )
    out = f.decile_returns(_shuffle(frame), "score", "ret", n=2)
    # day 1: bottom {A, B} 0.00, top {C, D} 0.03; day 2: bottom {C, D} 0.01, top {A, B} 0.02
    assert out.loc[1, "mean_ret"] == pytest.approx(0.005)
    assert out.loc[2, "mean_ret"] == pytest.approx(0.025)
    assert out.loc[1, "n_days"] == 2 and out.loc[2, "mean_names"] == 2


def _ls_example() -> tuple[pd.DataFrame, pd.DataFrame]:
    opens = {
        "A": [100, 100, 110, 110, 121],
        "B": [50, 50, 50, 55, 55],
        "C": [20, 20, 20, 20, 22],
        "D": [10, 10, 9, 9, 9],
    }
    prices = pd.concat(
        pd.DataFrame({"symbol": s, "date": D[:5], "open": o, "close": o}) for s, o in opens.items()
    )
    scores = {  # decided at the close of D[0..3]
        "A": [4, 4, 4, 1],
        "B": [3, 1, 1, 2],
        "C": [2, 3, 3, 3],
        "D": [1, 2, 2, 4],
    }
    frame = pd.concat(
        pd.DataFrame({"symbol": s, "date": D[:4], "score": v}) for s, v in scores.items()
    )
    return _shuffle(frame), _shuffle(prices)


def test_long_short_by_hand() -> None:
    frame, prices = _ls_example()
    out = f.long_short(frame, "score", prices, n=2, cost_bps=10.0)
    # Open-to-open r = open[t+2]/open[t+1] − 1 per decision day:
    #   D0: A .10, B 0, C 0, D −.10   D1: B .10, others 0   D2: A .10, C .10, others 0
    # D0 book +½A +½B −½C −½D: gross .05 + .05 = .10; built from nothing: Σ|Δw| 2 → turnover .5,
    #    cost 2 × 10 bp = .002
    # D1 book +½A +½C −½B −½D: gross −.05; B and C swap sides (half the names):
    #    Σ|Δw| 2 → turnover .5, cost .002
    # D2 same book: gross .05 + .05 = .10, no trades
    # D3 has no r for anyone (the data ends): dropped
    assert list(out.index) == list(D[:3])
    assert out["gross"].tolist() == pytest.approx([0.10, -0.05, 0.10])
    assert out["turnover"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert out["cost"].tolist() == pytest.approx([0.002, 0.002, 0.0])
    assert out["net"].tolist() == pytest.approx([0.098, -0.052, 0.10])
    assert out["n_long"].tolist() == [2, 2, 2]
    s = f.ls_summary(out)
    net = np.array([0.098, -0.052, 0.10])
    assert s["total_return_net"] == pytest.approx(np.prod(1 + net) - 1)
    assert s["total_return_gross"] == pytest.approx(1.1 * 0.95 * 1.1 - 1)
    assert s["sharpe_net"] == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(252))
    assert s["ann_mean_gross"] == pytest.approx(0.05 * 252)
    assert s["mean_turnover"] == pytest.approx(1 / 3)
    assert s["max_drawdown_net"] == pytest.approx(1.098 * 0.948 / 1.098 - 1)  # −5.2 %


def test_long_short_smoothing_averages_last_scores() -> None:
    frame, prices = _ls_example()
    w = f.long_short_weights(frame, "score", n=2, smooth=2)
    # D1 smoothed: A 4, B 2, C 2.5, D 1.5 → long A, C; short B, D
    assert w.loc[D[1]].tolist() == pytest.approx([0.5, -0.5, 0.5, -0.5])
    out = f.long_short(frame, "score", prices, n=2, smooth=2, cost_bps=0.0)
    assert out["gross"].iloc[1] == pytest.approx(-0.05)


def test_long_short_group_neutral_weights() -> None:
    frame = pd.DataFrame(
        {
            "symbol": list("ABCDEF"),
            "date": D[0],
            "sector": ["X"] * 4 + ["Y"] * 2,
            "score": [1.0, 2.0, 3.0, 4.0, 10.0, 0.0],
        }
    )
    w = f.long_short_weights(frame, "score", n=2, group="sector").iloc[0]
    # X holds 4 of 6 names → ⅔ of each leg, split over its 2 top / 2 bottom names; Y ⅓ each
    assert w.tolist() == pytest.approx([-1 / 3, -1 / 3, 1 / 3, 1 / 3, 1 / 3, -1 / 3])
    assert w.sum() == pytest.approx(0.0)
    for sector in ("X", "Y"):  # sector-neutral
        assert w[frame.loc[frame["sector"] == sector, "symbol"]].sum() == pytest.approx(0.0)


def test_long_short_small_groups_hold_their_extremes() -> None:
    frame = pd.DataFrame(
        {
            "symbol": list("ABCDEFG"),
            "date": D[0],
            "sector": ["X"] * 4 + ["Y"] * 2 + ["Z"],
            "score": [1.0, 2.0, 3.0, 4.0, 10.0, 0.0, 5.0],
        }
    )
    w = f.long_short_weights(frame, "score", n=4, group="sector").iloc[0]
    # n = 4: X (4 names) holds D long and A short, ⅔ each; Y (2 names) E/F ⅓; Z (1) sits out
    assert w.tolist() == pytest.approx([-2 / 3, 0, 0, 2 / 3, 1 / 3, -1 / 3, 0])
    pooled = f.long_short_weights(frame.iloc[:3], "score", n=10).iloc[0]
    assert pooled.tolist() == pytest.approx([-1.0, 0.0, 1.0])


def test_missing_columns_name_the_problem() -> None:
    with pytest.raises(SchemaError, match="score"):
        f.daily_ic(pd.DataFrame({"symbol": [], "date": [], "ret": []}), "score", "ret")


def test_ic_decay_equals_daily_ic_per_horizon_with_missing_returns() -> None:
    rng = np.random.default_rng(5)
    n, days = 30, pd.bdate_range("2024-01-01", periods=8)
    frame = pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)] * len(days),
            "date": np.repeat(days, n),
            "score": rng.normal(size=n * len(days)),
        }
    )
    fwd = frame[["symbol", "date"]].copy()
    for h in (1, 2, 3):
        r = rng.normal(size=len(frame))
        r[rng.random(len(frame)) < 0.2 * h] = np.nan  # some rows lose their return
        fwd[f"ret_open_{h}"] = r
    decay = f.ic_decay(_shuffle(frame), "score", fwd, horizons=[1, 2, 3])
    merged = frame.merge(fwd, on=["symbol", "date"])
    for h in (1, 2, 3):
        per_day = [
            spearmanr(g["score"], g[f"ret_open_{h}"], nan_policy="omit").statistic
            for _, g in merged.groupby("date")
            if g[f"ret_open_{h}"].notna().sum() >= 10
        ]
        assert decay.loc[h, "mean"] == pytest.approx(np.mean(per_day))
        assert decay.loc[h, "n_days"] == len(per_day)
