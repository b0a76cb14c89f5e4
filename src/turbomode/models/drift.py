"""Drift: is tonight's market still like the one a model learned from?

The population stability index (PSI) of each feature and of the model's score, between a
reference saved in the model's manifest at training time and a window of live rows (tonight's
cross-section of the model's sector, and its last 20 trading days).

The reference is the decile cut points of the training window's finite values and the share
of those values in each bin; a live window is binned by the same cut points. Ties (flags,
calendar features) collapse repeated cut points, so a binary feature has two bins, not ten.

PSI = Σ (a − e)·ln(a / e) over bins, each share floored at ``EPS`` so an empty bin is finite.
By the usual reading, < 0.1 is stable, 0.1–0.25 a moderate shift and > 0.25 a major one.
A window in which a feature takes one value only (a market-wide feature such as breadth or
a macro series, or a sector-wide one, on a single night) has no PSI: it is a point.

A fixed threshold misleads on market data, measured (README "Drift"): a 20-day window is a
narrow slice of a slowly moving market, so against a seven-year training window most features
pass 0.25 in the calmest month — calendar and market-wide features always, stock features
such as the 250-day return whenever the market trends. And a small window is noisy: with
``n`` rows and ``k`` bins sampling alone gives about ``(k − 1) / n``, ≈ 0.1–0.4 for one
sector's cross-section of one night. So each reference is also *calibrated* on the training
period itself: the 99th percentile of the PSI of its own nights and 20-day blocks
(``usual``). A feature is *unusual* when tonight's window passes that: more unlike the
training window than 99 % of the training period's own windows of the same size. The counts
over 0.1 and 0.25 are reported beside it; the alert reads the unusual count of the 20 days.
Values beyond the training range fall in bins of their own, with an expected share of 0.

The score reference is the model's own scores, P(BUY) − P(SELL), on its out-of-time window:
the rows it did not train on, whose score distribution is what it should produce live (in
sample the scores are more extreme than live ones by construction).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

BINS = 10
EPS = 1e-4
MODERATE = 0.1
MAJOR = 0.25
WINDOWS = ("tonight", "20d")
RECENT_DAYS = 20


@dataclass(frozen=True)
class Reference:
    """One variable's training-time distribution.

    ``edges``: interior cut points; ``expected``: the share of the training values in each of
    the bins they make; ``lo``/``hi``: the training range — a live value outside it falls in
    a bin of its own with an expected share of 0, so "beyond anything in training" (VIX at
    80) is told from "in the top decile". ``usual``: per window kind, the 99th percentile of
    the PSI of the training period's own windows (its nights, its 20-day blocks) against this
    reference: what a window of that size shows without any change of regime.
    """

    edges: tuple[float, ...]
    expected: tuple[float, ...]
    n: int
    lo: float = -math.inf
    hi: float = math.inf
    usual: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "expected": list(self.expected),
            "n": self.n,
            "lo": self.lo,
            "hi": self.hi,
            "usual": dict(self.usual),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(
            tuple(float(x) for x in data["edges"]),
            tuple(float(x) for x in data["expected"]),
            int(data["n"]),
            float(data.get("lo", -math.inf)),
            float(data.get("hi", math.inf)),
            {str(k): float(v) for k, v in data.get("usual", {}).items()},
        )

    @property
    def bins(self) -> int:
        return len(self.expected)

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """Each finite value's bin: 0 below the training range, 1…k inside, k + 1 above."""
        inner = np.searchsorted(np.asarray(self.edges, dtype=np.float64), values, side="left")
        return np.where(values < self.lo, 0, np.where(values > self.hi, self.bins + 1, inner + 1))

    def expected_all(self) -> np.ndarray:
        """``expected`` with the two out-of-range bins (share 0) around it."""
        return np.concatenate([[0.0], np.asarray(self.expected, dtype=np.float64), [0.0]])


def _finite(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def shares(edges: Sequence[float], values: Any) -> np.ndarray:
    """The share of ``values``'s finite entries in each bin ``(-inf, e0], (e0, e1], …,
    (e_last, inf)``; all zeros when there is none."""
    v = _finite(values)
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), v, side="left"),
        minlength=len(edges) + 1,
    )
    return counts / len(v) if len(v) else counts.astype(np.float64)


def reference_of(values: Any, bins: int = BINS) -> Reference | None:
    """Decile (``bins``-quantile) cut points of the finite values, their shares and range;
    None for a variable with fewer than two distinct finite values (nothing to compare)."""
    v = _finite(values)
    if len(v) == 0:
        return None
    # cut points are data values (no interpolation), so no reference bin is empty
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    cuts = np.unique(np.quantile(v, quantiles, method="inverted_cdf"))
    # a cut at the maximum leaves an always-empty top bin (a constant has only that): drop it
    cuts = cuts[cuts < v.max()]
    if len(cuts) == 0:
        return None
    return Reference(
        tuple(float(c) for c in cuts),
        tuple(shares(cuts, v).tolist()),
        len(v),
        float(v.min()),
        float(v.max()),
    )


def windows_psi(reference: Reference, values: Any, groups: Any) -> np.ndarray:
    """The PSI of each group of ``values`` (``groups``: an integer id per value, e.g. a night
    or a 20-day block) against ``reference``, vectorised; a group with no finite value or a
    single value (a point) is left out."""
    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    ok = np.isfinite(v)
    v, g = v[ok], g[ok]
    if len(v) == 0:
        return np.array([])
    ids, g = np.unique(g, return_inverse=True)
    k = reference.bins + 2
    counts = np.bincount(g * k + reference.bin_of(v), minlength=len(ids) * k).reshape(-1, k)
    order = np.argsort(g, kind="stable")
    starts = np.searchsorted(g[order], np.arange(len(ids)))
    spread = np.maximum.reduceat(v[order], starts) > np.minimum.reduceat(v[order], starts)
    a = np.maximum(counts / counts.sum(axis=1, keepdims=True), EPS)
    e = np.maximum(reference.expected_all(), EPS)
    psis = np.sum((a - e) * np.log(a / e), axis=1)
    return psis[spread]


def window_groups(dates: Any, length: int) -> np.ndarray:
    """Consecutive blocks of ``length`` trading days: a block id for each row's date."""
    days = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
    unique = np.unique(days.values)
    return np.searchsorted(unique, days.values) // length


WINDOW_DAYS = {"tonight": 1, "20d": RECENT_DAYS}
USUAL_QUANTILE = 0.99
MIN_WINDOWS = 5  # fewer windows than this calibrate nothing


def calibrate(
    reference: Reference, values: Any, dates: Any, groups: Mapping[str, np.ndarray] | None = None
) -> Reference:
    """``reference`` with its ``usual`` PSI per window kind, from the training period's own
    nights and 20-day blocks (see :class:`Reference`); ``groups`` (window → block ids of
    the rows) saves recomputing them for each feature of one frame."""
    usual = {}
    for window, length in WINDOW_DAYS.items():
        ids = groups[window] if groups is not None else window_groups(dates, length)
        psis = windows_psi(reference, values, ids)
        if len(psis) >= MIN_WINDOWS:
            usual[window] = float(np.quantile(psis, USUAL_QUANTILE))
    return replace(reference, usual=usual)


def psi(expected: Any, actual: Any, eps: float = EPS) -> float:
    """Σ (a − e)·ln(a / e), each share floored at ``eps``."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_of(reference: Reference, values: Any) -> float:
    """PSI of ``values`` against ``reference`` (out-of-range bins included); NaN when no value
    is finite, or when all are one value (a market- or sector-wide feature on one night has
    one value for every stock: a point, not a distribution, and its PSI would be maximal by
    construction)."""
    v = _finite(values)
    if len(v) == 0 or (len(v) > 1 and np.all(v == v[0])):
        return math.nan
    actual = np.bincount(reference.bin_of(v), minlength=reference.bins + 2) / len(v)
    return psi(reference.expected_all(), actual)


def noise_floor(reference: Reference, n: int) -> float:
    """The PSI that sampling alone gives a window of ``n`` rows: about (k − 1)·(1/n + 1/N)."""
    if n <= 0:
        return math.nan
    return (reference.bins - 1) * (1.0 / n + 1.0 / max(reference.n, 1))


def score_of(proba: np.ndarray) -> np.ndarray:
    """The score drift is measured on: P(BUY) − P(SELL) (class order SELL, HOLD, BUY)."""
    p = np.asarray(proba, dtype=np.float64)
    return p[:, 2] - p[:, 0]


def build_reference(
    frame: pd.DataFrame,
    features: Sequence[str],
    scores: Any = None,
    score_dates: Any = None,
    bins: int = BINS,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """The manifest's ``drift_reference``: a calibrated reference per feature of ``frame``
    (the training window's rows, with their ``date``) and, when given, of the scores (with
    ``score_dates``). The cut points come from at most ``max_rows`` evenly spaced rows
    (deciles need no more); the calibration reads every row, since it needs whole nights."""
    out: dict[str, Any] = {"bins": bins, "features": {}}
    sample = frame
    if max_rows is not None and len(frame) > max_rows:
        sample = frame.iloc[np.linspace(0, len(frame) - 1, max_rows).astype(int)]
    dates = frame["date"].to_numpy() if "date" in frame.columns else None
    groups = (
        {w: window_groups(dates, n) for w, n in WINDOW_DAYS.items()} if dates is not None else None
    )
    for name in features:
        ref = reference_of(sample[name].to_numpy(), bins)
        if ref is not None:
            if dates is not None:
                ref = calibrate(ref, frame[name].to_numpy(), dates, groups)
            out["features"][name] = ref.to_dict()
    if scores is not None:
        ref = reference_of(scores, bins)
        if ref is not None:
            if score_dates is not None:
                ref = calibrate(ref, scores, score_dates)
            out["score"] = ref.to_dict()
    return out


@dataclass(frozen=True)
class KeyDrift:
    """One model key's drift over one or more windows."""

    key: str
    version: str
    table: pd.DataFrame  # feature, window, psi, n, noise_floor, usual
    score: dict[str, float]  # window → PSI of the score
    score_rows: dict[str, int]
    score_usual: dict[str, float] = field(default_factory=dict)

    def count_over(self, window: str, threshold: float) -> int:
        t = self.table[self.table["window"] == window]
        return int((t["psi"] > threshold).sum())

    def count_unusual(self, window: str) -> int:
        """Features whose PSI passes what the training period's own windows showed."""
        t = self.table[self.table["window"] == window]
        return int((t["psi"] > t["usual"]).sum())

    def score_unusual(self, window: str) -> bool:
        return bool(self.score.get(window, math.nan) > self.score_usual.get(window, math.inf))

    def worst(self, window: str, n: int = 10) -> pd.DataFrame:
        """The ``n`` most unusual features: by PSI over its usual level (``ratio``; over
        ``MAJOR`` where the reference has no calibration), largest first."""
        t = self.table[self.table["window"] == window].dropna(subset=["psi"])
        t = t.assign(ratio=t["psi"] / t["usual"].fillna(MAJOR))
        return t.sort_values(["ratio", "feature"], ascending=[False, True]).head(n)


def key_drift(
    key: str,
    version: str,
    reference: Mapping[str, Any],
    windows: Mapping[str, pd.DataFrame],
    scores: Mapping[str, Any] | None = None,
) -> KeyDrift:
    """PSI of every referenced feature in each window (``name → rows``), and of the scores
    (``name → scores``) where given."""
    rows: list[dict[str, Any]] = []
    refs = {f: Reference.from_dict(d) for f, d in reference.get("features", {}).items()}
    for window, frame in windows.items():
        for feature, ref in refs.items():
            values = frame[feature].to_numpy() if feature in frame.columns else np.array([])
            n = int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
            rows.append(
                {
                    "feature": feature,
                    "window": window,
                    "psi": psi_of(ref, values),
                    "n": n,
                    "noise_floor": noise_floor(ref, n),
                    "usual": ref.usual.get(window, math.nan),
                }
            )
    columns = ["feature", "window", "psi", "n", "noise_floor", "usual"]
    table = pd.DataFrame(rows, columns=columns)
    score_psi: dict[str, float] = {}
    score_rows: dict[str, int] = {}
    score_usual: dict[str, float] = {}
    if "score" in reference and scores:
        ref = Reference.from_dict(reference["score"])
        for window, values in scores.items():
            score_psi[window] = psi_of(ref, values)
            score_rows[window] = len(_finite(values))
            if window in ref.usual:
                score_usual[window] = ref.usual[window]
    return KeyDrift(key, version, table, score_psi, score_rows, score_usual)


def level(value: float) -> str:
    """stable / moderate / major by the usual PSI reading; '' for NaN."""
    if not np.isfinite(value):
        return ""
    return "major" if value > MAJOR else "moderate" if value > MODERATE else "stable"


def summary(drifts: Sequence[KeyDrift]) -> pd.DataFrame:
    """One row per model key: features over 0.1 and 0.25 per window, and score PSI."""
    out = []
    for d in drifts:
        row: dict[str, Any] = {"key": d.key, "version": d.version}
        for w in WINDOWS:
            row[f"over_{MODERATE}_{w}"] = d.count_over(w, MODERATE)
            row[f"over_{MAJOR}_{w}"] = d.count_over(w, MAJOR)
            row[f"unusual_{w}"] = d.count_unusual(w)
            row[f"score_psi_{w}"] = d.score.get(w, math.nan)
        out.append(row)
    return pd.DataFrame(out)
