"""The promotion gate decides on evidence, names the rule that decided, and only then promotes.

Every evaluation here is real: synthetic predictions on a seeded 120-date × 20-name panel go
through ``metrics.evaluate(include_daily=True)``, exactly as the training pipeline will do.
Labels are thirds of a N(0, 2 %) forward return; a model's "skill" is the correlation ``rho``
of its latent score with that return.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from turbomode.config import GateSettings, Settings
from turbomode.models.evaluation import (
    evaluate,
    majority_baseline,
    momentum_baseline,
    paired_daily_test,
    prior_baseline,
)
from turbomode.models.gate import (
    ALL_PASSED,
    RULE_BASELINES,
    RULE_FLOORS,
    RULE_MIN_DAYS,
    RULE_PRODUCTION,
    GateInputError,
    GateReport,
    apply_decision,
    decide,
    look_alpha,
    render_markdown,
)
from turbomode.models.registry import ModelRegistry

SIGMA = 0.02
THIRD = 0.43  # N(0,1) quantile ≈ 1/3 of the mass on each side


class Panel:
    """Dates × names of forward returns and 3-class labels, and helpers to evaluate on it."""

    def __init__(self, n_dates: int = 120, n_names: int = 20, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dates = np.repeat(pd.bdate_range("2023-01-02", periods=n_dates), n_names)
        self.r = rng.normal(0.0, SIGMA, n_dates * n_names)
        self.y = np.where(self.r > THIRD * SIGMA, 2, np.where(self.r < -THIRD * SIGMA, 0, 1))
        self.n = len(self.y)

    def evaluate(self, proba: np.ndarray) -> dict[str, Any]:
        return evaluate(self.y, proba, self.r, self.dates, include_daily=True)

    def latent(self, rho: float, seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).normal(size=self.n)
        return rho * self.r / SIGMA + np.sqrt(1 - rho**2) * noise

    def model(self, rho: float, seed: int = 1, buy_shift: float = 0.0) -> dict[str, Any]:
        """A model whose score has correlation ``rho`` with the forward return."""
        return self.evaluate(proba_from_latent(self.latent(rho, seed), buy_shift))

    def baselines(self, momentum_past: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
        """The three baselines; momentum on an unrelated past return unless one is given."""
        if momentum_past is None:
            momentum_past = np.random.default_rng(99).normal(size=self.n)
        y_train = self.y  # the class mix of training; thirds here
        return {
            "majority": self.evaluate(majority_baseline(y_train, self.n)),
            "prior": self.evaluate(prior_baseline(y_train, self.n)),
            "momentum": self.evaluate(momentum_baseline(momentum_past)),
        }


def proba_from_latent(z: np.ndarray, buy_shift: float = 0.0) -> np.ndarray:
    """Softmax of (−z, THIRD, z + shift): argmax SELL below −THIRD, BUY above, HOLD between;
    P(BUY) − P(SELL) is monotone in z. A positive ``buy_shift`` makes BUY over-predicted."""
    logits = np.column_stack([-z, np.full_like(z, THIRD), z + buy_shift])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def panel() -> Panel:
    return Panel()


@pytest.fixture(scope="module")
def baselines(panel: Panel) -> dict[str, dict[str, Any]]:
    return panel.baselines()


@pytest.fixture(scope="module")
def good(panel: Panel) -> dict[str, Any]:
    return panel.model(0.3)


def _check(report: GateReport, rule: str, check: str) -> Any:
    return next(c for c in report.rule(rule).checks if c.name == check)


# --------------------------------------------------------------------------- decisions


def test_good_candidate_is_promoted_over_the_baselines_without_production(
    good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    report = decide(good, baselines, None, GateSettings())

    assert report.decision == "promote" and report.promoted
    assert report.deciding_rule == ALL_PASSED and report.deciding_check is None
    assert "no production model" in report.reason
    assert [r.name for r in report.rules] == [
        RULE_MIN_DAYS,
        RULE_FLOORS,
        RULE_BASELINES,
        RULE_PRODUCTION,
    ]
    assert report.rule(RULE_PRODUCTION).note == "no production model: passes automatically"
    assert report.window == {
        "first_date": "2023-01-02",
        "last_date": pd.bdate_range("2023-01-02", periods=120)[-1].date().isoformat(),
        "n_days": 120,
        "n_ic_days": 120,
        "n_rows": 2400,
    }
    checks = report.rule(RULE_BASELINES).checks
    assert [c.name for c in checks] == [
        f"{b}.{m}" for b in ("majority", "prior", "momentum") for m in ("ic", "balanced_accuracy")
    ]
    for c in checks:  # the numbers behind every pass are there and say what the rule says
        assert c.passed and c.detail["p_value"] < 0.05 and c.detail["ci_low"] > 0
        assert c.detail["n_days"] == 120
        kind = "pooled" if c.name.endswith("balanced_accuracy") else "mean"
        assert c.value == pytest.approx(
            c.detail[f"candidate_{kind}"] - c.detail[f"baseline_{kind}"]
        )
    # balanced accuracy is compared pooled: the figures are those of `classification`
    bacc = _check(report, RULE_BASELINES, "majority.balanced_accuracy")
    assert bacc.detail["test"] == "pooled_block_bootstrap"
    assert bacc.detail["candidate_pooled"] == good["classification"]["balanced_accuracy"]
    assert (
        bacc.detail["baseline_pooled"]
        == baselines["majority"]["classification"]["balanced_accuracy"]
    )
    # a constant score has daily IC 0 by metrics' convention and is compared as-is
    assert _check(report, RULE_BASELINES, "majority.ic").detail["baseline_mean"] == 0.0
    assert _check(report, RULE_BASELINES, "majority.ic").value == pytest.approx(
        good["rank_ic"]["mean_ic"]
    )
    assert _check(report, RULE_FLOORS, "mean_ic").value == good["rank_ic"]["mean_ic"]


def test_small_sector_candidate_beats_always_hold_on_pooled_balanced_accuracy() -> None:
    """Regression: with 7 names a day, many days lack a class, so always-HOLD's *daily*
    balanced accuracy averages far above its pooled 1/3 and a real edge looked like a loss.

    Returns share a market factor (1.5× the stock-specific part), as in one GICS sector, so
    on strong days every name is BUY/HOLD or SELL/HOLD. The candidate ranks on the stock-
    specific part (rank IC ≈ 0.13) and reaches pooled balanced accuracy ≈ 0.38.
    """
    n_dates, n_names = 300, 7
    rng = np.random.default_rng(0)
    dates = np.repeat(pd.bdate_range("2023-01-02", periods=n_dates), n_names)
    market = np.repeat(rng.normal(size=n_dates), n_names)
    own = rng.normal(size=n_dates * n_names)
    r = 0.01 * (1.5 * market + own)
    cut = 0.524 * r.std()  # ±0.524σ: 40 % HOLD
    y = np.where(r > cut, 2, np.where(r < -cut, 0, 1))
    z = 0.1 * market + 0.2 * own + np.sqrt(1 - 0.05) * rng.normal(size=len(y))
    n = len(y)

    def ev(proba: np.ndarray) -> dict[str, Any]:
        return evaluate(y, proba, r, dates, include_daily=True)

    cand = ev(proba_from_latent(z))
    base = {
        "majority": ev(majority_baseline(y, n)),
        "prior": ev(prior_baseline(y, n)),
        "momentum": ev(momentum_baseline(rng.normal(size=n))),
    }
    assert 0.35 < (y == 1).mean() < 0.45

    def daily(e: dict[str, Any]) -> pd.Series:
        return pd.Series(e["daily"]["balanced_accuracy"])

    hold = base["majority"]
    assert hold["classification"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert daily(hold).mean() > 0.37  # the bias: days without a BUY or SELL score 1/2 or 1
    cls = cand["classification"]
    assert 0.37 < cls["balanced_accuracy"] < 0.39
    assert cand["rank_ic"]["mean_ic"] > 0.1 and cand["rank_ic"]["t_stat"] > 4
    # the old comparison of daily means saw no edge (here even a loss) over always-HOLD
    old = paired_daily_test(daily(cand), daily(hold))
    assert old["mean_diff"] < 0 and not (old["p_value"] < 0.05 and old["ci_low"] > 0)

    report = decide(cand, base, None, GateSettings())
    assert report.decision == "promote", report.reason
    for name in ("majority", "prior"):  # the prior's argmax is HOLD too
        c = _check(report, RULE_BASELINES, f"{name}.balanced_accuracy")
        assert c.passed and c.detail["test"] == "pooled_block_bootstrap"
        assert c.detail["baseline_pooled"] == pytest.approx(1 / 3)
        assert c.detail["candidate_pooled"] == cls["balanced_accuracy"]
        assert c.value == pytest.approx(cls["balanced_accuracy"] - 1 / 3)
        assert c.detail["ci_low"] > 0 and c.detail["p_value"] <= 0.05
        assert c.detail["n_days"] == n_dates
    assert "pooled" in report.rule(RULE_BASELINES).note


def test_rejected_when_production_is_clearly_better_on_the_same_window(
    panel: Panel, good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    production = panel.model(0.8, seed=2)
    report = decide(good, baselines, production, GateSettings())

    assert report.decision == "reject"
    assert report.deciding_rule == RULE_PRODUCTION
    assert report.deciding_check == "mean_ic"
    assert RULE_PRODUCTION in report.reason
    c = _check(report, RULE_PRODUCTION, "mean_ic")
    assert c.detail["production"] == production["rank_ic"]["mean_ic"]
    assert c.threshold == pytest.approx(production["rank_ic"]["mean_ic"] - 0.005)
    assert c.value is not None and c.value < c.threshold
    # the earlier rules still passed: it is production, not the baselines, that decided
    assert all(r.passed for r in report.rules[:3])
    worse = _check(report, RULE_PRODUCTION, "ic.not_significantly_worse")
    assert not worse.passed and worse.detail["p_value"] < 0.05 and worse.detail["ci_low"] > 0


def test_a_significantly_worse_candidate_fails_even_inside_the_tolerance(
    panel: Panel, good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    production = panel.model(0.8, seed=2)
    loose = GateSettings(production_ic_tolerance=1.0, production_balanced_accuracy_tolerance=1.0)
    report = decide(good, baselines, production, loose)
    assert report.decision == "reject"
    assert report.deciding_check == "ic.not_significantly_worse"
    assert _check(report, RULE_PRODUCTION, "mean_ic").passed

    # against itself as production there is no difference at all: promoted
    same = decide(good, baselines, good, GateSettings())
    assert same.decision == "promote"
    assert all(c.passed for c in same.rule(RULE_PRODUCTION).checks)
    bacc = _check(same, RULE_PRODUCTION, "balanced_accuracy.not_significantly_worse")
    assert bacc.detail["test"] == "pooled_block_bootstrap"
    assert bacc.value == 0.0 and bacc.detail["p_value"] == 1.0  # identical: no difference
    assert "no production" not in same.reason


def test_candidate_that_loses_to_momentum_is_rejected_naming_it(
    panel: Panel, good: dict[str, Any]
) -> None:
    # a momentum rule that happens to track the forward return closely (IC ≈ 0.9)
    peek = panel.r + np.random.default_rng(5).normal(0.0, 0.005, panel.n)
    strong = panel.baselines(momentum_past=peek)
    report = decide(good, strong, None, GateSettings())

    assert report.decision == "reject"
    assert report.deciding_rule == RULE_BASELINES
    assert report.deciding_check == "momentum.ic"
    assert "momentum.ic" in report.reason
    for name in ("majority", "prior"):
        assert _check(report, RULE_BASELINES, f"{name}.ic").passed
    c = _check(report, RULE_BASELINES, "momentum.ic")
    assert c.value is not None and c.value < 0 and c.detail["p_value"] > 0.5


def test_a_significant_t_test_is_not_enough_when_the_bootstrap_ci_reaches_zero(
    panel: Panel, good: dict[str, Any]
) -> None:
    # a momentum rule nearly as good as the candidate (seed chosen so the two tests disagree)
    close = panel.baselines(momentum_past=panel.latent(0.27, seed=28))
    report = decide(good, close, None, GateSettings())
    c = _check(report, RULE_BASELINES, "momentum.ic")
    assert c.detail["p_value"] < 0.05  # the t-test, which assumes independent days, says yes
    assert c.detail["ci_low"] < 0  # the block bootstrap does not
    assert (report.decision, report.deciding_check) == ("reject", "momentum.ic")


def test_missing_required_baseline_rejects(
    good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    two = {k: v for k, v in baselines.items() if k != "momentum"}
    report = decide(good, two, None, GateSettings())
    assert report.decision == "reject"
    assert report.deciding_check == "momentum.present"
    # an extra baseline beyond the required three is tested too
    extra = decide(good, {**baselines, "reversal": baselines["momentum"]}, None, GateSettings())
    assert "reversal.ic" in [c.name for c in extra.rule(RULE_BASELINES).checks]


def test_ic_below_the_floor_is_rejected_naming_the_floor(
    panel: Panel, baselines: dict[str, dict[str, Any]]
) -> None:
    weak = panel.model(-0.1, seed=3)
    assert weak["rank_ic"]["mean_ic"] < 0.01
    report = decide(weak, baselines, None, GateSettings())
    assert report.decision == "reject"
    assert (report.deciding_rule, report.deciding_check) == (RULE_FLOORS, "mean_ic")
    assert "0.01" in report.reason


def test_ic_floor_is_applied_exactly(
    good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    ic = good["rank_ic"]["mean_ic"]
    above = decide(good, baselines, None, GateSettings(min_mean_ic=ic + 1e-9))
    below = decide(good, baselines, None, GateSettings(min_mean_ic=ic - 1e-9))
    assert (above.decision, above.deciding_check) == ("reject", "mean_ic")
    assert below.decision == "promote"


def test_too_few_days_is_rejected(baselines: dict[str, dict[str, Any]]) -> None:
    short = Panel(n_dates=40, seed=4)
    cand, base = short.model(0.3), short.baselines()
    report = decide(cand, base, None, GateSettings())
    assert report.decision == "reject"
    assert (report.deciding_rule, report.deciding_check) == (RULE_MIN_DAYS, "n_days")
    assert _check(report, RULE_MIN_DAYS, "n_days").value == 40.0
    assert report.window["n_days"] == 40
    # the day count alone decided: with a lower requirement the same evidence promotes
    assert decide(cand, base, None, GateSettings(min_days=40)).decision == "promote"


def test_legacy_profile_rejects_low_buy_precision_and_says_which_figure(
    panel: Panel, baselines: dict[str, dict[str, Any]]
) -> None:
    # a strong ranker that over-predicts BUY: balanced accuracy ≥ 60 %, BUY precision < 55 %
    eager = panel.model(0.9, seed=6, buy_shift=0.8)
    cls = eager["classification"]
    assert cls["balanced_accuracy"] >= 0.60
    assert cls["per_class"]["BUY"]["precision"] < 0.55

    legacy = decide(eager, baselines, None, GateSettings(profile="legacy"))
    assert legacy.profile == "legacy"
    assert legacy.decision == "reject"
    assert (legacy.deciding_rule, legacy.deciding_check) == (RULE_FLOORS, "BUY.precision")
    assert "BUY.precision" in legacy.reason
    floors = {c.name: c for c in legacy.rule(RULE_FLOORS).checks}
    assert set(floors) == {
        "balanced_accuracy",
        "BUY.precision",
        "BUY.recall",
        "SELL.precision",
        "SELL.recall",
    }  # the legacy floors replace the honest ones (no IC floor); plain accuracy is not used
    assert floors["balanced_accuracy"].threshold == 0.60
    assert floors["balanced_accuracy"].value == cls["balanced_accuracy"]
    assert floors["BUY.precision"].value == cls["per_class"]["BUY"]["precision"]
    assert floors["BUY.recall"].passed and floors["SELL.precision"].passed

    # the honest profile lets the same model through; an unbiased strong one passes legacy too
    assert decide(eager, baselines, None, GateSettings()).decision == "promote"
    assert (
        decide(panel.model(0.9, seed=6), baselines, None, GateSettings(profile="legacy")).decision
        == "promote"
    )


def test_settings_hold_the_gate_and_validate() -> None:
    s = Settings()
    assert s.gate.profile == "honest"
    assert (s.gate.min_mean_ic, s.gate.min_balanced_accuracy, s.gate.min_days) == (
        0.01,
        0.36,
        60,
    )
    with pytest.raises(ValueError):
        GateSettings(profile="lenient")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GateSettings(alpha=0.0)


# --------------------------------------------------------------------------- inputs


def test_evaluations_on_different_rows_are_refused(
    panel: Panel, good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    keep = panel.dates < panel.dates[-1]  # drop the last date
    rows = (panel.y[keep], majority_baseline(panel.y, int(keep.sum())), panel.r[keep])
    other = evaluate(*rows, panel.dates[keep], include_daily=True)
    with pytest.raises(GateInputError, match=r"baseline 'prior'.*same rows"):
        decide(good, {**baselines, "prior": other}, None, GateSettings())
    with pytest.raises(GateInputError, match="production"):
        decide(good, baselines, other, GateSettings())
    no_daily = evaluate(panel.y, proba_from_latent(panel.latent(0.3, 1)), panel.r, panel.dates)
    with pytest.raises(GateInputError, match="include_daily=True"):
        decide(no_daily, baselines, None, GateSettings())
    no_counts = {**good, "daily": {k: v for k, v in good["daily"].items() if k != "class_counts"}}
    with pytest.raises(GateInputError, match="class counts"):
        decide(no_counts, baselines, None, GateSettings())


# --------------------------------------------------------------------------- registry


def test_apply_decision_moves_production_only_on_promote(
    tmp_path: Path,
    panel: Panel,
    good: dict[str, Any],
    baselines: dict[str, dict[str, Any]],
) -> None:
    reg = ModelRegistry(tmp_path / "registry")
    key = "Information Technology/1d"
    v1 = reg.register(key, {"model.bin": b"v1"}, {"note": "first"}, version_id="v1")
    v2 = reg.register(key, {"model.bin": b"v2"}, {"note": "second"}, version_id="v2")

    first = decide(good, baselines, None, GateSettings())
    assert apply_decision(first, reg, key, v1) is True
    assert reg.production(key) == v1

    rejected = decide(good, baselines, panel.model(0.8, seed=2), GateSettings())
    pointer_before = next((tmp_path / "registry").rglob("production.json")).read_bytes()
    assert apply_decision(rejected, reg, key, v2) is False
    assert reg.production(key) == v1
    assert next((tmp_path / "registry").rglob("production.json")).read_bytes() == pointer_before

    promoted = decide(good, baselines, panel.model(0.2, seed=7), GateSettings())
    assert promoted.decision == "promote"
    assert apply_decision(promoted, reg, key, v2) is True
    assert reg.production(key) == v2
    assert reg.pointer(key)["previous"] == [v1]  # type: ignore[index]


# --------------------------------------------------------------------------- output


def test_report_round_trips_through_json_and_renders(
    panel: Panel, good: dict[str, Any], baselines: dict[str, dict[str, Any]]
) -> None:
    for report in (
        decide(good, baselines, None, GateSettings()),
        decide(good, baselines, panel.model(0.8, seed=2), GateSettings(profile="legacy")),
    ):
        text = json.dumps(report.to_dict(), allow_nan=False)
        back = GateReport.from_dict(json.loads(text))
        assert back == report
        assert back.to_dict() == report.to_dict()
        assert report.to_dict()["settings"]["profile"] == report.profile

        md = render_markdown(report)
        assert f"Promotion gate: {report.decision.upper()}" in md
        assert f"`{report.deciding_rule}`" in md
        assert "2400 rows" in md
        for rule in report.rules:
            assert f"`{rule.name}`" in md
            for c in rule.checks:
                assert f"| {c.name} |" in md


# --------------------------------------------------------------------------- repeated looks


def test_alpha_spent_over_looks_sums_to_alpha_and_none_keeps_it() -> None:
    spend, fixed = GateSettings(), GateSettings(look_correction="none")
    levels = [look_alpha(spend, k) for k in range(1, 100_001)]
    assert levels[0] == pytest.approx(0.05 * 6 / np.pi**2)
    assert all(a > b for a, b in itertools.pairwise(levels))
    assert sum(levels) < spend.alpha  # the union bound over every look a key will ever have
    assert sum(levels) > 0.999 * spend.alpha  # and no alpha left unused
    assert {look_alpha(fixed, k) for k in (1, 2, 24)} == {fixed.alpha}
    with pytest.raises(ValueError, match="look must be 1 or more"):
        look_alpha(spend, 0)


def test_a_later_look_needs_stronger_evidence(
    panel: Panel, baselines: dict[str, dict[str, Any]]
) -> None:
    """The same candidate, promoted on a key's first look, is refused on a later one: the
    baselines are tested at the spent level, and the report says which look it was."""
    cand = panel.model(0.15)
    first = decide(cand, baselines, None, GateSettings())
    assert first.promoted and first.look == {
        "number": 1,
        "alpha": look_alpha(GateSettings(), 1),
        "nominal_alpha": 0.05,
        "correction": "alpha_spending",
    }
    worst = max(c.detail["p_value"] for c in first.rule(RULE_BASELINES).checks)
    assert worst > 0  # the weakest comparison has a p-value a smaller level can fall below
    k = next(k for k in range(1, 1000) if look_alpha(GateSettings(), k) < worst)
    later = decide(cand, baselines, None, GateSettings(), look=k)
    assert later.decision == "reject" and later.deciding_rule == RULE_BASELINES
    assert later.look["number"] == k and later.look["alpha"] < worst
    assert f"decision {k} on this key" in render_markdown(later)
    worn = decide(cand, baselines, None, GateSettings(look_correction="none"), look=k)
    assert worn.promoted  # the old gate: the k-th look at 0.05 promotes it
    # the protective production test keeps the nominal level at every look
    prod = _check(later, RULE_PRODUCTION, "no_production")
    assert prod.passed


def test_registry_counts_every_look_even_after_pruning(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "registry", keep=1)
    key = "Energy/5d"
    assert reg.looks(key) == []
    for i in range(3):
        v = reg.register(key, {"model.bin": f"v{i}".encode()}, {}, version_id=f"v{i}")
        assert reg.record_look(key, {"version": v, "decision": "promote"}) == i + 1
        reg.promote(key, v)
    assert "v0" not in reg.list_versions(key)  # an older version was pruned …
    looks = reg.looks(key)
    assert [x["version"] for x in looks] == ["v0", "v1", "v2"]  # … their looks still count
    assert all("at" in x for x in looks)
