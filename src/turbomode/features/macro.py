"""Macro context as it was known on each day: levels, changes and surprises of the macro series,
from their vintages (the table of :mod:`turbomode.data.macro`).

**Point in time.** A feature at market date t reads only rows released on or before t: of each
observation, the newest value published by then. A revision published after t is invisible at
t, and so is an observation not yet released, whatever period it describes.

**How.** Per series, its release dates (the distinct ``realtime_start``) are walked in order;
each applies its rows to the observations known so far, and the features are computed from
that state — and from the state just before it, for the surprises ("what the newest release
changed"). A market date takes the values of the newest release on or before it, unless that
release is older than :data:`MAX_AGE_DAYS` (the series stopped arriving: NaN). Nothing depends
on which market dates exist, so a nightly increment computes the very values of a full build.

Lookbacks count observations, not days: "20 observations earlier" is the 20th published value
before the newest (a day without a value, such as a bond-market holiday, is skipped); weekly
and monthly series have no gaps, so 4, 52 or 12 observations are 4 weeks, a year, a year.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from turbomode.features.indicators import Array
from turbomode.features.layout import Column, Layout
from turbomode.features.registry import feature

MAX_AGE_DAYS: dict[str, int] = {"curve": 7, "claims": 14, "money": 45, "manufacturing": 45}
"""Calendar days a release stays usable: a daily series posts every business day, a weekly one
every week, a monthly one every 4–5 weeks; older than this, the series has stopped arriving."""

MACRO_NEEDS = "macro:"
"""Prefix of a macro feature's ``needs``: ``macro:<role>``."""


def _macro(name: str, role: str, description: str) -> str:
    return feature(name, "macro", description, (f"{MACRO_NEEDS}{role}",))


MACRO: list[str] = [
    _macro("macro_curve_level", "curve", "10-year minus 2-year Treasury yield, pp, newest value."),
    _macro("macro_curve_chg_20", "curve", "10y−2y spread change over its last 20 observations."),
    _macro(
        "macro_claims_4wk_chg",
        "claims",
        "Initial jobless claims: 4-week average / the one 4 weeks earlier − 1.",
    ),
    _macro("macro_claims_yoy", "claims", "Claims' 4-week average / the one 52 weeks earlier − 1."),
    _macro(
        "macro_claims_surprise",
        "claims",
        "Newest claims print / the 4-week average published before it − 1.",
    ),
    _macro("macro_claims_age", "claims", "Calendar days since the newest claims release."),
    _macro("macro_m2_yoy", "money", "M2 money supply year-on-year growth (12 months)."),
    _macro("macro_m2_yoy_chg_3", "money", "M2 year-on-year growth minus its value 3 months back."),
    _macro(
        "macro_m2_surprise",
        "money",
        "M2 year-on-year growth minus what it was before the newest release.",
    ),
    _macro("macro_m2_age", "money", "Calendar days since the newest M2 release."),
    _macro("macro_mfg_level", "manufacturing", "Manufacturing activity diffusion index, newest."),
    _macro("macro_mfg_chg_3", "manufacturing", "Manufacturing index change over 3 months."),
    _macro(
        "macro_mfg_surprise",
        "manufacturing",
        "Newest manufacturing print minus the newest value published before it.",
    ),
    _macro("macro_mfg_age", "manufacturing", "Days since the newest manufacturing release."),
]

# ---- the features of one state (the newest `lookback` values known), per role -----------------
State = npt.NDArray[np.float64]
Formula = Callable[[State, State], float]


def _back(v: State, k: int) -> float:
    """The value ``k`` observations before the newest (NaN when not that many)."""
    return float(v[-1 - k]) if len(v) > k else np.nan


def _mean(v: State, end: int, n: int) -> float:
    """Mean of the ``n`` values ending ``end`` observations before the newest."""
    if len(v) < end + n:
        return np.nan
    return float(v[len(v) - end - n : len(v) - end].mean())


def _yoy(v: State, k: int = 0) -> float:
    return _back(v, k) / _back(v, k + 12) - 1.0


@dataclass(frozen=True)
class RoleSpec:
    """A role's features: each a formula of (the state now, the state before the release),
    both arrays of the newest ``lookback`` published values, oldest first."""

    lookback: int
    formulas: dict[str, Formula]
    age: str | None = None


ROLES: dict[str, RoleSpec] = {
    "curve": RoleSpec(
        21,
        {
            "macro_curve_level": lambda v, p: _back(v, 0),
            "macro_curve_chg_20": lambda v, p: _back(v, 0) - _back(v, 20),
        },
    ),
    "claims": RoleSpec(
        56,
        {
            "macro_claims_4wk_chg": lambda v, p: _mean(v, 0, 4) / _mean(v, 4, 4) - 1.0,
            "macro_claims_yoy": lambda v, p: _mean(v, 0, 4) / _mean(v, 52, 4) - 1.0,
            "macro_claims_surprise": lambda v, p: _back(v, 0) / _mean(p, 0, 4) - 1.0,
        },
        age="macro_claims_age",
    ),
    "money": RoleSpec(
        16,
        {
            "macro_m2_yoy": lambda v, p: _yoy(v),
            "macro_m2_yoy_chg_3": lambda v, p: _yoy(v) - _yoy(v, 3),
            "macro_m2_surprise": lambda v, p: _yoy(v) - _yoy(p),
        },
        age="macro_m2_age",
    ),
    "manufacturing": RoleSpec(
        4,
        {
            "macro_mfg_level": lambda v, p: _back(v, 0),
            "macro_mfg_chg_3": lambda v, p: _back(v, 0) - _back(v, 3),
            "macro_mfg_surprise": lambda v, p: _back(v, 0) - _back(p, 0),
        },
        age="macro_mfg_age",
    ),
}


# ---- walking the releases ----------------------------------------------------------------------
@dataclass(frozen=True)
class Releases:
    """One role's features after each of its releases."""

    dates: npt.NDArray[np.datetime64]
    values: dict[str, Array]


def _tail(vals: Array, last: int, n: int) -> State:
    """The newest ``n`` published values up to position ``last``, oldest first."""
    lo = max(0, last + 1 - 3 * n)
    seg = vals[lo : last + 1]
    seg = seg[~np.isnan(seg)]
    if len(seg) < n and lo > 0:
        seg = vals[: last + 1]
        seg = seg[~np.isnan(seg)]
    return seg[-n:]


def walk_releases(rows: pd.DataFrame, spec: RoleSpec) -> Releases:
    """Apply one role's vintage rows release by release (see the module doc)."""
    rows = rows.sort_values(["realtime_start", "date"], kind="stable")
    obs_dates, obs_pos = np.unique(
        rows["date"].to_numpy(dtype="datetime64[ns]"), return_inverse=True
    )
    starts = rows["realtime_start"].to_numpy(dtype="datetime64[ns]")
    values = rows["value"].to_numpy(dtype=np.float64)
    release_dates, first_row = np.unique(starts, return_index=True)
    bounds = np.r_[first_row, len(rows)]
    vals = np.full(len(obs_dates), np.nan)
    out = {name: np.full(len(release_dates), np.nan) for name in spec.formulas}
    empty: State = np.empty(0)
    before = empty
    last = -1
    for k in range(len(release_dates)):
        pos = obs_pos[bounds[k] : bounds[k + 1]]
        vals[pos] = values[bounds[k] : bounds[k + 1]]
        published = pos[~np.isnan(vals[pos])]
        if len(published):
            last = max(last, int(published.max()))
        if last >= 0 and np.isnan(vals[last]):  # the newest was withdrawn
            known = np.flatnonzero(~np.isnan(vals[: last + 1]))
            last = int(known[-1]) if len(known) else -1
        now = _tail(vals, last, spec.lookback) if last >= 0 else empty
        if len(now):
            for name, formula in spec.formulas.items():
                out[name][k] = formula(now, before)
        before = now
    return Releases(release_dates, out)


class MacroContext:
    """Macro vintages by role, each walked once; values looked up by market date."""

    def __init__(self, macro: pd.DataFrame | None) -> None:
        self._releases: dict[str, Releases] = {}
        if macro is None or macro.empty:
            return
        frame = macro.assign(
            date=pd.to_datetime(macro["date"]),
            realtime_start=pd.to_datetime(macro["realtime_start"]),
        )
        for role, rows in frame.groupby("series", sort=True):
            if role in ROLES:
                self._releases[str(role)] = walk_releases(rows, ROLES[str(role)])

    @property
    def roles(self) -> set[str]:
        return set(self._releases)

    def on_dates(self, dates: npt.NDArray[np.datetime64]) -> dict[str, Array]:
        """Every macro feature on each of ``dates`` (NaN where its series is absent, not yet
        released, or stale)."""
        dates = np.asarray(dates, dtype="datetime64[ns]")
        out = {name: np.full(len(dates), np.nan) for name in MACRO}
        for role, rel in self._releases.items():
            spec = ROLES[role]
            k = np.searchsorted(rel.dates, dates, side="right") - 1
            ok = k >= 0
            age = np.full(len(dates), np.nan)
            age[ok] = (dates[ok] - rel.dates[k[ok]]) / np.timedelta64(1, "D")
            ok &= age <= MAX_AGE_DAYS[role]
            for name, series in rel.values.items():
                out[name][ok] = series[k[ok]]
            if spec.age is not None:
                out[spec.age][ok] = age[ok]
        return out


def macro_features(layout: Layout, ctx: MacroContext) -> dict[str, Column]:
    """The macro family: one value per date, as columns of ``layout``'s rows."""
    return {k: layout.per_date(v) for k, v in ctx.on_dates(layout.dates).items()}
