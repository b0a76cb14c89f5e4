"""The nightly increment equals a full build, over whatever features the registry holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.features.conftest import synthetic_market
from turbomode import feature_store as fs
from turbomode.config import Settings
from turbomode.data.ingest import ingest
from turbomode.data.sources.synthetic import SyntheticSource
from turbomode.features.engine import build_features
from turbomode.features.incremental import DEFAULT_LOOKBACK, build_increment, compare


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    # long enough that the block starts well after the first bar; a late listing and a
    # symbol with too little history included
    return synthetic_market(n_symbols=16, n_days=DEFAULT_LOOKBACK + 250, seed=3)


def _names(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("symbol", "date")]


def test_increment_equals_the_full_build_for_every_registry_feature(market) -> None:
    prices, mkt, sectors = market
    full = build_features(prices, mkt, sectors).frame
    dates = sorted(full["date"].unique())
    for since in (dates[-1], dates[-3]):
        inc = build_increment(prices, mkt, sectors, pd.Timestamp(since))
        got = inc.new_rows.set_index(["symbol", "date"]).sort_index()
        want = full[full["date"] >= since].set_index(["symbol", "date"]).sort_index()
        assert got.index.equals(want.index)
        names = _names(full)
        assert _names(inc.new_rows) == names  # every registry feature, none named here
        a, b = got[names].to_numpy(), want[names].to_numpy()
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        # identical float32 values; at most a rare 1-ulp rounding flip is tolerated
        assert same.mean() > 0.999, sorted({names[j] for j in np.flatnonzero(~same.all(0))})
        assert compare(inc.new_rows, full[full["date"] >= since], names) == {}
        # the check dates before `since` agree with the stored values too
        stored = full[full["date"].isin(inc.check_dates)]
        assert len(inc.check_dates) == 3 and compare(inc.check_rows, stored, names) == {}


def test_the_check_catches_a_block_too_short_or_a_changed_value(market) -> None:
    prices, mkt, sectors = market
    full = build_features(prices, mkt, sectors).frame
    names = _names(full)
    since = pd.Timestamp(sorted(full["date"].unique())[-1])
    inc = build_increment(prices, mkt, sectors, since)
    stored = full[full["date"].isin(inc.check_dates)].copy()
    stored.iloc[3, stored.columns.get_loc(names[5])] *= 1.001
    assert names[5] in compare(inc.check_rows, stored, names)
    stored.iloc[4, stored.columns.get_loc(names[6])] = np.nan
    assert names[6] in compare(inc.check_rows, stored, names)
    # a 30-bar block cannot reproduce year-long windows: the check says which features
    short = build_increment(prices, mkt, sectors, since, lookback=30)
    bad = compare(short.check_rows, full[full["date"].isin(short.check_dates)], names)
    assert len(bad) > 10


def test_nightly_build_appends_only_the_new_dates(tmp_path: Path) -> None:
    small = {
        "synthetic": {"n_symbols": 11, "n_days": 700},
        "features": {"incremental_lookback": 600},
    }
    nightly = Settings(data={"data_dir": tmp_path / "nightly"}, **small)
    whole = Settings(data={"data_dir": tmp_path / "whole"}, **small)
    dates = sorted(SyntheticSource(nightly).load().prices["date"].unique())
    ingest(nightly, end=dates[-3])
    report, _ = fs.build(nightly)
    assert report.mode == "full"
    for day in dates[-2:]:
        ingest(nightly, end=day)  # one more bar per symbol
        report, _ = fs.build(nightly)
        assert report.mode == "incremental" and report.n_dates == 1
    report, _ = fs.build(nightly)
    assert report.mode == "current"
    ingest(whole)
    fs.build(whole, full=True)

    for view in (fs.VECTOR_VIEW, fs.STOCK_VIEW, fs.MARKET_VIEW):
        a = pq.read_table(fs.feast_dir(nightly) / "offline" / f"{view}.parquet").to_pandas()
        b = pq.read_table(fs.feast_dir(whole) / "offline" / f"{view}.parquet").to_pandas()
        key = ["market" if view == fs.MARKET_VIEW else "symbol", fs.TS]
        a, b = (f.drop(columns=fs.CREATED).sort_values(key).reset_index(drop=True) for f in (a, b))
        assert len(a) == len(b)
        if view == fs.VECTOR_VIEW:
            va, vb = np.vstack(a[fs.VECTOR_FEATURE]), np.vstack(b[fs.VECTOR_FEATURE])
            assert np.mean((va == vb) | (np.isnan(va) & np.isnan(vb))) > 0.999
        else:
            pd.testing.assert_frame_equal(a, b, rtol=1e-6)

    # the nights were appended as parts, and Feast reads every part: the online store gets the
    # newest (incremental) date, a point-in-time read of it sees the appended rows
    parts = sorted(p.name for p in fs.view_table(nightly, fs.VECTOR_VIEW).glob("*.parquet"))
    assert parts == [
        "base.parquet",
        *(f"part-{pd.Timestamp(d).date()}.parquet" for d in dates[-2:]),
    ]
    store = fs.open_store(nightly)
    fs.materialize(store, nightly)
    online = fs.dated_online_vectors(store, ["CS01", "IT01"])
    assert set(online.dates.values()) == {pd.Timestamp(dates[-1]).date()}
    entities = pd.DataFrame({"symbol": ["CS01", "IT01"], "date": [dates[-1], dates[-2]]})
    names = fs.FeatureLayout.from_registry().all[:5]
    pit = fs.training_frame(store, entities, names)
    assert pit[names].notna().all().all()

    manifest = json.loads((fs.feast_dir(nightly) / "offline" / fs.MANIFEST).read_text())
    assert manifest["last_date"] == str(pd.Timestamp(dates[-1]).date())
    # a revised history (a changed past bar) rebuilds everything
    clean = nightly.data.clean_dir / "prices.parquet"
    prices = pd.read_parquet(clean)
    prices.loc[prices.index[10], "close"] *= 1.01
    prices.to_parquet(clean, index=False)
    report, _ = fs.build(nightly)
    assert report.mode == "full"


def test_a_macro_revision_rebuilds_only_once_it_was_known(tmp_path: Path) -> None:
    """A revision released after the last built date changes no stored feature (features read
    what was released by their date), so the build stays incremental; one released before it
    changes stored values, so everything is rebuilt."""
    settings = Settings(data={"data_dir": tmp_path}, synthetic={"n_symbols": 11, "n_days": 300})
    ingest(settings)
    fs.build(settings)
    market = pq.read_table(fs.view_table(settings, fs.MARKET_VIEW)).to_pandas()
    assert market["macro_m2_yoy"].notna().any() and market["macro_curve_level"].notna().any()
    path = settings.data.clean_dir / "macro.parquet"
    macro = pd.read_parquet(path)
    last = pd.read_parquet(settings.data.clean_dir / "prices.parquet")["date"].max()
    old = macro[macro["series"] == "money"].iloc[[2]]
    later = old.assign(realtime_start=last + pd.Timedelta(days=3), value=old["value"] * 2)
    pd.concat([macro, later], ignore_index=True).to_parquet(path, index=False)
    report, _ = fs.build(settings)
    assert report.mode == "current"
    known = old.assign(realtime_start=last - pd.Timedelta(days=3), value=old["value"] * 2)
    pd.concat([macro, known], ignore_index=True).to_parquet(path, index=False)
    report, _ = fs.build(settings)
    assert report.mode == "full"
