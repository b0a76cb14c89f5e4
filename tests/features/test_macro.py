"""Macro features as known on each day: a value is invisible before its release, a revision
published later changes nothing earlier, and on the synthetic market every macro feature
equals an independent computation that re-reads the vintages date by date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from turbomode.config import SyntheticSettings
from turbomode.data.sources.synthetic import generate_market
from turbomode.features import REGISTRY, build_features
from turbomode.features.macro import MACRO, MAX_AGE_DAYS, MacroContext
from turbomode.features.registry import model_feature_names


@pytest.fixture(scope="module")
def md():
    return generate_market(SyntheticSettings(n_symbols=11, n_days=700))


@pytest.fixture(scope="module")
def calendar(md) -> np.ndarray:
    return np.sort(md.prices["date"].unique())


def on(macro: pd.DataFrame, days: np.ndarray | list[str]) -> pd.DataFrame:
    days = np.asarray(pd.to_datetime(days), dtype="datetime64[ns]")
    return pd.DataFrame(MacroContext(macro).on_dates(days), index=pd.DatetimeIndex(days))


# ---- the independent computation: re-read the vintages as of each date ------------------------
def known_on(rows: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    """Each observation's newest value released by ``day`` (withdrawn ones dropped), by date."""
    seen = rows[rows["realtime_start"] <= day].sort_values(["date", "realtime_start"])
    newest = seen.groupby("date").tail(1).set_index("date")["value"]
    return newest.dropna().sort_index()


def reference(macro: pd.DataFrame, day: pd.Timestamp) -> dict[str, float]:
    out = dict.fromkeys(MACRO, np.nan)

    def at(s: pd.Series, k: int) -> float:  # k observations before the newest
        return float(s.iloc[-1 - k]) if len(s) > k else np.nan

    def mean(s: pd.Series, end: int, n: int) -> float:
        return (
            float(s.iloc[len(s) - end - n : len(s) - end].mean()) if len(s) >= end + n else np.nan
        )

    def yoy(s: pd.Series, k: int = 0) -> float:
        return at(s, k) / at(s, k + 12) - 1

    for role, rows in macro.groupby("series"):
        released = rows.loc[rows["realtime_start"] <= day, "realtime_start"]
        if released.empty:
            continue
        newest = released.max()
        age = (day - newest).days
        if age > MAX_AGE_DAYS[role]:
            continue
        s = known_on(rows, day)
        before = known_on(rows, newest - pd.Timedelta(days=1))
        if s.empty:
            continue
        if role == "curve":
            out["macro_curve_level"] = at(s, 0)
            out["macro_curve_chg_20"] = at(s, 0) - at(s, 20)
        elif role == "claims":
            out["macro_claims_4wk_chg"] = mean(s, 0, 4) / mean(s, 4, 4) - 1
            out["macro_claims_yoy"] = mean(s, 0, 4) / mean(s, 52, 4) - 1
            out["macro_claims_surprise"] = at(s, 0) / mean(before, 0, 4) - 1
            out["macro_claims_age"] = age
        elif role == "money":
            out["macro_m2_yoy"] = yoy(s)
            out["macro_m2_yoy_chg_3"] = yoy(s) - yoy(s, 3)
            out["macro_m2_surprise"] = yoy(s) - yoy(before)
            out["macro_m2_age"] = age
        else:
            out["macro_mfg_level"] = at(s, 0)
            out["macro_mfg_chg_3"] = at(s, 0) - at(s, 3)
            out["macro_mfg_surprise"] = at(s, 0) - at(before, 0)
            out["macro_mfg_age"] = age
    return out


def test_every_macro_feature_against_an_independent_computation(md, calendar) -> None:
    """On the synthetic market: 150 random market dates, every release date of the monthly
    series and the day before each, through the engine (build_features)."""
    rng = np.random.default_rng(0)
    money = md.macro[md.macro["series"] == "money"]["realtime_start"].unique()
    survey = md.macro[md.macro["series"] == "manufacturing"]["realtime_start"].unique()
    special = pd.DatetimeIndex(np.r_[money, survey])
    special = special.union(special - pd.Timedelta(days=1))
    days = pd.DatetimeIndex(rng.choice(calendar, 150, replace=False)).union(
        special[special.isin(calendar)]
    )
    built = build_features(md.prices, md.market, md.universe.sector_map(), macro=md.macro)
    per_date = built.frame.drop_duplicates("date").set_index("date")[MACRO]
    want = pd.DataFrame([reference(md.macro, d) for d in days], index=days)
    got = per_date.loc[days].astype(np.float64)
    for name in MACRO:
        np.testing.assert_allclose(
            got[name].to_numpy(), want[name].to_numpy(), rtol=2e-6, equal_nan=True, err_msg=name
        )
    assert want.notna().mean().min() > 0.5  # the comparison is not between NaNs


def test_a_value_is_invisible_before_its_release(md) -> None:
    macro = md.macro
    row = macro[macro["series"] == "money"].iloc[30]  # a first print, mid-history
    release = row["realtime_start"]
    without = macro.drop(index=row.name)
    a, b = on(macro, [release - pd.Timedelta(days=1), release]), on(without, [release])
    m2 = ["macro_m2_yoy", "macro_m2_yoy_chg_3", "macro_m2_surprise"]
    day_before = on(without, [release - pd.Timedelta(days=1)])
    pd.testing.assert_frame_equal(a.iloc[[0]], day_before)  # not known the day before
    assert not np.allclose(a.iloc[1][m2].to_numpy(), b.iloc[0][m2].to_numpy())  # known on it


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day=st.integers(60, 680), seed=st.integers(0, 2**16), shift=st.integers(1, 400))
def test_a_later_revision_changes_nothing_earlier(md, calendar, day, seed, shift) -> None:
    """Revise any observations (old ones included) on a date after t, change every value
    released after t: nothing at or before t moves."""
    t = pd.Timestamp(calendar[day])
    rng = np.random.default_rng(seed)
    macro = md.macro
    picked = macro[macro["realtime_start"] <= t].sample(n=12, random_state=seed)
    revisions = picked.assign(
        realtime_start=t + pd.Timedelta(days=shift), value=picked["value"] * rng.uniform(0.5, 2.0)
    )
    revised = pd.concat([macro, revisions]).drop_duplicates(
        ["series", "date", "realtime_start"], keep="last"
    )
    later = revised["realtime_start"] > t
    revised.loc[later, "value"] = revised.loc[later, "value"] + rng.normal(0, 5, later.sum())
    days = calendar[max(0, day - 30) : day + 1]
    pd.testing.assert_frame_equal(on(revised, days), on(macro, days))
    # ...and the revision is seen once it is out (the test is not blind)
    seen = t + pd.Timedelta(days=shift)
    assert not on(revised, [seen]).equals(on(macro, [seen]))


def test_a_withdrawn_value_falls_back_to_the_one_before() -> None:
    rows = [("manufacturing", f"2024-{m:02d}-01", f"2024-{m:02d}-18", float(m)) for m in (1, 2, 3)]
    rows.append(("manufacturing", "2024-03-01", "2024-03-25", np.nan))  # dropped a week later
    macro = pd.DataFrame(rows, columns=["series", "date", "realtime_start", "value"])
    macro = macro.assign(
        date=pd.to_datetime(macro["date"]), realtime_start=pd.to_datetime(macro["realtime_start"])
    )
    got = on(macro, ["2024-03-20", "2024-03-26"])
    assert got["macro_mfg_level"].tolist() == [3.0, 2.0]
    assert got["macro_mfg_surprise"].tolist() == [1.0, -1.0]
    assert got["macro_mfg_age"].tolist() == [2.0, 1.0]


def test_a_series_that_stops_arriving_goes_nan(md) -> None:
    claims = md.macro[md.macro["series"] == "claims"]
    last = claims["realtime_start"].max()
    got = on(claims, [last, last + pd.Timedelta(days=14), last + pd.Timedelta(days=15)])
    assert got["macro_claims_age"].tolist()[:2] == [0.0, 14.0]
    assert got.iloc[2][["macro_claims_4wk_chg", "macro_claims_age"]].isna().all()
    assert got["macro_curve_level"].isna().all()  # a role with no rows at all


def test_no_macro_leaves_the_group_nan_and_reported(md) -> None:
    res = build_features(md.prices, md.market, md.universe.sector_map())
    assert res.frame[MACRO].isna().all(axis=None)
    assert set(res.report.missing_macro) == {"curve", "claims", "money", "manufacturing"}
    assert "macro series absent" in res.report.summary()
    part = md.macro[md.macro["series"] != "money"]
    res = build_features(md.prices, md.market, md.universe.sector_map(), macro=part)
    assert res.report.missing_macro == {"money": REGISTRY.needing("macro:money")}


def test_the_models_leave_the_macro_group_out_unless_asked() -> None:
    without = model_feature_names()
    assert not set(without) & set(MACRO)
    assert without == [n for n in REGISTRY.names() if n not in MACRO]
    assert model_feature_names(macro=True) == REGISTRY.names()
