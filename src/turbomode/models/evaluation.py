"""Honest model metrics, always computed beside naive baselines on the same rows.

Accuracy on imbalanced 3-class labels mostly measures the class mix (always-HOLD is "99 %
accurate" on ±10 % one-day moves), so the headline numbers here are balanced accuracy,
per-class precision/recall, ROC-AUC, log loss, Brier score, the daily cross-sectional rank IC
of ``score = P(BUY) − P(SELL)``, top/bottom-decile hit rates and BUY calibration. Baselines
(majority class, training priors, a momentum rule) produce probabilities in the same n×3
layout, so every number is computed the same way for model and baseline, and
:func:`paired_daily_test` says whether a difference in daily metrics is more than noise.

Balanced accuracy is compared pooled, not as a mean of daily values
(:func:`paired_pooled_bootstrap` on the per-day class counts of :func:`daily_class_counts`):
a day's balanced accuracy averages recall over the classes present *that day*, so with a few
names per day a constant predictor scores 1/2 or 1 on days missing a class and its daily mean
sits well above its pooled 1/3. Daily rank IC has no such bias and is tested day by day.

Conventions: ``y_true`` holds 0 SELL / 1 HOLD / 2 BUY; ``proba`` columns are SELL, HOLD, BUY.
Every result is plain Python (float, int, str, None for undefined), so it serializes as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CLASS_NAMES",
    "calibration",
    "classification_metrics",
    "comparison_table",
    "daily_balanced_accuracy",
    "daily_class_counts",
    "evaluate",
    "ic_summary",
    "majority_baseline",
    "momentum_baseline",
    "paired_daily_test",
    "paired_pooled_bootstrap",
    "pooled_balanced_accuracy",
    "predict_labels",
    "prior_baseline",
    "rank_ic",
    "score_from_proba",
    "to_json",
    "to_jsonable",
    "to_markdown",
    "top_decile_precision",
]

SELL, HOLD, BUY = 0, 1, 2
CLASS_NAMES: tuple[str, str, str] = ("SELL", "HOLD", "BUY")
N_CLASSES = 3
_EPS = 1e-15  # log-loss clip, as scikit-learn does, so one confident miss is finite
_SUM_TOL = 1e-4  # float32 model outputs may miss 1 by a few ulps


# --------------------------------------------------------------------------- helpers


def _num(x: Any) -> float | None:
    """A finite float, or None: NaN is not valid JSON and 'undefined' should read as such."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _labels(y_true: ArrayLike) -> NDArray[np.int64]:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D, got shape {y.shape}")
    yf = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isin(yf, (SELL, HOLD, BUY))
    if bad.any():
        shown = pd.unique(pd.Series(y[bad]).astype(str))[:5].tolist()
        raise ValueError(
            f"y_true must hold 0 (SELL), 1 (HOLD) or 2 (BUY); {int(bad.sum())} value(s) are "
            f"not, e.g. {shown} (drop unlabeled rows first)"
        )
    return yf.astype(np.int64)


def _proba(proba: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_CLASSES:
        raise ValueError(f"proba must be n×3 (SELL, HOLD, BUY), got shape {p.shape}")
    if n is not None and p.shape[0] != n:
        raise ValueError(f"proba has {p.shape[0]} rows but y_true has {n}")
    if not np.isfinite(p).all():
        raise ValueError("proba contains NaN or infinite values")
    if (p < -_SUM_TOL).any() or (p > 1 + _SUM_TOL).any():
        raise ValueError("proba values must lie in [0, 1]")
    worst = float(np.abs(p.sum(axis=1) - 1.0).max()) if len(p) else 0.0
    if worst > _SUM_TOL:
        raise ValueError(f"proba rows must sum to 1 (largest deviation {worst:.3g})")
    return p


def _dates(dates: ArrayLike, n: int) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates).ravel()))
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    if len(idx) != n:
        raise ValueError(f"dates has {len(idx)} rows, expected {n}")
    n_nat = int(np.count_nonzero(idx.isna()))
    if n_nat:
        raise ValueError(f"dates contains {n_nat} NaT value(s)")
    return idx


def _floats(x: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64).ravel()
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} rows, expected {n}")
    return a


def score_from_proba(proba: ArrayLike) -> NDArray[np.float64]:
    """Ranking score P(BUY) − P(SELL): one number per row for IC and decile metrics."""
    p = _proba(proba)
    return p[:, BUY] - p[:, SELL]


def predict_labels(proba: ArrayLike) -> NDArray[np.int64]:
    """Argmax class (ties go to the lower class index, as numpy's argmax does)."""
    return np.argmax(_proba(proba), axis=1).astype(np.int64)


# --------------------------------------------------------------------------- classification


def _auc(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """Mann-Whitney ROC-AUC with average ranks for ties (a constant score gives 0.5)."""
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def decide(proba: NDArray[np.float64], decision_weights: ArrayLike | None) -> NDArray[np.int64]:
    """The predicted class: argmax of the probabilities, each times its decision weight.

    Calibrated probabilities (the rank model's) carry the class mix, so plain argmax says HOLD
    almost always; weighting by 1 / prior is the rule that maximizes balanced accuracy, which
    the balanced-weighted ensemble gets from its training weights instead."""
    if decision_weights is None:
        return np.argmax(proba, axis=1)
    return np.argmax(proba * np.asarray(decision_weights, dtype=float)[None, :], axis=1)


def classification_metrics(
    y_true: ArrayLike, proba: ArrayLike, decision_weights: ArrayLike | None = None
) -> dict[str, Any]:
    """Per-class precision/recall (argmax, see :func:`decide`), balanced accuracy, macro OvR
    ROC-AUC, log loss, multi-class Brier score, accuracy (reported, never to be read alone)
    and support.

    Precision of a class never predicted is None (undefined, not 0). A class absent from
    ``y_true`` (or making up every row) has no ROC-AUC; it is left out of the macro average and
    named under ``auc_skipped``.
    """
    y = _labels(y_true)
    p = _proba(proba, len(y))
    n = len(y)
    if n == 0:
        raise ValueError("no rows to evaluate")
    pred = decide(p, decision_weights)
    onehot = np.eye(N_CLASSES)[y]
    support = np.bincount(y, minlength=N_CLASSES)
    predicted = np.bincount(pred, minlength=N_CLASSES)
    hits = np.bincount(y[pred == y], minlength=N_CLASSES)

    per_class: dict[str, dict[str, Any]] = {}
    aucs: dict[str, float | None] = {}
    skipped: list[str] = []
    for k, name in enumerate(CLASS_NAMES):
        per_class[name] = {
            "precision": _num(hits[k] / predicted[k]) if predicted[k] else None,
            "recall": _num(hits[k] / support[k]) if support[k] else None,
            "support": int(support[k]),
            "predicted": int(predicted[k]),
        }
        if 0 < support[k] < n:
            aucs[name] = _auc(p[:, k], y == k)
        else:
            aucs[name] = None
            skipped.append(name)
    recalls = [hits[k] / support[k] for k in range(N_CLASSES) if support[k]]
    defined = [a for a in aucs.values() if a is not None]
    return {
        "n": n,
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "per_class": per_class,
        "roc_auc": aucs,
        "roc_auc_macro": float(np.mean(defined)) if defined else None,
        "auc_skipped": skipped,
        "auc_note": (
            f"ROC-AUC undefined for {', '.join(skipped)}: class absent from (or the whole of) "
            "y_true; left out of the macro average"
            if skipped
            else ""
        ),
        "log_loss": float(-np.log(np.clip(p[np.arange(n), y], _EPS, 1.0)).mean()),
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
    }


# --------------------------------------------------------------------------- rank IC


def rank_ic(
    score: ArrayLike, fwd_return: ArrayLike, dates: ArrayLike, min_names: int = 5
) -> pd.Series:
    """Daily cross-sectional Spearman correlation between score and forward return.

    Rows with a NaN score or return are dropped; dates with fewer than ``min_names`` rows are
    skipped (a correlation of 3 names is noise). A date where score or return is constant
    gets IC 0: a ranking that cannot tell names apart carries no information. Computed as the
    Pearson correlation of within-date average ranks, grouped, without a loop over dates.
    """
    s = np.asarray(score, dtype=np.float64).ravel()
    n = len(s)
    r = _floats(fwd_return, n, "fwd_return")
    d = _dates(dates, n)
    df = pd.DataFrame({"date": d, "s": s, "r": r}).dropna()
    size = df.groupby("date")["s"].transform("size")
    df = df[size >= min_names]
    if df.empty:
        return pd.Series([], index=pd.DatetimeIndex([], name="date"), dtype=float, name="ic")
    g = df.groupby("date")
    rs = g["s"].rank(method="average")
    rr = g["r"].rank(method="average")
    cs = rs - rs.groupby(df["date"]).transform("mean")
    cr = rr - rr.groupby(df["date"]).transform("mean")
    cov = (cs * cr).groupby(df["date"]).sum()
    var = (cs * cs).groupby(df["date"]).sum() * (cr * cr).groupby(df["date"]).sum()
    ic: pd.Series = (cov / np.sqrt(var)).where(var > 0, 0.0)
    ic.index.name = "date"
    return ic.rename("ic").astype(float)


def ic_summary(daily_ic: pd.Series) -> dict[str, Any]:
    """Mean IC, std, ICIR (mean/std, daily), t-stat (mean/(std/√n)), share of positive days."""
    x = np.asarray(daily_ic, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    icir = mean / std if n > 1 and std > 0 else math.nan
    return {
        "n_days": n,
        "mean_ic": _num(mean),
        "std_ic": _num(std),
        "icir": _num(icir),
        "t_stat": _num(icir * math.sqrt(n)) if n > 1 else None,
        "share_positive": _num((x > 0).mean()) if n else None,
    }


# --------------------------------------------------------------------------- deciles


def top_decile_precision(
    score: ArrayLike,
    y_true: ArrayLike,
    fwd_return: ArrayLike,
    dates: ArrayLike,
    quantile: float = 0.1,
    min_names: int = 5,
) -> dict[str, Any]:
    """Share of BUY labels among each date's top ``quantile`` by score (and their mean forward
    return); share of SELL among the bottom; beside the base rates of the same dates.

    Each date contributes its k = max(1, ⌊quantile·n⌋) highest and lowest scores (ties broken by
    row order, so results are deterministic); shares are pooled over all selected rows. Dates
    with fewer than ``min_names`` scored rows, or one score for every name (no ranking, e.g. a
    constant baseline), are skipped. Returns are averaged ignoring NaN.
    """
    if not 0 < quantile <= 0.5:
        raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
    y = _labels(y_true)
    n = len(y)
    s = _floats(score, n, "score")
    r = _floats(fwd_return, n, "fwd_return")
    d = _dates(dates, n)
    df = pd.DataFrame({"date": d, "s": s, "y": y, "r": r})
    df = df[np.isfinite(df["s"].to_numpy())]
    by_date = df.groupby("date")["s"]
    ranked = (by_date.transform("size") >= min_names) & (by_date.transform("nunique") > 1)
    df = df[ranked]
    if df.empty:
        return {"quantile": quantile, "n_dates": 0, "top": None, "bottom": None}
    g = df.groupby("date")["s"]
    k = np.maximum(1, np.floor(quantile * g.transform("size").to_numpy())).astype(int)
    top = g.rank(method="first", ascending=False).to_numpy() <= k
    bottom = g.rank(method="first", ascending=True).to_numpy() <= k
    yv, rv = df["y"].to_numpy(), df["r"].to_numpy()

    def _mean(x: NDArray[np.float64]) -> float | None:
        x = x[np.isfinite(x)]
        return _num(x.mean()) if len(x) else None

    top_ret, bottom_ret = _mean(rv[top]), _mean(rv[bottom])
    return {
        "quantile": quantile,
        "n_dates": int(df["date"].nunique()),
        "top": {
            "n": int(top.sum()),
            "precision_buy": float((yv[top] == BUY).mean()),
            "mean_return": top_ret,
        },
        "bottom": {
            "n": int(bottom.sum()),
            "precision_sell": float((yv[bottom] == SELL).mean()),
            "mean_return": bottom_ret,
        },
        "base_rate_buy": float((yv == BUY).mean()),
        "base_rate_sell": float((yv == SELL).mean()),
        "mean_return_all": _mean(rv),
        "long_short_spread": (
            top_ret - bottom_ret if top_ret is not None and bottom_ret is not None else None
        ),
    }


# --------------------------------------------------------------------------- calibration


def calibration(
    y_true: ArrayLike, proba: ArrayLike, bins: int = 10, cls: int = BUY
) -> dict[str, Any]:
    """Reliability table for one class (BUY by default) on equal-width probability bins, and
    the expected calibration error ECE = Σ_b (n_b/N)·|mean predicted − observed frequency|.

    A model can rank well and still be badly calibrated; signal thresholds (e.g. enter at
    P ≥ 0.60) only mean what they say if this table is near the diagonal.
    """
    if bins < 1:
        raise ValueError(f"bins must be ≥ 1, got {bins}")
    y = _labels(y_true)
    p = _proba(proba, len(y))[:, cls]
    n = len(y)
    if n == 0:
        raise ValueError("no rows to evaluate")
    b = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    count = np.bincount(b, minlength=bins)
    sum_pred = np.bincount(b, weights=p, minlength=bins)
    sum_pos = np.bincount(b, weights=(y == cls).astype(float), minlength=bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    table = [
        {
            "bin_low": float(edges[i]),
            "bin_high": float(edges[i + 1]),
            "n": int(count[i]),
            "mean_predicted": _num(sum_pred[i] / count[i]) if count[i] else None,
            "observed_frequency": _num(sum_pos[i] / count[i]) if count[i] else None,
        }
        for i in range(bins)
    ]
    return {
        "class": CLASS_NAMES[cls],
        "bins": bins,
        "ece": float(np.abs(sum_pred - sum_pos).sum() / n),
        "table": table,
    }


# --------------------------------------------------------------------------- all together


def evaluate(
    y_true: ArrayLike,
    proba: ArrayLike,
    fwd_return: ArrayLike,
    dates: ArrayLike,
    *,
    min_names: int = 5,
    quantile: float = 0.1,
    bins: int = 10,
    include_daily: bool = False,
    decision_weights: ArrayLike | None = None,
) -> dict[str, Any]:
    """Every metric above on one set of rows (JSON-serializable); ``decision_weights`` as in
    :func:`decide`.

    ``include_daily`` adds the daily IC and daily balanced accuracy ({ISO date: value}) that
    :func:`paired_daily_test` needs when comparing against a baseline later, and the per-day
    class counts ({ISO date: {"support": [SELL, HOLD, BUY], "correct": [...]}}) from which
    :func:`paired_pooled_bootstrap` rebuilds pooled balanced accuracy on any set of days.
    """
    y = _labels(y_true)
    p = _proba(proba, len(y))
    score = p[:, BUY] - p[:, SELL]
    daily = rank_ic(score, fwd_return, dates, min_names=min_names)
    out: dict[str, Any] = {
        "classification": classification_metrics(y, p, decision_weights),
        "rank_ic": ic_summary(daily),
        "top_decile": top_decile_precision(
            score, y, fwd_return, dates, quantile=quantile, min_names=min_names
        ),
        "calibration": calibration(y, p, bins=bins),
    }
    if include_daily:
        pred = decide(p, decision_weights)
        bacc = daily_balanced_accuracy(y, pred, dates)
        counts = daily_class_counts(y, pred, dates)
        support = counts[[f"support_{c}" for c in CLASS_NAMES]].to_numpy().tolist()
        correct = counts[[f"correct_{c}" for c in CLASS_NAMES]].to_numpy().tolist()
        out["daily"] = {
            "ic": dict(zip(_iso(daily.index), map(_num, daily), strict=True)),
            "balanced_accuracy": dict(zip(_iso(bacc.index), map(_num, bacc), strict=True)),
            "class_counts": {
                d: {"support": [int(v) for v in sup], "correct": [int(v) for v in cor]}
                for d, sup, cor in zip(_iso(counts.index), support, correct, strict=True)
            },
        }
    return out


def _iso(index: pd.Index) -> list[str]:
    return [d.isoformat() for d in pd.DatetimeIndex(index).date]


def daily_balanced_accuracy(y_true: ArrayLike, pred: ArrayLike, dates: ArrayLike) -> pd.Series:
    """Balanced accuracy per date (mean recall over the classes present that day).

    ``pred`` is either class labels or an n×3 probability array (argmax is taken). A daily
    series lets the promotion gate test a difference with :func:`paired_daily_test`.
    """
    y = _labels(y_true)
    pr = np.asarray(pred)
    pr = predict_labels(pr) if pr.ndim == 2 else _labels(pr)
    if len(pr) != len(y):
        raise ValueError(f"pred has {len(pr)} rows, y_true has {len(y)}")
    d = _dates(dates, len(y))
    df = pd.DataFrame({"date": d, "y": y, "hit": (pr == y).astype(float)})
    recall = df.groupby(["date", "y"])["hit"].mean()
    out = recall.groupby(level="date").mean()
    out.index.name = "date"
    return out.rename("balanced_accuracy").astype(float)


def daily_class_counts(y_true: ArrayLike, pred: ArrayLike, dates: ArrayLike) -> pd.DataFrame:
    """Per date and class: rows of that class (``support_<C>``) and how many of them were
    predicted as it (``correct_<C>``).

    Sums of these over any set of days give that set's pooled recalls, hence its pooled
    balanced accuracy, which is what a bootstrap over days must resample (averaging daily
    balanced accuracies is biased, see the module docstring). ``pred`` as in
    :func:`daily_balanced_accuracy`.
    """
    y = _labels(y_true)
    pr = np.asarray(pred)
    pr = predict_labels(pr) if pr.ndim == 2 else _labels(pr)
    if len(pr) != len(y):
        raise ValueError(f"pred has {len(pr)} rows, y_true has {len(y)}")
    d = _dates(dates, len(y))
    onehot = np.eye(N_CLASSES, dtype=np.int64)[y]
    cols = [f"support_{c}" for c in CLASS_NAMES] + [f"correct_{c}" for c in CLASS_NAMES]
    data = np.hstack([onehot, onehot * (pr == y)[:, None]])
    out = pd.DataFrame(data, index=d, columns=cols).groupby(level=0).sum()
    out.index.name = "date"
    return out.astype(np.int64)


# --------------------------------------------------------------------------- baselines


def majority_baseline(y_train: ArrayLike, n: int, eps: float = 1e-3) -> NDArray[np.float64]:
    """Always the training majority class: 1 − 2·eps on it, eps on the others.

    ``eps`` keeps log loss finite (a pure one-hot baseline would score ~34.5 per miss, which
    says more about the clip than the baseline). Ties go to the lower class index.
    """
    if not 0 <= eps < 1 / 3:
        raise ValueError(f"eps must be in [0, 1/3), got {eps}")
    y = _labels(y_train)
    if len(y) == 0:
        raise ValueError("y_train is empty: no majority class to predict")
    row = np.full(N_CLASSES, eps)
    row[int(np.argmax(np.bincount(y, minlength=N_CLASSES)))] = 1.0 - 2 * eps
    return np.tile(row, (n, 1))


def prior_baseline(y_train: ArrayLike, n: int) -> NDArray[np.float64]:
    """The training class frequencies as the probabilities of every row: the best a model can
    do without looking at features (its log loss is the entropy of the class mix)."""
    y = _labels(y_train)
    if len(y) == 0:
        raise ValueError("y_train is empty: no class frequencies")
    freq = np.bincount(y, minlength=N_CLASSES) / len(y)
    return np.tile(freq.astype(np.float64), (n, 1))


def momentum_baseline(
    past_return: ArrayLike,
    scale: float | None = None,
    p_hold: float = 1 / 3,
    reverse: bool = False,
) -> NDArray[np.float64]:
    """A rule that needs no training: P(BUY) rises with the stock's own past return.

    s = tanh(past_return / scale) ∈ (−1, 1), with ``scale`` the median absolute past return of
    the rows (robust, so one outlier does not flatten the rest) unless given. Then
    P(HOLD) = p_hold, P(BUY) = (1 − p_hold)(1 + s)/2 and P(SELL) = (1 − p_hold)(1 − s)/2, so the
    score P(BUY) − P(SELL) = (1 − p_hold)·s is monotone in the past return and its rank IC is
    exactly that of the past return. ``reverse=True`` flips the sign (short-term reversal).
    A NaN past return gives s = 0 (no view).
    """
    if not 0 <= p_hold < 1:
        raise ValueError(f"p_hold must be in [0, 1), got {p_hold}")
    x = np.asarray(past_return, dtype=np.float64).ravel()
    if scale is None:
        finite = np.abs(x[np.isfinite(x)])
        scale = float(np.median(finite)) if len(finite) else 1.0
        scale = scale if scale > 0 else 1.0
    elif not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    s = np.tanh(np.where(np.isnan(x), 0.0, x) / scale)
    if reverse:
        s = -s
    side = 1.0 - p_hold
    return np.column_stack([side * (1 - s) / 2, np.full_like(s, p_hold), side * (1 + s) / 2])


# --------------------------------------------------------------------------- significance


def paired_daily_test(
    a_daily: ArrayLike | pd.Series,
    b_daily: ArrayLike | pd.Series,
    block_length: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Is daily metric a (candidate) greater than b (baseline)? One-sided paired test.

    Two pandas Series are aligned on their index (inner join); arrays must be aligned
    already. Pairs with a NaN on either side are dropped. Returns the mean difference, its
    t-statistic and one-sided p-value (H1: mean(a − b) > 0; Student t via scipy when
    importable, else the normal approximation), and a circular block-bootstrap
    (1 − alpha) confidence interval of the mean difference. The t-test assumes independent
    days; daily metrics are autocorrelated, so the block bootstrap (blocks of
    ``block_length`` consecutive days, seeded) is the interval to trust.
    """
    if block_length < 1:
        raise ValueError(f"block_length must be ≥ 1, got {block_length}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if isinstance(a_daily, pd.Series) and isinstance(b_daily, pd.Series):
        a_s, b_s = a_daily.align(b_daily, join="inner")
        a, b = a_s.to_numpy(dtype=np.float64), b_s.to_numpy(dtype=np.float64)
    else:
        a = np.asarray(a_daily, dtype=np.float64).ravel()
        b = np.asarray(b_daily, dtype=np.float64).ravel()
        if len(a) != len(b):
            raise ValueError(f"series are not aligned: {len(a)} vs {len(b)} days")
    diff = a - b
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    if n < 2:
        raise ValueError(f"need at least 2 paired days with values on both sides, got {n}")
    mean = float(diff.mean())
    std = float(diff.std(ddof=1))
    if std > 0:
        t = mean / (std / math.sqrt(n))
        p_value = _one_sided_p(t, n - 1)
    else:  # identical differences every day: certain in sign, or exactly no difference
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
        p_value = 0.0 if mean > 0 else (1.0 if mean < 0 else 0.5)

    rng = np.random.default_rng(seed)
    length = min(block_length, n)
    n_blocks = -(-n // length)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(length)).reshape(n_boot, -1)[:, :n] % n
    boot = diff[idx].mean(axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {
        "n_days": n,
        "mean_diff": mean,
        "std_diff": std,
        "t_stat": float(t),
        "p_value": float(p_value),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "alpha": alpha,
        "block_length": length,
        "n_boot": n_boot,
        "seed": seed,
        "bootstrap_share_le_zero": float((boot <= 0).mean()),
    }


CountTable = Mapping[str, Mapping[str, Any]] | pd.DataFrame | ArrayLike


def _count_arrays(
    counts: CountTable, who: str
) -> tuple[list[str] | None, NDArray[np.int64], NDArray[np.int64]]:
    """(dates or None, support, correct), each n_days × 3, from any accepted count table."""
    dates: list[str] | None = None
    if isinstance(counts, pd.DataFrame):
        dates = _iso(counts.index)
        support = counts[[f"support_{c}" for c in CLASS_NAMES]].to_numpy()
        correct = counts[[f"correct_{c}" for c in CLASS_NAMES]].to_numpy()
    elif isinstance(counts, Mapping):
        dates = sorted(str(k) for k in counts)
        try:
            support = np.array([counts[d]["support"] for d in dates], dtype=np.float64)
            correct = np.array([counts[d]["correct"] for d in dates], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{who} counts must map date → {{'support': [...], 'correct': [...]}} ({exc})"
            ) from None
    else:
        arr = np.asarray(counts, dtype=np.float64)
        if arr.ndim != 3 or arr.shape[1:] != (2, N_CLASSES):
            raise ValueError(
                f"{who} counts must be n_days × 2 (support, correct) × 3, got {arr.shape}"
            )
        support, correct = arr[:, 0], arr[:, 1]
    support = np.asarray(support, dtype=np.float64).reshape(-1, N_CLASSES)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1, N_CLASSES)
    if not (np.isfinite(support).all() and np.isfinite(correct).all()):
        raise ValueError(f"{who} counts contain NaN or infinite values")
    if (support != np.round(support)).any() or (correct != np.round(correct)).any():
        raise ValueError(f"{who} counts must be whole numbers")
    if (correct < 0).any() or (correct > support).any():
        raise ValueError(f"{who} counts need 0 ≤ correct ≤ support for every class and day")
    if len(support) and (support.sum(axis=1) == 0).any():
        raise ValueError(f"{who} counts have a day without rows")
    return dates, support.astype(np.int64), correct.astype(np.int64)


def _pooled_bacc(support: NDArray[Any], correct: NDArray[Any]) -> NDArray[np.float64]:
    """Mean recall over the classes with support (last axis = class); rows are samples."""
    present = support > 0
    recall = np.divide(correct, support, out=np.zeros(support.shape), where=present)
    out: NDArray[np.float64] = recall.sum(axis=-1) / present.sum(axis=-1)
    return out


def pooled_balanced_accuracy(counts: CountTable) -> float:
    """Balanced accuracy of all rows behind a per-day count table (equals
    :func:`classification_metrics`' figure on the same rows)."""
    _, support, correct = _count_arrays(counts, "the")
    if not len(support):
        raise ValueError("no days to pool")
    return float(_pooled_bacc(support.sum(axis=0), correct.sum(axis=0)))


def paired_pooled_bootstrap(
    a_counts: CountTable,
    b_counts: CountTable,
    block_length: int = 5,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Is a's (candidate) *pooled* balanced accuracy greater than b's (baseline)?

    Both count tables (``evaluate(...)["daily"]["class_counts"]``, a
    :func:`daily_class_counts` frame, or an n_days × 2 × 3 array of support and correct) must
    cover the same days and rows: equal dates and supports, else ValueError. The observed
    difference is pooled BA(a) − pooled BA(b), with BA the mean over classes of
    Σ correct / Σ support; a class without support (in the window or in a resample) is left
    out for both, since the supports are shared. A circular block bootstrap over days (blocks
    of ``block_length``, the same resampled days for both models: paired, seeded, drawn as
    :func:`paired_daily_test` draws them) gives the (1 − alpha) percentile CI and
    ``p_value`` = share of resampled differences ≤ 0 (one-sided, H1: a > b). ``mean_diff``
    holds the observed pooled difference so results read like :func:`paired_daily_test`'s.
    """
    if block_length < 1:
        raise ValueError(f"block_length must be ≥ 1, got {block_length}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be ≥ 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    a_dates, a_sup, a_cor = _count_arrays(a_counts, "a")
    b_dates, b_sup, b_cor = _count_arrays(b_counts, "b")
    if a_dates is not None and b_dates is not None and a_dates != b_dates:
        raise ValueError(
            f"count tables cover different days ({len(a_dates)} vs {len(b_dates)}): "
            "compare models on the same rows"
        )
    if a_sup.shape != b_sup.shape or (a_sup != b_sup).any():
        raise ValueError("count tables have different class supports: not the same rows")
    n = len(a_sup)
    if n < 2:
        raise ValueError(f"need at least 2 days, got {n}")

    a_value = float(_pooled_bacc(a_sup.sum(axis=0), a_cor.sum(axis=0)))
    b_value = float(_pooled_bacc(b_sup.sum(axis=0), b_cor.sum(axis=0)))
    diff = a_value - b_value

    rng = np.random.default_rng(seed)
    length = min(block_length, n)
    n_blocks = -(-n // length)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    # per-day (support, correct a, correct b); block sums for every start via a circular
    # cumulative sum: a resample is n_blocks − 1 full blocks plus one cut to fill n days
    table = np.concatenate([a_sup, a_cor, b_cor], axis=1)
    cum = np.vstack([np.zeros((1, table.shape[1]), np.int64), np.cumsum(np.tile(table, (2, 1)), 0)])
    first = np.arange(n)
    last_len = n - (n_blocks - 1) * length
    full = cum[first + length] - cum[first]
    cut = cum[first + last_len] - cum[first]
    boot_sum = full[starts[:, :-1]].sum(axis=1) + cut[starts[:, -1]]
    sup = boot_sum[:, :N_CLASSES]
    boot = _pooled_bacc(sup, boot_sum[:, N_CLASSES : 2 * N_CLASSES]) - _pooled_bacc(
        sup, boot_sum[:, 2 * N_CLASSES :]
    )
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    share = float((boot <= 0).mean())
    return {
        "test": "pooled_block_bootstrap",
        "n_days": n,
        "a_value": a_value,
        "b_value": b_value,
        "mean_diff": diff,
        "std_diff": float(boot.std(ddof=1)) if n_boot > 1 else 0.0,
        "p_value": share,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "alpha": alpha,
        "block_length": length,
        "n_boot": n_boot,
        "seed": seed,
        "bootstrap_share_le_zero": share,
    }


def _one_sided_p(t: float, dof: int) -> float:
    """P(T ≥ t) under the null; scipy's Student t when importable, else normal."""
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is installed in the dev venv
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    return float(stats.t.sf(t, dof))


# --------------------------------------------------------------------------- reporting

# column name → path into an :func:`evaluate` result
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "balanced_accuracy": ("classification", "balanced_accuracy"),
    "roc_auc_macro": ("classification", "roc_auc_macro"),
    "log_loss": ("classification", "log_loss"),
    "brier": ("classification", "brier"),
    "accuracy": ("classification", "accuracy"),
    "mean_ic": ("rank_ic", "mean_ic"),
    "icir": ("rank_ic", "icir"),
    "ic_t_stat": ("rank_ic", "t_stat"),
    "top_buy_precision": ("top_decile", "top", "precision_buy"),
    "bottom_sell_precision": ("top_decile", "bottom", "precision_sell"),
    "long_short_spread": ("top_decile", "long_short_spread"),
    "ece_buy": ("calibration", "ece"),
}


def _get(d: Any, path: tuple[str, ...]) -> float:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return math.nan
        d = d[key]
    return math.nan if d is None else float(d)


def comparison_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model/baseline (the keys), the headline metrics as columns; a metric a
    result lacks (or that is undefined) is NaN."""
    rows = {
        name: {c: _get(res, path) for c, path in TABLE_COLUMNS.items()}
        for name, res in results.items()
    }
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(TABLE_COLUMNS))
    df.index.name = "model"
    return df


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub markdown table (pandas' own needs ``tabulate``); NaN prints as blank."""

    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [str(df.index.name or ""), *(str(c) for c in df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += [
        "| " + " | ".join([cell(idx), *(cell(v) for v in row)]) + " |"
        for idx, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    return "\n".join(lines) + "\n"


def to_jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy scalars/arrays, pandas objects, dates; NaN/inf → None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return [to_jsonable(r) for r in obj.reset_index().to_dict(orient="records")]
    if isinstance(obj, pd.Series):
        return {
            (k.isoformat() if isinstance(k, pd.Timestamp) else str(k)): to_jsonable(v)
            for k, v in obj.items()
        }
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _num(obj)
    if isinstance(obj, pd.Timestamp | np.datetime64):
        return pd.Timestamp(obj).isoformat()
    return obj


def to_json(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN tokens) of any metrics result or table."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
