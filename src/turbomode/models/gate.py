"""The promotion gate: a candidate replaces production only on out-of-time evidence.

Everyone — candidate, baselines, the current production model — is evaluated on the *same*
rows of the same out-of-time window (:func:`turbomode.models.evaluation.evaluate` with
``include_daily=True``); :func:`decide` refuses inputs that are not. The rules, in the order
they are reported (the first failing one decides):

1. ``min_days`` — enough test days for a daily test to mean anything.
2. ``floors`` — absolute quality: mean rank IC and balanced accuracy (profile ``honest``), or the
   legacy targets applied to balanced accuracy and BUY/SELL precision/recall (``legacy``).
3. ``beats_baselines`` — better than every baseline on daily rank IC (one-sided paired test
   p < alpha_k *and* block-bootstrap CI lower bound > 0) *and* on pooled balanced accuracy
   (paired block bootstrap over days: CI lower bound > 0 *and* share of resampled
   differences ≤ 0 at most alpha_k). alpha_k is the level of the k-th decision on this key
   (:func:`look_alpha`): a key is gated again at every retrain, on windows that mostly
   overlap, and alpha spent over those looks keeps the chance that it *ever* promotes a
   model without edge below alpha.
4. ``not_worse_than_production`` — no point drop beyond a tolerance, and no significant drop
   (the same two tests, production − candidate); passes (and says so) when there is no
   production model.

Why balanced accuracy is tested pooled: models are trained per sector, so a day has only
~7–70 names and often lacks a class. A day's balanced accuracy averages recall over the
classes present that day, so a constant predictor (always HOLD: the majority baseline, and the
prior baseline's argmax) scores 1/2 on a day without BUYs and 1 on an all-HOLD day; its mean
daily balanced accuracy sits well above its pooled 1/3, and real candidates with pooled 0.38
and rank IC t > 4 were rejected against it. The pooled figure (the one reported in
``classification``) has no such bias, so the bootstrap resamples days but sums their per-class
counts (:func:`turbomode.models.evaluation.paired_pooled_bootstrap`). Daily rank IC is a
correlation within each day, unbiased per day, and stays a day-by-day test.

Absolute requirements come before comparisons so the deciding rule names the most basic
shortfall: a candidate with IC 0.003 is "below the IC floor", which says more than "not
significantly better than always-HOLD". Every rule is still computed and reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from turbomode.config import GateSettings
from turbomode.errors import TurboModeError
from turbomode.models.evaluation import (
    CLASS_NAMES,
    paired_daily_test,
    paired_pooled_bootstrap,
    to_jsonable,
)
from turbomode.models.registry import ModelRegistry

__all__ = [
    "ALL_PASSED",
    "RULE_BASELINES",
    "RULE_FLOORS",
    "RULE_MIN_DAYS",
    "RULE_PRODUCTION",
    "Check",
    "GateInputError",
    "GateReport",
    "RuleResult",
    "apply_decision",
    "decide",
    "look_alpha",
    "render_markdown",
]

log = logging.getLogger(__name__)

RULE_MIN_DAYS = "min_days"
RULE_FLOORS = "floors"
RULE_BASELINES = "beats_baselines"
RULE_PRODUCTION = "not_worse_than_production"
ALL_PASSED = "all rules passed"

Decision = Literal["promote", "reject"]
_METRICS: tuple[tuple[str, str], ...] = (
    ("ic", "daily rank IC"),
    ("balanced_accuracy", "pooled balanced accuracy"),
)
_POOLED = "pooled_block_bootstrap"


class GateInputError(TurboModeError, ValueError):
    """The evaluations cannot be compared: no daily series, or not the same rows."""


@dataclass(frozen=True)
class Check:
    """One comparison behind a rule: the number, the bar, the verdict and what led to it.

    ``op`` reads as ``value op threshold``; for paired tests it is ``"significantly >"`` and
    ``detail`` holds the test (p-value, CI, t, days, both means).
    """

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    op: str
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class RuleResult:
    """A rule passes when every one of its checks does."""

    name: str
    passed: bool
    checks: list[Check]
    note: str = ""

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)


@dataclass(frozen=True)
class GateReport:
    """What the gate decided and every number it decided on (JSON via :meth:`to_dict`)."""

    decision: Decision
    deciding_rule: str
    deciding_check: str | None
    reason: str
    profile: str
    window: dict[str, Any]
    rules: list[RuleResult]
    settings: dict[str, Any]
    look: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.decision == "promote"

    def rule(self, name: str) -> RuleResult:
        """The result of one rule by name (KeyError if the gate has no such rule)."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (NaN/inf were turned into None when the report was built)."""
        out: dict[str, Any] = to_jsonable(asdict(self))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        """Rebuild a report from :meth:`to_dict` output (e.g. read back from a manifest)."""
        rules = [
            RuleResult(
                name=r["name"],
                passed=bool(r["passed"]),
                checks=[Check(**c) for c in r["checks"]],
                note=r.get("note", ""),
            )
            for r in data["rules"]
        ]
        decision = data["decision"]
        if decision not in ("promote", "reject"):
            raise ValueError(f"unknown gate decision {decision!r}")
        return cls(
            decision=decision,
            deciding_rule=data["deciding_rule"],
            deciding_check=data.get("deciding_check"),
            reason=data["reason"],
            profile=data["profile"],
            window=dict(data["window"]),
            rules=rules,
            settings=dict(data["settings"]),
            look=dict(data.get("look") or {}),
        )


# --------------------------------------------------------------------------- inputs


def _num(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _daily(ev: Mapping[str, Any], metric: str, who: str) -> pd.Series:
    daily = ev.get("daily")
    if not isinstance(daily, Mapping) or metric not in daily:
        raise GateInputError(
            f"the {who} evaluation has no daily {metric!r} series; evaluate it with "
            "metrics.evaluate(..., include_daily=True)"
        )
    values = {str(k): (np.nan if v is None else float(v)) for k, v in daily[metric].items()}
    return pd.Series(values, dtype=float).sort_index()


def _counts(ev: Mapping[str, Any], who: str) -> Mapping[str, Any]:
    daily = ev.get("daily")
    counts = daily.get("class_counts") if isinstance(daily, Mapping) else None
    if not isinstance(counts, Mapping):
        raise GateInputError(
            f"the {who} evaluation has no daily class counts (needed for pooled balanced "
            "accuracy); evaluate it with metrics.evaluate(..., include_daily=True)"
        )
    return counts


def _signature(ev: Mapping[str, Any], who: str) -> tuple[int, tuple[int, ...], tuple[str, ...]]:
    """Rows, class supports and dates: equal for evaluations made on the same rows."""
    try:
        cls = ev["classification"]
        n = int(cls["n"])
        support = tuple(int(cls["per_class"][c]["support"]) for c in CLASS_NAMES)
    except (KeyError, TypeError) as exc:
        raise GateInputError(
            f"the {who} evaluation is not a metrics.evaluate result (missing {exc})"
        ) from None
    dates = tuple(_daily(ev, "balanced_accuracy", who).index)
    return n, support, dates


def _same_window(
    candidate: Mapping[str, Any], others: Mapping[str, Mapping[str, Any]]
) -> tuple[int, tuple[str, ...]]:
    n, support, dates = _signature(candidate, "candidate")
    for who, ev in others.items():
        n2, support2, dates2 = _signature(ev, who)
        if (n2, support2, dates2) != (n, support, dates):
            what = (
                f"{n2} rows vs the candidate's {n}"
                if n2 != n
                else f"class supports {support2} vs {support}"
                if support2 != support
                else f"{len(dates2)} dates ({dates2[:1]}…{dates2[-1:]}) vs "
                f"{len(dates)} ({dates[:1]}…{dates[-1:]})"
            )
            raise GateInputError(
                f"the {who} evaluation is not on the candidate's out-of-time window: {what}; "
                "evaluate every model and baseline on the same rows"
            )
    return n, dates


def _get(ev: Mapping[str, Any], *path: str) -> float | None:
    d: Any = ev
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return _num(d)


# --------------------------------------------------------------------------- checks


def _floor(name: str, value: float | None, threshold: float) -> Check:
    passed = value is not None and value >= threshold
    note = "" if value is not None else "undefined (e.g. the class is never predicted)"
    return Check(name, passed, value, threshold, ">=", note=note)


def _paired(
    name: str,
    a: pd.Series,
    b: pd.Series,
    settings: GateSettings,
    a_label: str,
    b_label: str,
) -> tuple[bool, dict[str, Any], str]:
    """Is ``a`` significantly above ``b``, day by day? (p < alpha and CI low > 0)."""
    a_al, b_al = a.align(b, join="inner")
    both = a_al.notna() & b_al.notna()
    detail: dict[str, Any] = {
        f"{a_label}_mean": _num(a_al[both].mean()) if both.any() else None,
        f"{b_label}_mean": _num(b_al[both].mean()) if both.any() else None,
    }
    try:
        test = paired_daily_test(
            a_al,
            b_al,
            block_length=settings.block_length,
            n_boot=settings.n_boot,
            seed=settings.seed,
            alpha=settings.alpha,
        )
    except ValueError as exc:
        return False, detail, f"{name}: no test possible ({exc})"
    detail.update(test)
    significant = test["p_value"] < settings.alpha and test["ci_low"] > 0
    return significant, to_jsonable(detail), ""


def _pooled(
    name: str,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    settings: GateSettings,
    a_label: str,
    b_label: str,
) -> tuple[bool, dict[str, Any], str]:
    """Is ``a``'s pooled balanced accuracy significantly above ``b``'s? (CI low > 0 and
    bootstrap share ≤ 0 at most alpha)."""
    try:
        test = paired_pooled_bootstrap(
            a,
            b,
            block_length=settings.block_length,
            n_boot=settings.n_boot,
            seed=settings.seed,
            alpha=settings.alpha,
        )
    except ValueError as exc:
        return False, {}, f"{name}: no test possible ({exc})"
    detail: dict[str, Any] = {
        f"{a_label}_pooled": test.pop("a_value"),
        f"{b_label}_pooled": test.pop("b_value"),
        **test,
    }
    significant = test["ci_low"] > 0 and test["p_value"] <= settings.alpha
    return significant, to_jsonable(detail), ""


def _compare(
    metric: str,
    name: str,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    settings: GateSettings,
    labels: tuple[tuple[str, str], tuple[str, str]],
) -> tuple[bool, dict[str, Any], str]:
    """One metric, a above b: daily IC day by day, balanced accuracy pooled.

    ``labels`` is ((a's label, a's role for input errors), (b's ...)).
    """
    (a_label, a_who), (b_label, b_who) = labels
    if metric == "balanced_accuracy":
        return _pooled(name, _counts(a, a_who), _counts(b, b_who), settings, a_label, b_label)
    return _paired(
        name, _daily(a, metric, a_who), _daily(b, metric, b_who), settings, a_label, b_label
    )


def _rule_min_days(candidate: Mapping[str, Any], settings: GateSettings) -> RuleResult:
    ic = _daily(candidate, "ic", "candidate")
    bacc = _daily(candidate, "balanced_accuracy", "candidate")
    ic_al, bacc_al = ic.align(bacc, join="inner")
    n_days = int((ic_al.notna() & bacc_al.notna()).sum())
    check = Check(
        "n_days",
        n_days >= settings.min_days,
        float(n_days),
        float(settings.min_days),
        ">=",
        note="test days with both a daily rank IC and a daily balanced accuracy",
    )
    return RuleResult(RULE_MIN_DAYS, check.passed, [check])


def _rule_floors(candidate: Mapping[str, Any], settings: GateSettings) -> RuleResult:
    if settings.profile == "honest":
        checks = [
            _floor("mean_ic", _get(candidate, "rank_ic", "mean_ic"), settings.min_mean_ic),
            _floor(
                "balanced_accuracy",
                _get(candidate, "classification", "balanced_accuracy"),
                settings.min_balanced_accuracy,
            ),
        ]
        note = "honest profile: mean daily rank IC and balanced accuracy"
    else:
        checks = [
            _floor(
                "balanced_accuracy",
                _get(candidate, "classification", "balanced_accuracy"),
                settings.legacy_min_balanced_accuracy,
            )
        ]
        for cls in ("BUY", "SELL"):
            checks.append(
                _floor(
                    f"{cls}.precision",
                    _get(candidate, "classification", "per_class", cls, "precision"),
                    settings.legacy_min_precision,
                )
            )
            checks.append(
                _floor(
                    f"{cls}.recall",
                    _get(candidate, "classification", "per_class", cls, "recall"),
                    settings.legacy_min_recall,
                )
            )
        note = (
            "legacy profile: the old 60 % accuracy / 55 % precision / 55 % recall targets, "
            "applied to balanced accuracy and BUY/SELL precision and recall (never plain "
            "accuracy), in place of the honest floors"
        )
    return RuleResult(RULE_FLOORS, all(c.passed for c in checks), checks, note)


def _rule_baselines(
    candidate: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]],
    settings: GateSettings,
) -> RuleResult:
    names = list(settings.required_baselines) + [
        b for b in baselines if b not in settings.required_baselines
    ]
    checks: list[Check] = []
    for name in names:
        if name not in baselines:
            checks.append(
                Check(
                    f"{name}.present",
                    False,
                    None,
                    None,
                    "present",
                    note=f"required baseline {name!r} was not evaluated; the candidate cannot "
                    "be shown to beat it",
                )
            )
            continue
        for metric, label in _METRICS:
            ok, detail, note = _compare(
                metric,
                f"{name}.{metric}",
                candidate,
                baselines[name],
                settings,
                (("candidate", "candidate"), ("baseline", f"baseline {name!r}")),
            )
            checks.append(
                Check(
                    f"{name}.{metric}",
                    ok,
                    _num(detail.get("mean_diff")),
                    0.0,
                    "significantly >",
                    detail,
                    note or f"{label}: candidate − {name}",
                )
            )
    note = (
        f"against every baseline: daily rank IC by a one-sided paired test over days "
        f"(p < {settings.alpha:g} and block-bootstrap CI lower bound > 0); balanced accuracy "
        f"pooled over the window by a paired block bootstrap over days (CI lower bound > 0 "
        f"and share of resampled differences ≤ 0 at most {settings.alpha:g}), because daily "
        "balanced accuracy favours constant predictors on days missing a class"
    )
    return RuleResult(RULE_BASELINES, all(c.passed for c in checks), checks, note)


def _rule_production(
    candidate: Mapping[str, Any],
    production: Mapping[str, Any] | None,
    settings: GateSettings,
) -> RuleResult:
    if production is None:
        check = Check(
            "no_production", True, None, None, "none", note="no production model to compare"
        )
        return RuleResult(
            RULE_PRODUCTION, True, [check], "no production model: passes automatically"
        )
    checks: list[Check] = []
    points = (
        ("mean_ic", ("rank_ic", "mean_ic"), settings.production_ic_tolerance),
        (
            "balanced_accuracy",
            ("classification", "balanced_accuracy"),
            settings.production_balanced_accuracy_tolerance,
        ),
    )
    for name, path, tol in points:
        cand, prod = _get(candidate, *path), _get(production, *path)
        if prod is None:  # production's figure is undefined: nothing to fall short of
            passed, threshold = cand is not None, None
        else:
            threshold = prod - tol
            passed = cand is not None and cand >= threshold
        checks.append(
            Check(
                name,
                passed,
                cand,
                threshold,
                ">=",
                {"candidate": cand, "production": prod, "tolerance": tol},
                f"candidate ≥ production − {tol:g}",
            )
        )
    for metric, label in _METRICS:
        worse, detail, note = _compare(
            metric,
            f"{metric}.significantly_worse",
            production,
            candidate,
            settings,
            (("production", "production"), ("candidate", "candidate")),
        )
        checks.append(
            Check(
                f"{metric}.not_significantly_worse",
                not worse,
                _num(detail.get("mean_diff")),
                0.0,
                "not significantly >",
                detail,
                note or f"{label}: production − candidate must not be significantly > 0",
            )
        )
    note = "compared with the production model on the same window"
    return RuleResult(RULE_PRODUCTION, all(c.passed for c in checks), checks, note)


def _level(alpha: float) -> str:
    """A confidence level as people write it: 95%, 99.7%, 99.995%."""
    return f"{100 * (1 - alpha):.4g}%"


def _describe(check: Check) -> str:
    if check.op in ("significantly >", "not significantly >"):
        d = check.detail
        if "p_value" not in d:
            return check.note
        if d.get("test") == _POOLED:
            return (
                f"pooled difference {d['mean_diff']:+.4f} over {d['n_days']} days, bootstrap "
                f"share ≤ 0 = {d['p_value']:.3g}, {_level(d['alpha'])} block-bootstrap CI "
                f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
            )
        return (
            f"mean difference {d['mean_diff']:+.4f} over {d['n_days']} days, one-sided "
            f"p={d['p_value']:.3g}, {_level(d['alpha'])} block-bootstrap CI "
            f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
        )
    if check.op == ">=":
        value = "undefined" if check.value is None else f"{check.value:.4g}"
        bar = "—" if check.threshold is None else f"{check.threshold:.4g}"
        return f"{value} (needs ≥ {bar})"
    return check.note


# --------------------------------------------------------------------------- the gate


def look_alpha(settings: GateSettings, look: int) -> float:
    """The level at which the ``look``-th decision on one key tests the baselines.

    Under ``alpha_spending`` it is alpha · 6/(π² k²): 0.61·alpha for the first decision,
    0.15·alpha for the second, 0.0025·alpha for the 24th. The levels sum to alpha, so by the
    union bound the chance that any of the key's decisions promotes a model that does not beat
    the baselines is at most alpha, however much their test windows overlap — the monthly
    retrain cannot wear the gate down by asking again. The price: a key that has been refused
    many times needs much stronger evidence, so a real edge that appears late is promoted
    later.
    """
    if look < 1:
        raise ValueError(f"look must be 1 or more, got {look}")
    if settings.look_correction == "none":
        return settings.alpha
    return settings.alpha * 6.0 / (math.pi**2 * look**2)


def decide(
    candidate_eval: Mapping[str, Any],
    baseline_evals: Mapping[str, Mapping[str, Any]],
    production_eval: Mapping[str, Any] | None,
    settings: GateSettings | None = None,
    look: int = 1,
) -> GateReport:
    """Promote or reject one candidate for one (sector, horizon), with every number behind it.

    All evaluations must come from ``metrics.evaluate(..., include_daily=True)`` on the same
    rows (checked: row count, class supports and dates); otherwise :class:`GateInputError`,
    because a comparison across different windows is no evidence at all. ``look`` is how many
    decisions this key has had, this one included (the registry counts them,
    :meth:`~turbomode.models.registry.ModelRegistry.looks`); it sets the baselines' level.
    """
    settings = settings or GateSettings()
    level = look_alpha(settings, look)
    others: dict[str, Mapping[str, Any]] = {
        f"baseline {name!r}": ev for name, ev in baseline_evals.items()
    }
    if production_eval is not None:
        others["production"] = production_eval
    n_rows, dates = _same_window(candidate_eval, others)
    ic = _daily(candidate_eval, "ic", "candidate")
    window = {
        "first_date": dates[0] if dates else None,
        "last_date": dates[-1] if dates else None,
        "n_days": len(dates),
        "n_ic_days": int(ic.notna().sum()),
        "n_rows": n_rows,
    }
    rules = [
        _rule_min_days(candidate_eval, settings),
        _rule_floors(candidate_eval, settings),
        _rule_baselines(
            candidate_eval, baseline_evals, settings.model_copy(update={"alpha": level})
        ),
        _rule_production(candidate_eval, production_eval, settings),
    ]
    failed = next((r for r in rules if not r.passed), None)
    if failed is None:
        decision: Decision = "promote"
        deciding_rule, deciding_check = ALL_PASSED, None
        reason = ALL_PASSED
        if production_eval is None:
            reason += " (no production model: the production rule passed automatically)"
    else:
        decision = "reject"
        check = failed.first_failure()
        assert check is not None  # a failed rule has a failed check
        deciding_rule, deciding_check = failed.name, check.name
        reason = f"{failed.name}: {check.name} failed — {_describe(check)}"
    return GateReport(
        decision=decision,
        deciding_rule=deciding_rule,
        deciding_check=deciding_check,
        reason=reason,
        profile=settings.profile,
        window=window,
        rules=rules,
        settings=settings.model_dump(mode="json"),
        look={
            "number": look,
            "alpha": level,
            "nominal_alpha": settings.alpha,
            "correction": settings.look_correction,
        },
    )


def apply_decision(report: GateReport, registry: ModelRegistry, key: str, version: str) -> bool:
    """Promote ``version`` of ``key`` only when the gate said so; return whether it did.

    On reject the registry is not touched at all, so production stays what it was.
    """
    if report.decision != "promote":
        log.info("gate rejected %s %s: %s", key, version, report.reason)
        return False
    registry.promote(key, version)
    log.info("gate promoted %s %s (%s)", key, version, report.reason)
    return True


# --------------------------------------------------------------------------- rendering


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x).replace("|", "\\|")


def render_markdown(report: GateReport) -> str:
    """A human-readable report for the run log, the model card or a pull request."""
    w = report.window
    span = f"{w['first_date']} → {w['last_date']}"
    lines = [
        f"## Promotion gate: {report.decision.upper()}",
        "",
        f"- Profile: `{report.profile}`",
        f"- Window: {span} ({w['n_days']} days, {w['n_rows']} rows)",
        f"- Deciding rule: `{report.deciding_rule}`"
        + (f" (check `{report.deciding_check}`)" if report.deciding_check else ""),
        f"- Reason: {report.reason}",
    ]
    look = report.look
    if look:
        lines.append(
            f"- Look: decision {look['number']} on this key; baselines tested at "
            f"alpha {look['alpha']:.3g} (nominal {look['nominal_alpha']:g}, "
            f"correction `{look['correction']}`)"
        )
    lines.append("")
    for i, rule in enumerate(report.rules, 1):
        lines.append(f"### {i}. `{rule.name}` — {'pass' if rule.passed else 'FAIL'}")
        if rule.note:
            lines += ["", rule.note]
        lines += [
            "",
            "| check | pass | value | op | threshold | details |",
            "|---|---|---|---|---|---|",
        ]
        for c in rule.checks:
            details = _describe(c) if "p_value" in c.detail else c.note
            lines.append(
                f"| {_fmt(c.name)} | {'yes' if c.passed else '**no**'} | {_fmt(c.value)} | "
                f"{_fmt(c.op)} | {_fmt(c.threshold)} | {_fmt(details)} |"
            )
        lines.append("")
    return "\n".join(lines)
