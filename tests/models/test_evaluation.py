"""Metrics give exact numbers on hand-built cases, baselines are valid, the paired test is fair."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as sk
from scipy import stats

from turbomode.models.evaluation import (
    calibration,
    classification_metrics,
    comparison_table,
    daily_balanced_accuracy,
    daily_class_counts,
    evaluate,
    ic_summary,
    majority_baseline,
    momentum_baseline,
    paired_daily_test,
    paired_pooled_bootstrap,
    pooled_balanced_accuracy,
    prior_baseline,
    rank_ic,
    score_from_proba,
    to_json,
    to_jsonable,
    to_markdown,
    top_decile_precision,
)

Y6 = np.array([0, 0, 1, 1, 2, 2])
P6 = np.array(
    [
        [0.6, 0.3, 0.1],  # SELL, right
        [0.3, 0.5, 0.2],  # HOLD, wrong (SELL)
        [0.2, 0.7, 0.1],  # HOLD, right
        [0.1, 0.8, 0.1],  # HOLD, right
        [0.1, 0.2, 0.7],  # BUY, right
        [0.5, 0.1, 0.4],  # SELL, wrong (BUY)
    ]
)


def _plain(obj: object) -> None:
    """Only JSON's own types, all the way down."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str)
            _plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _plain(v)
    else:
        assert obj is None or type(obj) in (bool, int, float, str), (obj, type(obj))
        assert not (isinstance(obj, float) and not math.isfinite(obj))


# --------------------------------------------------------------------------- classification


def test_classification_hand_case() -> None:
    m = classification_metrics(Y6, P6)
    pc = m["per_class"]
    assert pc["SELL"]["precision"] == pytest.approx(1 / 2)
    assert pc["HOLD"]["precision"] == pytest.approx(2 / 3)
    assert pc["BUY"]["precision"] == pytest.approx(1.0)
    assert [pc[c]["recall"] for c in ("SELL", "HOLD", "BUY")] == pytest.approx([0.5, 1.0, 0.5])
    assert [pc[c]["support"] for c in ("SELL", "HOLD", "BUY")] == [2, 2, 2]
    assert [pc[c]["predicted"] for c in ("SELL", "HOLD", "BUY")] == [2, 3, 1]
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx({"SELL": 7 / 8, "HOLD": 1.0, "BUY": 1.0})
    assert m["roc_auc_macro"] == pytest.approx((7 / 8 + 2) / 3)
    expected_ll = -np.mean(np.log([0.6, 0.3, 0.7, 0.8, 0.7, 0.4]))
    assert m["log_loss"] == pytest.approx(expected_ll)
    # Σ_k (p_k − y_k)² per row: 0.26, 0.78, 0.14, 0.06, 0.14, 0.62 → mean 2/6
    assert m["brier"] == pytest.approx(1 / 3)
    assert m["auc_skipped"] == []
    _plain(m)


def test_perfect_inverted_and_constant_predictors() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 2, 0])
    perfect = np.eye(3)[y]
    m = classification_metrics(y, perfect)
    assert m["balanced_accuracy"] == 1.0 and m["roc_auc_macro"] == 1.0
    assert m["brier"] == 0.0 and m["log_loss"] == pytest.approx(0.0, abs=1e-12)

    inverted = (1.0 - perfect) / 2.0  # the true class is the one it rules out
    m = classification_metrics(y, inverted)
    assert m["roc_auc"] == {"SELL": 0.0, "HOLD": 0.0, "BUY": 0.0}

    constant = np.full((len(y), 3), 1 / 3)
    m = classification_metrics(y, constant)
    assert m["roc_auc_macro"] == pytest.approx(0.5)
    assert m["log_loss"] == pytest.approx(math.log(3))
    assert m["brier"] == pytest.approx(2 / 3)
    assert m["per_class"]["HOLD"]["precision"] is None  # never predicted: undefined, not 0


def test_absent_class_skips_auc_and_says_so() -> None:
    y = np.array([1, 1, 2, 2, 1])
    p = np.array(
        [[0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.1, 0.4, 0.5], [0.0, 0.9, 0.1]]
    )
    m = classification_metrics(y, p)
    assert m["auc_skipped"] == ["SELL"] and m["roc_auc"]["SELL"] is None
    assert "SELL" in m["auc_note"]
    assert m["roc_auc_macro"] == pytest.approx((m["roc_auc"]["HOLD"] + m["roc_auc"]["BUY"]) / 2)
    assert m["balanced_accuracy"] == pytest.approx(1.0)  # only present classes count


def test_matches_scikit_learn_on_random_data() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    p = rng.dirichlet([1, 2, 1], 500) + np.eye(3)[y] * 0.3
    p /= p.sum(axis=1, keepdims=True)
    m = classification_metrics(y, p)
    assert m["roc_auc_macro"] == pytest.approx(sk.roc_auc_score(y, p, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, p))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p.argmax(axis=1)))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="0 \\(SELL\\), 1 \\(HOLD\\) or 2 \\(BUY\\)"):
        classification_metrics(np.array([0, 3]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="drop unlabeled rows"):
        classification_metrics(pd.array([0, None], dtype="Int8"), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="sum to 1"):
        classification_metrics(np.array([0, 1]), np.array([[0.5, 0.5, 0.5], [0, 1, 0]]))
    with pytest.raises(ValueError, match="n×3"):
        classification_metrics(np.array([0, 1]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="2 rows but y_true has 3"):
        classification_metrics(np.array([0, 1, 2]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="NaT"):
        rank_ic([1.0, 2.0], [1.0, 2.0], [pd.Timestamp("2024-01-02"), pd.NaT])


# --------------------------------------------------------------------------- rank IC


def test_rank_ic_three_dates_by_six_symbols() -> None:
    days = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"])
    score = np.tile(np.arange(1.0, 7.0), 3)
    ret = np.concatenate(
        [
            np.arange(1, 7) * 0.01,  # same order: +1
            np.arange(6, 0, -1) * 0.01,  # reversed: −1
            np.array([2, 1, 3, 4, 5, 6]) * 0.01,  # one adjacent swap: 1 − 6·2/(6·35) = 33/35
        ]
    )
    dates = np.repeat(days, 6)
    # a fourth date with only 4 names is skipped; rows come shuffled
    dates = np.concatenate([dates, np.repeat(pd.to_datetime(["2024-01-05"]), 4)])
    score = np.concatenate([score, [1.0, 2.0, 3.0, 4.0]])
    ret = np.concatenate([ret, [0.4, 0.3, 0.2, 0.1]])
    perm = np.random.default_rng(0).permutation(len(score))
    ic = rank_ic(score[perm], ret[perm], dates[perm])
    assert list(ic.index) == list(days)
    assert ic.to_numpy() == pytest.approx([1.0, -1.0, 33 / 35])

    s = ic_summary(ic)
    assert s["n_days"] == 3
    assert s["mean_ic"] == pytest.approx(11 / 35)
    assert s["std_ic"] == pytest.approx(math.sqrt(1588) / 35)
    assert s["icir"] == pytest.approx(11 / math.sqrt(1588))
    assert s["t_stat"] == pytest.approx(11 * math.sqrt(3) / math.sqrt(1588))
    assert s["share_positive"] == pytest.approx(2 / 3)


def test_rank_ic_matches_scipy_with_ties_and_nans() -> None:
    rng = np.random.default_rng(5)
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=4), 30)
    score = rng.integers(0, 5, len(dates)).astype(float)  # heavy ties
    ret = rng.normal(size=len(dates)) + 0.1 * score
    ret[::7] = np.nan
    ic = rank_ic(score, ret, dates)
    for day, value in ic.items():
        sel = (dates == day) & ~np.isnan(ret)
        assert value == pytest.approx(stats.spearmanr(score[sel], ret[sel]).statistic)


def test_constant_score_has_zero_ic() -> None:
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=2), 6)
    ic = rank_ic(np.zeros(12), np.arange(12.0), dates)
    assert ic.tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- deciles, calibration


def test_top_decile_hand_case() -> None:
    d1, d2, d3 = pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"])
    score = np.concatenate([np.arange(10.0), np.arange(10.0)[::-1], np.ones(10)])
    y = np.full(30, 1)
    ret = np.zeros(30)
    y[9], ret[9] = 2, 0.05  # d1 top: BUY, +5 %
    y[0], ret[0] = 0, -0.03  # d1 bottom: SELL, −3 %
    ret[10] = 0.01  # d2 top (score 9): HOLD, +1 %
    y[19], ret[19] = 0, -0.01  # d2 bottom (score 0): SELL, −1 %
    y[20:22] = 2  # d3 has one score for all: no ranking, skipped
    dates = np.repeat([d1, d2, d3], 10)
    out = top_decile_precision(score, y, ret, dates)
    assert out["n_dates"] == 2
    assert out["top"] == {"n": 2, "precision_buy": 0.5, "mean_return": pytest.approx(0.03)}
    assert out["bottom"] == {"n": 2, "precision_sell": 1.0, "mean_return": pytest.approx(-0.02)}
    assert out["long_short_spread"] == pytest.approx(0.05)
    assert out["base_rate_buy"] == pytest.approx(1 / 20)
    assert out["base_rate_sell"] == pytest.approx(2 / 20)
    # quantile 0.2 takes two names a day
    assert top_decile_precision(score, y, ret, dates, quantile=0.2)["top"]["n"] == 4


def test_calibration_hand_case() -> None:
    y = np.array([0, 2, 2, 2])
    p_buy = np.array([0.05, 0.05, 0.95, 1.0])
    proba = np.column_stack([1 - p_buy, np.zeros(4), p_buy])
    c = calibration(y, proba, bins=10)
    first, last = c["table"][0], c["table"][-1]
    assert first["n"] == 2 and first["mean_predicted"] == pytest.approx(0.05)
    assert first["observed_frequency"] == 0.5
    assert last["n"] == 2 and last["mean_predicted"] == pytest.approx(0.975)
    assert last["observed_frequency"] == 1.0
    assert all(row["n"] == 0 and row["mean_predicted"] is None for row in c["table"][1:-1])
    assert c["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.025)


def test_daily_balanced_accuracy_hand_case() -> None:
    dates = pd.to_datetime(["2024-01-02"] * 4 + ["2024-01-03"] * 3)
    y = np.array([0, 0, 2, 2, 1, 1, 1])
    pred = np.array([0, 1, 2, 2, 1, 1, 0])
    s = daily_balanced_accuracy(y, pred, dates)
    assert s.to_numpy() == pytest.approx([0.75, 2 / 3])
    assert daily_balanced_accuracy(y, np.eye(3)[pred], dates).equals(s)


def test_daily_class_counts_hand_case() -> None:
    dates = pd.to_datetime(["2024-01-02"] * 4 + ["2024-01-03"] * 3)
    y = np.array([0, 0, 2, 2, 1, 1, 1])
    pred = np.array([0, 1, 2, 2, 1, 1, 0])
    c = daily_class_counts(y, pred, dates)
    assert list(c.columns) == [
        "support_SELL",
        "support_HOLD",
        "support_BUY",
        "correct_SELL",
        "correct_HOLD",
        "correct_BUY",
    ]
    assert c.to_numpy().tolist() == [[2, 0, 2, 1, 0, 2], [0, 3, 0, 0, 2, 0]]
    assert daily_class_counts(y, np.eye(3)[pred], dates).equals(c)
    # pooled: SELL 1/2, HOLD 2/3, BUY 2/2 — not the mean of the daily 0.75 and 2/3
    assert pooled_balanced_accuracy(c) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_evaluate_class_counts_rebuild_pooled_balanced_accuracy() -> None:
    rng = np.random.default_rng(4)
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=30), 7)
    n = len(dates)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n)
    out = evaluate(y, proba, rng.normal(size=n), dates, include_daily=True)
    counts = out["daily"]["class_counts"]
    assert list(counts) == list(out["daily"]["balanced_accuracy"])  # the same 30 days
    assert counts["2024-01-01"] == {
        "support": np.bincount(y[:7], minlength=3).tolist(),
        "correct": np.bincount(y[:7][proba[:7].argmax(1) == y[:7]], minlength=3).tolist(),
    }
    _plain(counts)
    assert pooled_balanced_accuracy(counts) == pytest.approx(
        out["classification"]["balanced_accuracy"]
    )


def test_evaluate_is_plain_json() -> None:
    rng = np.random.default_rng(2)
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=20), 12)
    n = len(dates)
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet([1, 1, 1], n)
    out = evaluate(y, proba, rng.normal(size=n), dates, include_daily=True)
    _plain(out)
    assert len(out["daily"]["ic"]) == 20 and "2024-01-01" in out["daily"]["ic"]
    json.dumps(out, allow_nan=False)
    assert out["classification"]["n"] == n and out["rank_ic"]["n_days"] == 20


# --------------------------------------------------------------------------- baselines


def test_baselines_are_probability_rows() -> None:
    y_train = np.array([1, 1, 1, 0, 2, 2])
    maj = majority_baseline(y_train, 4)
    assert maj.shape == (4, 3) and np.allclose(maj.sum(axis=1), 1.0)
    assert (maj.argmax(axis=1) == 1).all()
    assert np.allclose(prior_baseline(y_train, 3), [[1 / 6, 1 / 2, 1 / 3]] * 3)

    past = np.array([-0.02, 0.0, 0.01, 0.03, np.nan])
    mom = momentum_baseline(past)
    assert np.allclose(mom.sum(axis=1), 1.0) and (mom >= 0).all()
    score = score_from_proba(mom)
    assert (np.diff(score[:4]) > 0).all()  # monotone in the past return
    assert score[4] == pytest.approx(0.0) == score[1]  # NaN: no view
    # scale = median |past| = 0.015 → s = tanh(2) for the +3 % row
    assert mom[3, 2] == pytest.approx((2 / 3) * (1 + math.tanh(2.0)) / 2)
    assert np.allclose(score_from_proba(momentum_baseline(past, reverse=True)), -score)
    assert mom.argmax(axis=1)[3] == 2 and mom.argmax(axis=1)[0] == 0


def test_momentum_baseline_ic_is_the_past_return_ic() -> None:
    rng = np.random.default_rng(4)
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=10), 20)
    past = rng.normal(size=len(dates))
    fwd = rng.normal(size=len(dates))
    ic_rule = rank_ic(score_from_proba(momentum_baseline(past)), fwd, dates)
    assert np.allclose(ic_rule, rank_ic(past, fwd, dates))


def test_baseline_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        majority_baseline(np.array([], dtype=int), 3)
    with pytest.raises(ValueError, match="scale"):
        momentum_baseline([0.1], scale=0.0)


# --------------------------------------------------------------------------- significance


def test_paired_test_detects_a_clear_difference() -> None:
    rng = np.random.default_rng(11)
    b = rng.normal(0.0, 0.05, 500)
    a = b + 0.02 + rng.normal(0.0, 0.05, 500)
    r = paired_daily_test(a, b, seed=1)
    assert r["n_days"] == 500 and r["mean_diff"] == pytest.approx(np.mean(a - b))
    assert r["p_value"] < 1e-6 and r["ci_low"] > 0 and r["ci_high"] > r["ci_low"]
    ref = stats.ttest_rel(a, b, alternative="greater")
    assert r["t_stat"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    assert paired_daily_test(a, b, seed=1) == r  # seeded: reproducible
    reverse = paired_daily_test(b, a, seed=1)
    assert reverse["p_value"] > 0.999 and reverse["ci_high"] < 0


def test_paired_test_does_not_reject_a_null() -> None:
    rejections = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        r = paired_daily_test(rng.normal(0, 0.05, 250), rng.normal(0, 0.05, 250), seed=seed)
        rejections += r["p_value"] < 0.05
        assert r["ci_low"] < r["mean_diff"] < r["ci_high"]
    assert rejections <= 4  # about 1 expected at the 5 % level


def test_block_bootstrap_widens_for_autocorrelated_days() -> None:
    rng = np.random.default_rng(8)
    e = rng.normal(size=600)
    x = np.empty(600)
    x[0] = e[0]
    for i in range(1, 600):  # AR(1), φ = 0.9: the day-to-day persistence of real IC series
        x[i] = 0.9 * x[i - 1] + e[i]
    iid = paired_daily_test(x, np.zeros(600), block_length=1, seed=0)
    blocks = paired_daily_test(x, np.zeros(600), block_length=30, seed=0)
    assert blocks["ci_high"] - blocks["ci_low"] > 2 * (iid["ci_high"] - iid["ci_low"])


def test_paired_test_aligns_series_and_checks_input() -> None:
    idx = pd.bdate_range("2024-01-01", periods=15)
    a = pd.Series(np.arange(10.0), index=idx[:10])
    b = pd.Series(np.zeros(10), index=idx[5:])
    r = paired_daily_test(a, b)
    assert r["n_days"] == 5 and r["mean_diff"] == pytest.approx(7.0)
    with pytest.raises(ValueError, match="not aligned"):
        paired_daily_test(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 paired days"):
        paired_daily_test([1.0, np.nan], [0.0, 0.0])
    same = paired_daily_test([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert same["mean_diff"] == 0.0 and same["p_value"] == 0.5


# hand case for the pooled test: two days, support and correct counts per class (SELL, HOLD,
# BUY). Pooled support [3, 3, 3]; a gets [2, 1, 2] right → 5/9, b [0, 3, 0] → 1/3.
SUP = [[2, 1, 0], [1, 2, 3]]
A_COR = [[1, 1, 0], [1, 0, 2]]
B_COR = [[0, 1, 0], [0, 2, 0]]


def _table(sup: list[list[int]], cor: list[list[int]]) -> dict[str, dict[str, list[int]]]:
    days = pd.bdate_range("2024-01-01", periods=len(sup)).date
    return {
        d.isoformat(): {"support": s, "correct": c} for d, s, c in zip(days, sup, cor, strict=True)
    }


def test_pooled_bootstrap_hand_case() -> None:
    a, b = _table(SUP, A_COR), _table(SUP, B_COR)
    # one block of both days (circular): every resample is the whole window
    whole = paired_pooled_bootstrap(a, b, block_length=2, n_boot=50)
    assert whole["test"] == "pooled_block_bootstrap" and whole["n_days"] == 2
    assert whole["a_value"] == pytest.approx(5 / 9) and whole["b_value"] == pytest.approx(1 / 3)
    assert whole["mean_diff"] == pytest.approx(2 / 9)  # not 0.75+5/9 − (0.5+1/3), halved
    assert whole["ci_low"] == pytest.approx(2 / 9) and whole["ci_high"] == pytest.approx(2 / 9)
    assert whole["p_value"] == 0.0 == whole["bootstrap_share_le_zero"]
    # single days: day 1 alone 0.75 − 0.5 (no BUY that day: left out for both), day 2 alone
    # 5/9 − 1/3, a mix of both 2/9; every resample is one of these
    days = paired_pooled_bootstrap(a, b, block_length=1, n_boot=400, seed=3)
    assert 2 / 9 - 1e-12 <= days["ci_low"] <= days["ci_high"] <= 0.25 + 1e-12
    assert days["ci_high"] == pytest.approx(0.25) and days["p_value"] == 0.0
    # the same numbers from an n_days × 2 × 3 array and from a daily_class_counts frame
    arr_a, arr_b = np.stack([SUP, A_COR], axis=1), np.stack([SUP, B_COR], axis=1)
    assert paired_pooled_bootstrap(arr_a, arr_b, block_length=1, n_boot=400, seed=3) == days
    frame = pd.DataFrame(
        np.hstack([SUP, A_COR]),
        index=pd.bdate_range("2024-01-01", periods=2),
        columns=daily_class_counts([0], [0], ["2024-01-01"]).columns,
    )
    assert paired_pooled_bootstrap(frame, arr_b, block_length=1, n_boot=400, seed=3) == days


def test_pooled_bootstrap_class_absent_from_the_window() -> None:
    sup = [[2, 1, 0], [1, 1, 0]]  # no BUY at all: balanced accuracy over SELL and HOLD
    r = paired_pooled_bootstrap(
        _table(sup, [[1, 1, 0], [1, 0, 0]]), _table(sup, [[0, 1, 0], [0, 1, 0]]), block_length=2
    )
    assert r["a_value"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert r["b_value"] == pytest.approx((0 + 1) / 2)
    assert r["mean_diff"] == pytest.approx(1 / 12)


def test_pooled_bootstrap_of_identical_models_is_zero_and_not_significant() -> None:
    rng = np.random.default_rng(6)
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=80), 9)
    y = rng.integers(0, 3, len(dates))
    counts = daily_class_counts(y, rng.integers(0, 3, len(dates)), dates)
    r = paired_pooled_bootstrap(counts, counts)
    assert r["mean_diff"] == 0.0 and r["ci_low"] == 0.0 == r["ci_high"]
    assert r["p_value"] == 1.0  # every resampled difference is ≤ 0: nothing to see


def test_pooled_bootstrap_matches_explicit_resampling_and_is_seeded() -> None:
    rng = np.random.default_rng(9)
    n_days, names = 23, 8  # 23 days: the last block of 5 is cut to 3
    dates = np.repeat(pd.bdate_range("2024-01-01", periods=n_days), names)
    y = rng.integers(0, 3, len(dates))
    ca = daily_class_counts(y, np.where(rng.random(len(y)) < 0.5, y, 1), dates).to_numpy()
    cb = daily_class_counts(y, rng.integers(0, 3, len(y)), dates).to_numpy()
    r = paired_pooled_bootstrap(ca.reshape(-1, 2, 3), cb.reshape(-1, 2, 3), n_boot=300, seed=7)
    assert r == paired_pooled_bootstrap(ca.reshape(-1, 2, 3), cb.reshape(-1, 2, 3), 5, 300, 7)

    starts = np.random.default_rng(7).integers(0, n_days, size=(300, 5))
    idx = (starts[:, :, None] + np.arange(5)).reshape(300, -1)[:, :n_days] % n_days

    def bacc(c: np.ndarray) -> np.ndarray:
        s = c[idx].sum(axis=1)
        return (s[:, 3:] / s[:, :3]).mean(axis=1)  # every class present in every resample

    boot = bacc(ca) - bacc(cb)
    assert [r["ci_low"], r["ci_high"]] == pytest.approx(np.quantile(boot, [0.025, 0.975]))
    assert r["p_value"] == pytest.approx((boot <= 0).mean())
    assert r["std_diff"] == pytest.approx(boot.std(ddof=1))


def test_pooled_bootstrap_checks_input() -> None:
    a = _table(SUP, A_COR)
    with pytest.raises(ValueError, match="different class supports"):
        paired_pooled_bootstrap(a, _table([[2, 1, 0], [1, 2, 4]], B_COR))
    with pytest.raises(ValueError, match="different days"):
        paired_pooled_bootstrap(a, dict(list(_table(SUP * 2, B_COR * 2).items())[1:3]))
    with pytest.raises(ValueError, match="correct ≤ support"):
        paired_pooled_bootstrap(a, _table(SUP, [[3, 1, 0], [0, 2, 0]]))
    with pytest.raises(ValueError, match="n_days × 2"):
        paired_pooled_bootstrap(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least 2 days"):
        paired_pooled_bootstrap(dict(list(a.items())[:1]), dict(list(a.items())[:1]))
    with pytest.raises(ValueError, match="without rows"):
        paired_pooled_bootstrap(_table([[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [1, 1, 1]]), a)
    with pytest.raises(ValueError, match="block_length"):
        paired_pooled_bootstrap(a, a, block_length=0)


# --------------------------------------------------------------------------- reporting


def test_comparison_table_and_markdown() -> None:
    results = {
        "model": {
            "classification": {"balanced_accuracy": 0.41, "log_loss": 1.02},
            "rank_ic": {"mean_ic": 0.012, "icir": None},
        },
        "prior": {"classification": {"balanced_accuracy": 1 / 3, "log_loss": 1.05}},
    }
    table = comparison_table(results)
    assert list(table.index) == ["model", "prior"]
    assert table.loc["model", "mean_ic"] == pytest.approx(0.012)
    assert np.isnan(table.loc["prior", "mean_ic"]) and np.isnan(table.loc["model", "icir"])
    md = to_markdown(table[["balanced_accuracy", "mean_ic"]], floatfmt=".3f")
    assert md == (
        "| model | balanced_accuracy | mean_ic |\n"
        "|---|---|---|\n"
        "| model | 0.410 | 0.012 |\n"
        "| prior | 0.333 |  |\n"
    )
    records = json.loads(to_json(table))
    assert records[1]["model"] == "prior" and records[1]["mean_ic"] is None


def test_to_jsonable_converts_numpy_and_dates() -> None:
    obj = {
        "a": np.float32(0.5),
        "b": np.int64(3),
        "c": np.array([1.0, np.nan]),
        "d": pd.Series([0.1], index=pd.to_datetime(["2024-01-02"])),
        "e": np.bool_(True),
    }
    out = to_jsonable(obj)
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None], "d": {"2024-01-02T00:00:00": 0.1}, "e": True}
    _plain(out)
