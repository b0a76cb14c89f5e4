"""Engine behaviour: registry, point-in-time safety, warm-up, bad input and reporting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import need
from turbomode.config import MACRO_ROLES, LabelSettings
from turbomode.errors import SchemaError
from turbomode.features import (
    GROUPS,
    REGISTRY,
    UnknownFeatureError,
    build_features,
    select_features,
)
from turbomode.features.registry import SECTOR_ETF
from turbomode.labels import label_columns, make_labels

from .conftest import synthetic_market

# Features that are defined on a symbol's very first bar (no look-back needed).
BAR0 = {"hl_range_1", "oc_ret_1", "close_location"}
PER_SYMBOL_GROUPS = ("trend", "oscillator", "volatility", "volume")


@pytest.fixture(scope="module")
def full(synth: tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]) -> pd.DataFrame:
    prices, market, sectors = synth
    return build_features(prices, market, sectors, dtype=np.float64).frame


@pytest.fixture(scope="module")
def full_macro(synth, synth_macro: pd.DataFrame) -> pd.DataFrame:
    prices, market, sectors = synth
    return build_features(prices, market, sectors, dtype=np.float64, macro=synth_macro).frame


def test_registry_is_complete_and_described() -> None:
    assert 170 <= len(REGISTRY) <= 220
    counts = REGISTRY.counts()
    assert set(counts) == set(GROUPS)
    for spec in REGISTRY:
        assert spec.description and "\n" not in spec.description
        market = {"SPY", "^VIX", "QQQ", "IWM", SECTOR_ETF}
        macro = {f"macro:{role}" for role in MACRO_ROLES}
        assert set(spec.needs) <= (macro if spec.group == "macro" else market), spec
    assert REGISTRY.needing("QQQ") == [
        "qqq_ret_1",
        "qqq_ret_5",
        "qqq_ret_20",
        "qqq_dist_sma_50",
        "qqq_minus_spy_20",
    ]
    table = REGISTRY.to_frame()
    assert list(table["name"]) == REGISTRY.names()


def test_output_columns_follow_registry(synth, full: pd.DataFrame) -> None:
    assert list(full.columns) == ["symbol", "date", *REGISTRY.names()]
    prices = synth[0]
    assert len(full) == len(prices)
    assert full[["symbol", "date"]].duplicated().sum() == 0
    assert (full.dtypes.iloc[2:] == np.float64).all()
    assert not np.isinf(full.iloc[:, 2:].to_numpy()).any()


def test_float32_default_and_subset(synth) -> None:
    prices, market, sectors = synth
    names = ["rsi_14", "cs_rank_ret_5", "vix_level", "day_of_week"]
    res = build_features(prices, market, sectors, features=names)
    assert list(res.frame.columns) == ["symbol", "date", *names]
    assert (res.frame.dtypes.iloc[2:] == np.float32).all()
    assert res.report.features == names


def test_unknown_feature_names_are_all_named(synth) -> None:
    with pytest.raises(UnknownFeatureError) as err:
        select_features(["rsi_14", "rsi_99", "macd_histo"])
    msg = str(err.value)
    assert "rsi_99" in msg and "macd_histo" in msg and "rsi_14'" not in msg.split(";")[0]
    assert "macd_hist" in msg  # a suggestion
    prices, market, sectors = synth
    with pytest.raises(UnknownFeatureError, match="nope"):
        build_features(prices, market, sectors, features=["nope"])


def test_bad_frames_raise_schema_errors(synth) -> None:
    prices, market, sectors = synth
    with pytest.raises(SchemaError, match="volume"):
        build_features(prices.drop(columns="volume"), market, sectors)
    dup = pd.concat([prices, prices.iloc[[5]]], ignore_index=True)
    with pytest.raises(SchemaError, match="duplicate"):
        build_features(dup, market, sectors)
    with pytest.raises(SchemaError, match="empty"):
        build_features(prices.iloc[:0], market, sectors)


def test_report_times_each_stage(synth) -> None:
    prices, market, sectors = synth
    rep = build_features(prices, market, sectors).report
    assert list(rep.stage_s) == ["prepare", "per_symbol", "panel", "assemble"]
    assert all(v >= 0 for v in rep.stage_s.values())
    assert sum(rep.stage_s.values()) == pytest.approx(rep.elapsed_s, abs=0.05)
    assert rep.stage_s["per_symbol"] > rep.stage_s["assemble"]  # 150+ features vs a frame
    assert "stages: prepare" in rep.summary()


def test_short_symbols_are_reported_not_fatal(synth, full: pd.DataFrame) -> None:
    prices, market, sectors = synth
    tiny = pd.DataFrame(
        {
            "symbol": ["TINY", "ONE"] + ["TINY"] * 2,
            "date": pd.to_datetime(["2020-03-02"] * 2 + ["2020-03-03", "2020-03-04"]),
        }
    )
    for c in ("open", "high", "low", "close"):
        tiny[c] = [10.0, 5.0, 10.5, 10.2]
    tiny["volume"] = 1e5
    res = build_features(
        pd.concat([prices, tiny], ignore_index=True), market, {**sectors, "TINY": "Energy"}
    )
    rep = res.report
    assert rep.short_history["TINY"] == 3 and rep.short_history["ONE"] == 1
    assert "S11" in rep.short_history  # the synthetic short symbol (30 bars)
    assert rep.unmapped_symbols == ["ONE"]
    t = res.frame[res.frame["symbol"] == "TINY"]
    assert (
        t["ret_1"].notna().sum() == 2 and t["dist_sma_10"].isna().all() and t["rsi_14"].isna().all()
    )
    one = res.frame[res.frame["symbol"] == "ONE"]
    assert one["sector_rank_ret_1"].isna().all() and one["sector_etf_ret_5"].isna().all()
    # Adding them changes nothing for the others except the cross-sectional group.
    others = res.frame[~res.frame["symbol"].isin(["TINY", "ONE"])].reset_index(drop=True)
    cols = REGISTRY.names("trend") + REGISTRY.names("market")
    np.testing.assert_allclose(
        others[cols].to_numpy(), full[cols].to_numpy(np.float32), rtol=1e-6, equal_nan=True
    )


def test_missing_market_series_leave_nan_and_are_reported(synth, full: pd.DataFrame) -> None:
    prices, market, sectors = synth
    res = build_features(
        prices, market[~market["symbol"].isin(["QQQ", "XLK"])], sectors, dtype=np.float64
    )
    f, rep = res.frame, res.report
    assert rep.missing_market["QQQ"] == REGISTRY.needing("QQQ")
    assert rep.missing_sector_etfs == {"Information Technology": "XLK"}
    assert "XLK (Information Technology)" in rep.missing_market
    assert f[REGISTRY.needing("QQQ")].isna().all().all()
    tech = f["symbol"].map(sectors) == "Information Technology"
    assert f.loc[tech, REGISTRY.needing(SECTOR_ETF)].isna().all().all()
    assert f.loc[~tech, "rs_sector_20"].notna().any()
    keep = [
        n
        for n in REGISTRY.names()
        if n not in REGISTRY.needing("QQQ") + REGISTRY.needing(SECTOR_ETF)
    ]
    np.testing.assert_allclose(
        f[keep].to_numpy(), full[keep].to_numpy(), rtol=1e-12, equal_nan=True
    )
    none = build_features(prices, None, sectors)
    assert set(none.report.missing_market) >= {"SPY", "^VIX", "QQQ", "IWM"}
    assert none.frame[REGISTRY.names("market")].isna().all().all()
    assert "absent" in none.report.summary()


def test_warm_up_rows_are_nan(synth, full: pd.DataFrame) -> None:
    prices = synth[0]
    pos = full.groupby("symbol").cumcount()
    first = full[pos == 0]
    cols = [n for g in PER_SYMBOL_GROUPS for n in REGISTRY.names(g) if n not in BAR0]
    assert first[cols].isna().all().all(), first[cols].notna().sum()[lambda s: s > 0]
    for name, n_nan in (
        ("ret_250", 250),
        ("dist_sma_200", 199),
        ("rsi_14", 14),
        ("dist_ema_26", 25),
        ("atr_pct_14", 13),
        ("rvol_20", 20),
        ("dd_252", 251),
        ("beta_spy_60", 60),
    ):
        for sym, g in full.groupby("symbol"):
            v = g[name].to_numpy()
            assert np.isnan(v[: min(n_nan, len(v))]).all(), (name, sym)
            if len(v) > n_nan + 5:
                assert not np.isnan(v[n_nan:]).any(), (name, sym)
    assert len(prices) == len(full)


def test_labels_never_enter_features(synth, full: pd.DataFrame) -> None:
    prices, market, sectors = synth
    settings = LabelSettings()
    assert not set(label_columns(settings.horizons)) & set(REGISTRY.names())
    labels = make_labels(prices, settings, sectors=sectors)
    with_labels = prices.merge(labels, on=["symbol", "date"])
    res = build_features(with_labels, market, sectors, dtype=np.float64)
    assert not set(label_columns(settings.horizons)) & set(res.frame.columns)
    pd.testing.assert_frame_equal(res.frame, full)


def test_input_order_does_not_matter(synth, full: pd.DataFrame) -> None:
    prices, market, sectors = synth
    shuffled = prices.sample(frac=1.0, random_state=3)
    shuffled["date"] = shuffled["date"].dt.strftime("%Y-%m-%d")  # string dates are accepted
    res = build_features(
        shuffled, market.sample(frac=1.0, random_state=4), sectors, dtype=np.float64
    )
    pd.testing.assert_frame_equal(res.frame, full)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    t_index=st.integers(min_value=5, max_value=318),
    mode=st.sampled_from(["truncate", "perturb", "delete"]),
    seed=st.integers(0, 2**16),
)
def test_point_in_time(
    synth, synth_macro, full_macro: pd.DataFrame, t_index: int, mode: str, seed: int
) -> None:
    """Changing or deleting any data after t changes no feature at t (every group): prices
    and market bars dated after t, and macro values released after t — revisions of old
    observations included."""
    prices, market, sectors = synth
    rng = np.random.default_rng(seed)
    dates = np.sort(prices["date"].unique())
    t = dates[t_index]
    after_p, after_m = prices["date"] > t, market["date"] > t
    later = synth_macro["realtime_start"] > t
    if mode == "truncate":
        p2, m2, x2 = prices[~after_p], market[~after_m], synth_macro[~later]
    else:
        syms = rng.choice(sorted(sectors), size=rng.integers(1, len(sectors)), replace=False)
        hit = after_p & prices["symbol"].isin(syms)
        if mode == "delete":
            p2 = prices[~hit]
            m2 = market[~(after_m & (market["symbol"] == rng.choice(["SPY", "^VIX", "XLF"])))]
        else:
            p2, m2 = prices.copy(), market.copy()
            factor = rng.uniform(0.5, 1.5, hit.sum())
            for c in ("open", "high", "low", "close", "volume"):
                p2.loc[hit, c] = p2.loc[hit, c] * factor
            m2.loc[after_m, "close"] = m2.loc[after_m, "close"] * rng.uniform(
                0.8, 1.2, after_m.sum()
            )
        role = rng.choice(sorted(set(synth_macro["series"])))
        if mode == "delete":
            x2 = synth_macro[~(later & (synth_macro["series"] == role))]
        else:  # revise: later values change, and old observations get revisions after t
            x2 = synth_macro.copy()
            x2.loc[later, "value"] = x2.loc[later, "value"] * rng.uniform(0.5, 1.5, later.sum())
            old = x2[x2["realtime_start"] <= t].sample(n=20, replace=True, random_state=seed)
            days = rng.integers(1, 60, len(old))
            revisions = old.assign(
                realtime_start=pd.Timestamp(t) + pd.to_timedelta(days, unit="D"),
                value=old["value"] * rng.uniform(0.5, 1.5, len(old)),
            )
            x2 = pd.concat([x2, revisions]).drop_duplicates(
                ["series", "date", "realtime_start"], keep="last"
            )
    got = build_features(p2, m2, sectors, dtype=np.float64, macro=x2).frame
    a = got[got["date"] == t].reset_index(drop=True)
    b = full_macro[full_macro["date"] == t].reset_index(drop=True)
    assert b[REGISTRY.names("macro")].notna().any(axis=None) or t_index < 30
    pd.testing.assert_frame_equal(a[["symbol", "date"]], b[["symbol", "date"]])
    np.testing.assert_allclose(
        a.iloc[:, 2:].to_numpy(), b.iloc[:, 2:].to_numpy(), rtol=1e-10, atol=1e-12, equal_nan=True
    )


def test_synthetic_generator_of_the_project() -> None:
    """Smoke test on the platform's own synthetic market."""
    from turbomode.config import SyntheticSettings
    from turbomode.data.sources.synthetic import generate_market

    md = generate_market(SyntheticSettings(n_symbols=15, n_days=320))
    res = build_features(md.prices, md.market, md.universe.sector_map())
    assert len(res.frame) == len(md.prices)
    assert res.frame["rsi_14"].notna().mean() > 0.8
    assert not res.report.missing_market


def test_other_seeds_run_clean() -> None:
    prices, market, sectors = synthetic_market(n_symbols=5, n_days=260, seed=9)
    res = build_features(prices, market, sectors)
    assert res.report.n_symbols == 5 and len(res.frame) == len(prices)


def test_market_group_is_one_value_per_date(full: pd.DataFrame) -> None:
    """The market group holds date-level context only (Feast stores it once per date under the
    `market` entity); anything that differs by stock belongs to another group."""
    market = REGISTRY.names("market")
    spread = full.groupby("date")[market].nunique(dropna=False).max()
    assert (spread <= 1).all(), spread[spread > 1].to_dict()


def _awkward_market(kind: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Synthetic markets with what running sums and sort keys get wrong if anything does."""
    if kind == "ties":  # a flat stretch, a twin (ties in every rank), a symbol without sector
        prices, market, sectors = synthetic_market()
        p = prices.copy()
        flat = (p["symbol"] == "S01") & p["date"].between("2020-06-01", "2020-07-15")
        for c in ("open", "high", "low", "close"):
            p.loc[flat, c] = 42.0
        p.loc[flat, "volume"] = 1e6
        twin = p[p["symbol"] == "S02"].assign(symbol="S05")
        p = pd.concat([p[p["symbol"] != "S05"], twin], ignore_index=True)
        return p, market, {k: v for k, v in sectors.items() if k != "S07"}
    # halts: flat prices with no volume for 45 and 75 bars, no volume with moving prices,
    # flat prices with constant volume, open = close, gaps, an early end
    prices, market, sectors = synthetic_market(n_symbols=12, n_days=700, seed=5)
    p = prices.copy()
    for sym, a, b, vol, flat_px in (
        ("S01", 300, 345, 0.0, True),
        ("S03", 200, 275, 0.0, True),
        ("S02", 400, 430, 0.0, False),
        ("S06", 400, 445, 1e5, True),
    ):
        rows = np.flatnonzero(p["symbol"].to_numpy() == sym)[a:b]
        if flat_px:
            for c in ("open", "high", "low", "close"):
                p.loc[rows, c] = float(p.loc[rows[0], "close"])
        p.loc[rows, "volume"] = vol
    rows = np.flatnonzero(p["symbol"].to_numpy() == "S05")[500:540]
    p.loc[rows, "open"] = p.loc[rows, "close"]
    gaps = np.flatnonzero(p["symbol"].to_numpy() == "S04")[10::11]
    p = p.drop(index=gaps)
    p = p[~((p["symbol"] == "S08") & (p["date"] > pd.Timestamp("2021-09-01")))]
    return p.reset_index(drop=True), market, sectors


@pytest.mark.parametrize("kind", ["ties", "halts"])
def test_fast_kernels_match_the_pandas_reference(kind: str) -> None:
    """Every feature from the engine's kernels (bottleneck windows, linear-filter EWMs, sort-
    key ranks) equals the pandas reference backend's, on markets with ties, flat and halted
    stretches (where a running sum would leave ±1e-15 and turn 0/0 into a number), gaps, a
    symbol without a sector and one that ends early."""
    from turbomode.features import indicators as ind

    p, market, secs = _awkward_market(kind)
    fast = build_features(p, market, secs, dtype=np.float64)
    with ind.backend("pandas"):
        ref = build_features(p, market, secs, dtype=np.float64)
    assert ref.frame.shape == fast.frame.shape
    a, b = fast.frame.iloc[:, 2:], ref.frame.iloc[:, 2:]
    for name in a.columns:
        np.testing.assert_allclose(
            a[name].to_numpy(),
            b[name].to_numpy(),
            rtol=1e-9,
            atol=1e-11,
            equal_nan=True,
            err_msg=name,
        )
    assert fast.report.nan_share == pytest.approx(ref.report.nan_share)


def test_no_symbol_with_a_sector_leaves_sector_features_nan(synth) -> None:
    prices, market, _ = synth
    res = build_features(prices, market, {})
    sector_cols = [n for n in res.names if n.startswith(("sector_", "rs_sector_"))]
    assert sector_cols and res.frame[sector_cols].isna().all().all()
    assert res.frame["cs_rank_ret_5"].notna().any()
    assert len(res.report.unmapped_symbols) == prices["symbol"].nunique()


def test_sector_ranks_and_means_against_groupby() -> None:
    """The one-pass sector rank and sector mean against pandas' groupby on a long frame: ties,
    NaN, ±inf and unmapped symbols (code −1)."""
    from turbomode.features.cross_sectional import _rank, _sector_mean, _sector_rank

    rng = np.random.default_rng(4)
    m = rng.integers(-4, 5, size=(40, 30)).astype(float)
    m[rng.random(m.shape) < 0.15] = np.nan
    m[3, 2], m[5, 7], m[5, 9] = np.inf, -np.inf, np.inf
    code = rng.integers(-1, 4, size=30)
    onehot = (code[:, None] == np.arange(4)[None, :]).astype(float)
    long = pd.DataFrame(
        {"row": np.repeat(np.arange(40), 30), "sector": np.tile(code, 40), "v": m.ravel()}
    )
    mapped = long[long["sector"] >= 0]
    by = mapped.groupby(["row", "sector"])["v"]
    want_rank = np.full(m.size, np.nan)
    want_rank[mapped.index] = by.rank(pct=True).to_numpy()
    with np.errstate(invalid="ignore"):
        want_mean = np.full(m.size, np.nan)
        want_mean[mapped.index] = by.transform(lambda v: np.nanmean(v.to_numpy())).to_numpy()
    got_rank = _sector_rank(_rank(m), onehot, code).ravel()
    np.testing.assert_allclose(got_rank, want_rank, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(_sector_mean(m, onehot, code).ravel(), want_mean)


def test_populated_output_block_gives_the_same_frame(
    synth, full: pd.DataFrame, monkeypatch
) -> None:
    """The output block mapped with MAP_POPULATE (large builds, Linux) holds what np.empty's
    does, and the frame built on it is an ordinary, writable frame."""
    import mmap

    from turbomode.features import engine

    need(
        hasattr(mmap, "MAP_POPULATE"), "MAP_POPULATE is Linux-only; elsewhere the block is np.empty"
    )
    monkeypatch.setattr(engine, "_POPULATE_MIN_BYTES", 0)
    prices, market, sectors = synth
    got = build_features(prices, market, sectors, dtype=np.float64).frame
    block = got.iloc[:, 2:].to_numpy()
    pd.testing.assert_frame_equal(got, full)
    got.iloc[0, 2] = 1.5
    assert got.iloc[0, 2] == 1.5 and block.dtype == np.float64
