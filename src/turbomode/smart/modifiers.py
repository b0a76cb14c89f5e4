"""Signal modifiers: declarative boosts and penalties whose evidence is measured, not typed in.

A rule is a name, a kind (``boost`` or ``penalty``), a pattern over features and a value. The
value is a **multiplier** of the signal strength — a boost is > 1, a penalty in (0, 1) — so
rules compose with each other and with the tier multiplier by multiplication, in any order.

A pattern is one condition ``{feature, op, value}`` (op one of ``> >= < <= == !=``) or
``{all: [patterns]}`` / ``{any: [patterns]}``, nested freely. Feature names are checked
against the feature registry, so a typo fails when the rules load, not silently at night. A
feature that is NaN (not yet defined, e.g. during warm-up) makes its condition false.

Evidence (:func:`measure_evidence`) comes from a trades table (:mod:`turbomode.smart.trades`)
restricted to the training span: trades whose signal date is on or after ``start`` and whose
outcome was known by ``end`` (exit date ≤ end). ``n`` is the number of trades the pattern
matches, ``win_rate`` their win rate, ``base_win_rate`` that of every trade in the span. A rule
is **active** only when n ≥ ``modifier_min_samples`` and its win rate differs from the base
rate by at least ``modifier_min_edge`` in its own direction (above for a boost, below for a
penalty); otherwise it is inactive and says why. :func:`apply_modifiers` refuses a rule that
was never measured.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from turbomode.config import SmartSettings
from turbomode.smart.trades import normalize_trades
from turbomode.smart.types import SmartInputError

RuleKind = Literal["boost", "penalty"]
RULE_KINDS: tuple[RuleKind, ...] = ("boost", "penalty")
OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
STRENGTH_RANGE = (0.0, 100.0)


# --- patterns ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``feature op value``, e.g. rsi_14 > 70."""

    feature: str
    op: str
    value: float


@dataclass(frozen=True)
class AllOf:
    """True when every part is true."""

    parts: tuple[Pattern, ...]


@dataclass(frozen=True)
class AnyOf:
    """True when at least one part is true."""

    parts: tuple[Pattern, ...]


Pattern = Condition | AllOf | AnyOf


def pattern_features(pattern: Pattern) -> set[str]:
    """Every feature name a pattern reads."""
    if isinstance(pattern, Condition):
        return {pattern.feature}
    return set().union(*(pattern_features(p) for p in pattern.parts))


def parse_pattern(obj: Any, known_features: Iterable[str] | None = None) -> Pattern:
    """A pattern from its YAML form; unknown keys, ops or features raise
    :class:`SmartInputError` with the offending text (and near names for a feature typo)."""
    pattern = _parse(obj)
    known = set(_known(known_features))
    unknown = sorted(pattern_features(pattern) - known)
    if unknown:
        import difflib

        hints = [
            f"{n!r} → did you mean {close}?"
            for n in unknown
            if (close := difflib.get_close_matches(n, known, n=2))
        ]
        msg = f"unknown feature(s) {unknown}"
        raise SmartInputError(msg + ("; " + "; ".join(hints) if hints else ""))
    return pattern


def _parse(obj: Any) -> Pattern:
    if not isinstance(obj, Mapping):
        raise SmartInputError(f"a pattern must be a mapping, got {obj!r}")
    keys = set(obj)
    for combinator, cls in (("all", AllOf), ("any", AnyOf)):
        if keys == {combinator}:
            parts = obj[combinator]
            if not isinstance(parts, list) or not parts:
                raise SmartInputError(f"'{combinator}' needs a non-empty list of patterns")
            return cls(tuple(_parse(p) for p in parts))
    if keys != {"feature", "op", "value"}:
        raise SmartInputError(
            f"a pattern is {{feature, op, value}} or {{all: [...]}} / {{any: [...]}}; "
            f"got keys {sorted(keys)}"
        )
    if obj["op"] not in OPS:
        raise SmartInputError(f"unknown op {obj['op']!r}; use one of {list(OPS)}")
    value = obj["value"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SmartInputError(f"condition on {obj['feature']!r}: value must be a finite number")
    return Condition(str(obj["feature"]), str(obj["op"]), float(value))


def _known(known_features: Iterable[str] | None) -> list[str]:
    if known_features is not None:
        return list(known_features)
    from turbomode.features.registry import select_features

    return select_features()


def matches(pattern: Pattern, row: Mapping[str, float]) -> bool:
    """Whether one row of features matches; a feature missing from the row is an error (the
    scan would otherwise silently never apply the rule), NaN is false."""
    if isinstance(pattern, Condition):
        if pattern.feature not in row:
            raise SmartInputError(f"feature {pattern.feature!r} missing from the features row")
        x = float(row[pattern.feature])
        return not math.isnan(x) and bool(OPS[pattern.op](x, pattern.value))
    if isinstance(pattern, AllOf):
        return all(matches(p, row) for p in pattern.parts)
    return any(matches(p, row) for p in pattern.parts)


def match_frame(pattern: Pattern, frame: pd.DataFrame) -> np.ndarray:
    """:func:`matches` for every row of a frame at once (boolean array); NaN is false."""
    if isinstance(pattern, Condition):
        if pattern.feature not in frame.columns:
            raise SmartInputError(f"feature {pattern.feature!r} missing from the trades table")
        x = frame[pattern.feature].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return np.asarray(~np.isnan(x) & OPS[pattern.op](x, pattern.value), dtype=bool)
    parts = [match_frame(p, frame) for p in pattern.parts]
    reduce = np.logical_and.reduce if isinstance(pattern, AllOf) else np.logical_or.reduce
    return np.asarray(reduce(parts), dtype=bool)


# --- rules and evidence --------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What the training span says about a rule: ``n`` matching trades with ``wins`` wins,
    beside the base rate of all ``base_n`` trades in ``start..end``. ``reason`` says why an
    inactive rule is inactive."""

    n: int
    wins: int
    win_rate: float
    base_n: int
    base_win_rate: float
    start: date
    end: date
    active: bool
    reason: str | None = None


@dataclass(frozen=True)
class ModifierRule:
    """A boost (value > 1) or penalty (0 < value < 1) multiplier of strength when ``pattern``
    matches; ``evidence`` is None until :func:`measure_evidence` has measured it."""

    name: str
    kind: RuleKind
    pattern: Pattern
    value: float
    description: str = ""
    evidence: Evidence | None = None

    def __post_init__(self) -> None:
        if not self.name or ";" in self.name:
            raise SmartInputError(f"rule name {self.name!r} must be non-empty without ';'")
        if self.kind not in RULE_KINDS:
            raise SmartInputError(f"rule {self.name!r}: kind must be one of {RULE_KINDS}")
        v = float(self.value)
        if not math.isfinite(v) or (self.kind == "boost" and not v > 1.0):
            raise SmartInputError(f"rule {self.name!r}: a boost multiplier must be > 1, got {v}")
        if self.kind == "penalty" and not 0.0 < v < 1.0:
            raise SmartInputError(
                f"rule {self.name!r}: a penalty multiplier must lie in (0, 1), got {v}"
            )

    @property
    def active(self) -> bool:
        """Measured and supported by the evidence."""
        return self.evidence is not None and self.evidence.active


def _span(trades: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    if start > end:
        raise SmartInputError(f"training span start {start} is after its end {end}")
    t = normalize_trades(trades)
    keep = (t["signal_date"] >= pd.Timestamp(start)) & (t["exit_date"] <= pd.Timestamp(end))
    return t.loc[keep]


def measure_evidence(
    rule: ModifierRule,
    trades: pd.DataFrame,
    start: date,
    end: date,
    settings: SmartSettings | None = None,
) -> Evidence:
    """Measure a rule on the trades of the training span and decide whether it is active,
    as the module docstring documents."""
    s = settings or SmartSettings()
    span = _span(trades, start, end)
    base_n = len(span)
    base_wins = int(span["win"].sum())
    base_rate = base_wins / base_n if base_n else math.nan
    hit = match_frame(rule.pattern, span) if base_n else np.zeros(0, dtype=bool)
    n = int(hit.sum())
    wins = int(span["win"].to_numpy()[hit].sum())
    rate = wins / n if n else math.nan
    reason: str | None = None
    if n < s.modifier_min_samples:
        reason = f"too few samples: {n} < {s.modifier_min_samples} in {start}..{end}"
    else:
        edge = rate - base_rate if rule.kind == "boost" else base_rate - rate
        if edge < s.modifier_min_edge - 1e-12:
            where = "above" if rule.kind == "boost" else "below"
            reason = (
                f"win rate {rate:.3f} is not {s.modifier_min_edge:.3f} {where} the base rate "
                f"{base_rate:.3f} (n={n})"
            )
    return Evidence(n, wins, rate, base_n, base_rate, start, end, reason is None, reason)


def calibrate_rules(
    rules: Sequence[ModifierRule],
    trades: pd.DataFrame,
    start: date,
    end: date,
    settings: SmartSettings | None = None,
) -> list[ModifierRule]:
    """Every rule with its evidence measured on ``start..end`` (the training span)."""
    return [replace(r, evidence=measure_evidence(r, trades, start, end, settings)) for r in rules]


def apply_modifiers(
    strength: float,
    features: Mapping[str, float],
    rules: Sequence[ModifierRule],
    penalties_only: bool = False,
) -> tuple[float, tuple[str, ...]]:
    """Multiply ``strength`` (0–100) by every active matching rule (only penalties when
    ``penalties_only``), clip to 0–100, and name the rules applied, in rule order."""
    x = float(strength)
    lo, hi = STRENGTH_RANGE
    if not (math.isfinite(x) and lo <= x <= hi):
        raise SmartInputError(f"strength must lie in [{lo:g}, {hi:g}], got {strength!r}")
    applied: list[str] = []
    for rule in rules:
        if rule.evidence is None:
            raise SmartInputError(
                f"rule {rule.name!r} has no measured evidence; run calibrate_rules first"
            )
        if not rule.active or (penalties_only and rule.kind == "boost"):
            continue
        if matches(rule.pattern, features):
            x *= rule.value
            applied.append(rule.name)
    return min(max(x, lo), hi), tuple(applied)


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSet:
    """The rules that loaded, and one message per rule that did not."""

    rules: tuple[ModifierRule, ...]
    errors: tuple[str, ...]


_RULE_KEYS = {"name", "kind", "value", "when", "description"}


def _rule(obj: Any, known: list[str]) -> ModifierRule:
    if not isinstance(obj, Mapping):
        raise SmartInputError(f"a rule must be a mapping, got {obj!r}")
    if "evidence" in obj:
        raise SmartInputError("evidence is measured from the trades table, not typed in")
    missing = sorted({"name", "kind", "value", "when"} - set(obj))
    extra = sorted(set(obj) - _RULE_KEYS)
    if missing or extra:
        raise SmartInputError(f"missing keys {missing}, unknown keys {extra}")
    value = obj["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SmartInputError(f"value must be a number, got {value!r}")
    return ModifierRule(
        name=str(obj["name"]),
        kind=obj["kind"],
        pattern=parse_pattern(obj["when"], known),
        value=float(value),
        description=str(obj.get("description", "")),
    )


def load_rules(
    source: Path | str | Mapping[str, Any] | list[Any],
    known_features: Iterable[str] | None = None,
) -> RuleSet:
    """Rules from a YAML file (a path), YAML text (a string with a newline), or the parsed
    object: a list of rules or a
    mapping with a ``rules`` list. Each rule is ``{name, kind, value, when, description?}``.
    A bad rule becomes one error message naming it and the good rules still load; a file that
    is not a list of rules at all raises :class:`SmartInputError`."""
    data: Any = source
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
        path = Path(source)
        if not path.exists():
            raise SmartInputError(f"rules file {path} not found")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    elif isinstance(source, str):
        data = yaml.safe_load(source)
    if isinstance(data, Mapping):
        data = data.get("rules")
    if not isinstance(data, list):
        raise SmartInputError("modifier rules must be a list, or a mapping with a 'rules' list")
    known = _known(known_features)
    rules: list[ModifierRule] = []
    errors: list[str] = []
    seen: set[str] = set()
    for i, obj in enumerate(data, start=1):
        name = obj.get("name", "?") if isinstance(obj, Mapping) else "?"
        try:
            rule = _rule(obj, known)
            if rule.name in seen:
                raise SmartInputError("duplicate rule name")
        except SmartInputError as err:
            errors.append(f"rule #{i} {name!r}: {err}")
            continue
        seen.add(rule.name)
        rules.append(rule)
    return RuleSet(tuple(rules), tuple(errors))
