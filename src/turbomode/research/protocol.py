"""The research protocol: walk-forward folds inside the development data, and one report run.

Every modelling choice (features, target, scope, history, hyperparameters) is made on yearly
test folds before the development cut-off (2018 → 2022 by default), each trained only on rows
whose label window closes before the fold starts (a purge of the horizon plus an embargo).
The report window (2023-01-03 → 2024-06-28) is scored once per *finished* configuration and
never chooses between variants. Every configuration evaluated is appended to a results log, so
the number of variants tried is part of the result.

The scores are judged with :mod:`turbomode.research.factor`, the same yardstick the tear sheet
uses: the daily cross-sectional rank IC against the label's return (next open → close t+h) and
against the return from the next close, pooled and within sectors, and a top-minus-bottom
decile book net of costs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import LabelSettings, ModelSettings
from turbomode.features import build_features
from turbomode.features.registry import model_feature_names
from turbomode.labels import make_labels
from turbomode.logs import event
from turbomode.models.ranker import rank_target as models_rank_target
from turbomode.research import factor

log = logging.getLogger("turbomode.research.protocol")

DEV_END = pd.Timestamp("2022-12-31")
REPORT_START, REPORT_END = pd.Timestamp("2023-01-03"), pd.Timestamp("2024-06-28")
DEV_FOLDS = (2018, 2019, 2020, 2021, 2022)
EMBARGO_DAYS = 5

Target = Literal["sector_rank", "universe_rank", "sector_excess"]
Scope = Literal["pooled", "sector"]


@dataclass(frozen=True)
class Candidate:
    """One configuration the protocol can evaluate: a LightGBM regressor on a rank target."""

    name: str
    horizon: int = 1
    kind: Literal["ranker", "stacked", "neural"] = "ranker"
    """ranker: the LightGBM regressor below; stacked: the platform's 3-class stacked ensemble
    per sector with its default settings (the configuration this protocol replaced), scored by
    P(BUY) − P(SELL); neural: one neural learner (``arch``) pooled over every sector on the
    same 3-class labels, scored the same way."""
    arch: Literal["mlp", "lstm", "transformer"] = "mlp"
    target: Target = "sector_rank"
    scope: Scope = "pooled"
    train_years: int = 10
    date_step: int = 2
    """Train on every k-th date: neighbouring days' rows are nearly copies (overlapping windows),
    so thinning costs little information and halves the time."""
    features: tuple[str, ...] = ()
    """Empty: every registered feature."""
    params: Mapping[str, Any] = field(default_factory=dict)

    def feature_names(self) -> list[str]:
        return list(self.features) if self.features else model_feature_names()

    def lgbm_params(self) -> dict[str, Any]:
        """The platform's rank-model parameters (``models.ranker``), with this candidate's
        overrides: what the folds choose is what the platform trains."""
        base = {"objective": "regression", **ModelSettings().ranker, "verbose": -1}
        return {**base, **dict(self.params)}


@dataclass
class Panel:
    """Features, targets and forward returns for every (symbol, date), built once."""

    frame: pd.DataFrame
    prices: pd.DataFrame
    features: list[str]
    dates: pd.DatetimeIndex

    def rows_between(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        d = self.frame["date"]
        return self.frame[(d >= start) & (d <= end)]


def rank_target(frame: pd.DataFrame, ret: str, target: Target) -> pd.Series:
    """The regression target: the forward return's percentile within its date's sector (or the
    universe) centred on 0, or the sector-excess return. Ranks are immune to the fat tails and
    to the market and sector moves no stock feature can call."""
    if target == "sector_excess":
        return frame[ret] - frame.groupby(["date", "sector"])[ret].transform("mean")
    groups = frame["sector"].to_numpy() if target == "sector_rank" else None
    ranked = models_rank_target(frame[ret].to_numpy(), frame["date"].to_numpy(), groups)
    return pd.Series(ranked, index=frame.index)


def build_panel(
    prices: pd.DataFrame,
    market: pd.DataFrame,
    sectors: Mapping[str, str],
    horizons: Sequence[int] = (1, 5),
) -> Panel:
    """Features (float32), labels and both forward-return bases for every row."""
    t0 = time.perf_counter()
    feats = build_features(prices, market, sectors, features=model_feature_names()).frame
    labels = make_labels(prices, LabelSettings(horizons=list(horizons)), sectors=dict(sectors))  # type: ignore[arg-type]
    fwd = factor.forward_returns(prices, horizons)
    frame = feats.merge(labels, on=["symbol", "date"], how="left").merge(
        fwd, on=["symbol", "date"], how="left"
    )
    frame["sector"] = frame["symbol"].map(sectors)
    frame = frame[frame["sector"].notna()].reset_index(drop=True)
    event(log, "research.panel", rows=len(frame), seconds=round(time.perf_counter() - t0, 1))
    dates = pd.DatetimeIndex(np.sort(frame["date"].unique()))
    return Panel(frame, prices, model_feature_names(), dates)


def train_rows(panel: Panel, cand: Candidate, test_start: pd.Timestamp) -> pd.DataFrame:
    """Rows a fold may learn from: ``train_years`` before ``test_start``, every
    ``date_step``-th date, and none whose label window reaches the test window (the last
    horizon + embargo trading days before it are purged)."""
    i0 = int(panel.dates.searchsorted(test_start))
    last = panel.dates[max(i0 - cand.horizon - EMBARGO_DAYS, 0)]
    first = test_start - pd.DateOffset(years=cand.train_years)
    keep = panel.dates[(panel.dates >= first) & (panel.dates < last)][:: cand.date_step]
    rows = panel.frame[panel.frame["date"].isin(keep)]
    return rows[rows[f"fwd_ret_{cand.horizon}"].notna()]


def fit_predict(
    cand: Candidate,
    train: pd.DataFrame,
    test: pd.DataFrame,
    threads: int = 2,
    panel: Panel | None = None,
) -> np.ndarray:
    """Fit the candidate on ``train`` and score ``test`` (one model, or one per sector).
    A sequence learner reads its windows from ``panel`` (every trading day, not only the
    training rows' every ``date_step``-th)."""
    import lightgbm as lgb

    names = cand.feature_names()
    if cand.kind == "stacked":
        return _fit_predict_stacked(cand, train, test, names, threads)
    if cand.kind == "neural":
        return _fit_predict_neural(cand, train, test, names, panel)
    y = rank_target(train, f"fwd_ret_{cand.horizon}", cand.target).to_numpy()
    params = {**cand.lgbm_params(), "n_jobs": threads, "random_state": 0}
    if cand.scope == "pooled":
        model = lgb.LGBMRegressor(**params).fit(train[names], y)
        return np.asarray(model.predict(test[names]), dtype=float)
    out = np.full(len(test), np.nan)
    for sector, idx in test.groupby("sector").indices.items():
        mask = (train["sector"] == sector).to_numpy()
        if mask.sum() < 1000:
            continue
        model = lgb.LGBMRegressor(**params).fit(train.loc[mask, names], y[mask])
        out[idx] = model.predict(test.iloc[idx][names])
    return out


def _fit_predict_stacked(
    cand: Candidate, train: pd.DataFrame, test: pd.DataFrame, names: list[str], threads: int
) -> np.ndarray:
    from turbomode.models.ensemble import StackedEnsemble

    label = f"label_{cand.horizon}"
    train = train[train[label].notna()]
    out = np.full(len(test), np.nan)
    for sector, idx in test.groupby("sector").indices.items():
        rows = train[train["sector"] == sector]
        if len(rows) < 1000:
            continue
        ens = StackedEnsemble(names, cand.horizon, ModelSettings(), threads=threads).fit(
            rows[names], rows[label].to_numpy(dtype=np.int64), rows["date"].to_numpy()
        )
        p = ens.predict_proba(test.iloc[idx][names])
        out[idx] = p[:, 2] - p[:, 0]
    return out


def _fit_predict_neural(
    cand: Candidate,
    train: pd.DataFrame,
    test: pd.DataFrame,
    names: list[str],
    panel: Panel | None,
) -> np.ndarray:
    from turbomode.models.ensemble import balanced_weights
    from turbomode.models.neural import NeuralClassifier, Windows, build_windows

    label = f"label_{cand.horizon}"
    train = train[train[label].notna()]
    settings = ModelSettings()
    params = {**settings.neural, **dict(cand.params)}
    y = train[label].to_numpy(dtype=np.int64)
    if cand.arch == "mlp":
        model = NeuralClassifier("mlp", names, params, horizon=cand.horizon)
        X = train[names].to_numpy(np.float32)
        model.fit(X, y, train["date"].to_numpy(), balanced_weights(y))
        p = model.predict_proba(test[names].to_numpy(np.float32))
        return p[:, 2] - p[:, 0]
    if panel is None:
        raise ValueError("a sequence learner needs the panel to build its windows")
    seq = settings.sequence_features
    span = panel.rows_between(train["date"].min(), test["date"].max())
    windows = build_windows(span, seq, int(params["window"]))
    at = span.index.get_indexer
    model = NeuralClassifier(cand.arch, seq, params, horizon=cand.horizon)
    model.fit(windows.take(at(train.index)), y, train["date"].to_numpy(), balanced_weights(y))
    test_windows: Windows = windows.take(at(test.index))
    p = model.predict_proba(test_windows)
    return p[:, 2] - p[:, 0]


def judge(
    scored: pd.DataFrame, prices: pd.DataFrame, horizon: int, cost_bps: float = 10.0
) -> dict[str, float]:
    """The yardstick's headline figures for one score column ``score``."""
    out: dict[str, float] = {}
    for basis in ("open", "close"):
        ret = f"ret_{basis}_{horizon}"
        pooled = factor.ic_summary(factor.daily_ic(scored, "score", ret))
        within = factor.ic_summary(factor.daily_ic(scored, "score", ret, group="sector"))
        out[f"ic_{basis}"], out[f"ic_{basis}_t"] = pooled["mean"], pooled["t"]
        out[f"ic_{basis}_sector"], out[f"ic_{basis}_sector_t"] = within["mean"], within["t"]
    for smooth in (1, 5):
        ls = factor.ls_summary(
            factor.long_short(scored, "score", prices, cost_bps=cost_bps, smooth=smooth)
        )
        sfx = "" if smooth == 1 else f"_smooth{smooth}"
        out[f"ls_sharpe_gross{sfx}"] = ls["sharpe_gross"]
        out[f"ls_sharpe_net{sfx}"] = ls["sharpe_net"]
        out[f"turnover{sfx}"] = ls["mean_turnover"]
    return out


def score_frame(rows: pd.DataFrame, score: np.ndarray | pd.Series) -> pd.DataFrame:
    cols = [c for c in rows.columns if c.startswith(("ret_open_", "ret_close_"))]
    out = rows[["symbol", "date", "sector", *cols]].copy()
    out["score"] = np.asarray(score, dtype=float)
    return out


RULES: dict[str, tuple[str, float]] = {
    "reversal_5d": ("ret_5", -1.0),
    "momentum_20d": ("ret_20", 1.0),
    "sector_reversal_5d": ("sector_rel_ret_5", -1.0),
    "residual_reversal_5d": ("resid_ret_5", -1.0),
}
"""Baseline rules: score = sign × one feature (the 5-day reversal is −ret_5)."""


def rule_score(rows: pd.DataFrame, rule: str) -> np.ndarray:
    col, sign = RULES[rule]
    return sign * rows[col].to_numpy(dtype=float)


@dataclass
class FoldResult:
    name: str
    fold: str
    figures: dict[str, float]
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0


def evaluate_candidate(
    panel: Panel, cand: Candidate, folds: Iterable[int] = DEV_FOLDS, threads: int = 2
) -> list[FoldResult]:
    """Walk-forward: for each yearly fold, train before it (purged) and score the year."""
    results = []
    for year in folds:
        t0 = time.perf_counter()
        start, end = pd.Timestamp(f"{year}-01-01"), pd.Timestamp(f"{year}-12-31")
        if end > DEV_END:
            raise ValueError(f"fold {year} reaches past the development cut-off {DEV_END.date()}")
        train = train_rows(panel, cand, start)
        test = panel.rows_between(start, end)
        score = fit_predict(cand, train, test, threads, panel)
        figs = judge(score_frame(test, score), panel.prices, cand.horizon)
        results.append(
            FoldResult(cand.name, str(year), figs, len(train), len(test), time.perf_counter() - t0)
        )
        event(log, "research.fold", candidate=cand.name, fold=str(year), figures=_rounded(figs))
        print(cand.name, year, _rounded(figs), flush=True)
    return results


def evaluate_rule(
    panel: Panel, rule: str, horizon: int, folds: Iterable[int] = DEV_FOLDS
) -> list[FoldResult]:
    out = []
    for year in folds:
        start, end = pd.Timestamp(f"{year}-01-01"), pd.Timestamp(f"{year}-12-31")
        test = panel.rows_between(start, end)
        figs = judge(score_frame(test, rule_score(test, rule)), panel.prices, horizon)
        out.append(FoldResult(f"{rule}@{horizon}d", str(year), figs, 0, len(test)))
    return out


def report_window(
    panel: Panel, cand: Candidate, threads: int = 2
) -> tuple[FoldResult, pd.DataFrame]:
    """The one out-of-time run of a finished configuration: trained only on rows whose label
    closed before 2023, scored on 2023-01-03 → 2024-06-28. Returns its figures and scores."""
    t0 = time.perf_counter()
    train = train_rows(panel, cand, REPORT_START)
    if train["date"].max() > DEV_END:
        raise AssertionError("report-window training saw a date after the development data")
    test = panel.rows_between(REPORT_START, REPORT_END)
    scored = score_frame(test, fit_predict(cand, train, test, threads, panel))
    figs = judge(scored, panel.prices, cand.horizon)
    return (
        FoldResult(cand.name, "report", figs, len(train), len(test), time.perf_counter() - t0),
        scored,
    )


def summarize(results: Sequence[FoldResult]) -> dict[str, float]:
    """Mean of each figure over folds, and the t-statistic of the fold means of the IC."""
    keys = results[0].figures.keys()
    out = {k: float(np.nanmean([r.figures[k] for r in results])) for k in keys}
    ics = np.array([r.figures["ic_open"] for r in results])
    out["folds_ic_positive"] = float((ics > 0).sum())
    return out


def _rounded(d: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in d.items()}


def append_log(path: Path, cand: Candidate | str, results: Sequence[FoldResult]) -> None:
    """One JSON line per fold, with the configuration: the results log is append-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = asdict(cand) if isinstance(cand, Candidate) else {"rule": cand}
    with path.open("a") as fh:
        for r in results:
            line = {
                "name": r.name,
                "fold": r.fold,
                "config": config,
                "n_train": r.n_train,
                "n_test": r.n_test,
                "seconds": round(r.seconds, 1),
                "turnover_def": "sum|dw|/4",
                **_rounded(r.figures),
            }
            fh.write(json.dumps(line, default=str) + "\n")
