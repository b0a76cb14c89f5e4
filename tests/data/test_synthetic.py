"""The synthetic market: deterministic, realistic in shape, with a planted signal of the
documented strength (and none when asked for none)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from turbomode.config import GICS_SECTORS, MARKET_SYMBOLS, Settings, SyntheticSettings
from turbomode.data.sources.synthetic import (
    SyntheticSource,
    generate_market,
    measure_reversal_ic,
    planted_correlation,
)
from turbomode.data.validation import validate_prices
from turbomode.errors import UnknownSymbolError


@pytest.fixture(scope="module")
def market():
    return generate_market(SyntheticSettings())


def test_same_seed_same_data_other_seed_other_data(market) -> None:
    again = generate_market(SyntheticSettings())
    pd.testing.assert_frame_equal(market.prices, again.prices)
    pd.testing.assert_frame_equal(market.market, again.market)
    pd.testing.assert_frame_equal(market.universe.members, again.universe.members)
    other = generate_market(SyntheticSettings(seed=8))
    assert not np.allclose(
        other.prices["close"].to_numpy()[:1000], market.prices["close"].to_numpy()[:1000]
    )


def test_universe_spans_sectors_and_cap_classes(market) -> None:
    members = market.universe.members
    assert len(members) == 80
    assert set(members["sector"]) == set(GICS_SECTORS)
    assert set(members["cap_class"]) == {"large", "mid", "small"}
    assert members.groupby("sector").size().min() >= 7
    assert set(market.market["symbol"]) == set(MARKET_SYMBOLS)


def test_six_years_of_trading_days_with_listings_and_a_delisting(market) -> None:
    dates = market.prices["date"].drop_duplicates()
    assert len(dates) == 1512
    assert (dates.dt.dayofweek < 5).all()
    spans = market.prices.groupby("symbol")["date"].agg(["min", "max"])
    assert (spans["min"] > dates.min()).sum() == 3
    assert (spans["max"] < dates.max()).sum() == 1
    gone = spans.index[spans["max"] < dates.max()][0]
    last_day = spans.loc[gone, "max"]
    assert gone in market.universe.members_on(last_day)
    assert gone not in market.universe.members_on(dates.max())


def test_data_is_clean_under_validation(market) -> None:
    for frame in (market.prices, market.market):
        result = validate_prices(frame)
        assert result.quarantine.empty
        assert result.flags[result.flags["rule"] == "calendar_gap"].empty


def test_returns_look_like_markets(market) -> None:
    p = market.prices
    r = p.groupby("symbol")["close"].pct_change().dropna()
    assert 0.008 < r.std() < 0.04
    assert r.kurt() > 1.0  # fat tails
    spy = market.market[market.market["symbol"] == "SPY"].set_index("date")["close"].pct_change()
    vix = market.market[market.market["symbol"] == "^VIX"].set_index("date")["close"]
    assert vix.min() > 8 and vix.max() < 90
    assert spy.corr(np.log(vix).diff()) < -0.5  # VIX rises when the market falls
    absr = spy.abs().dropna()
    assert absr.autocorr(1) > 0.1  # volatility clusters
    vol_move = p.assign(r=p.groupby("symbol")["close"].pct_change().abs())
    vol_move["lv"] = np.log(vol_move["volume"])
    within = vol_move.groupby("symbol")[["r", "lv"]].corr().xs("r", level=1)["lv"]
    assert within.median() > 0.2  # volume co-moves with volatility


def test_planted_signal_has_the_documented_strength(market) -> None:
    ic, se = measure_reversal_ic(market.prices, market.universe.sector_map())
    assert planted_correlation(0.20) == pytest.approx(0.2225, abs=1e-3)
    # Documented in the module: the observable within-sector rank IC is about 0.20.
    assert ic == pytest.approx(0.20, abs=0.02)
    assert ic / se > 20


def test_no_signal_planted_means_none_measured() -> None:
    null = generate_market(SyntheticSettings(signal_strength=0.0))
    ic, se = measure_reversal_ic(null.prices, null.universe.sector_map())
    assert planted_correlation(0.0) == 0.0
    assert abs(ic) < 3 * se


def test_source_filters_and_rejects_unknown_symbols() -> None:
    src = SyntheticSource(Settings())
    md = src.load(["IT01", "FN02"], "2019-01-01", "2019-03-31")
    assert set(md.prices["symbol"]) == {"IT01", "FN02"}
    assert md.prices["date"].min() >= pd.Timestamp("2019-01-01")
    assert md.prices["date"].max() <= pd.Timestamp("2019-03-31")
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        src.load(["IT01", "NOPE"])


def test_the_scale_simulation_sizes_work() -> None:
    """bench_scale.py's knob: thousands of symbols keep unique names (a sector's counter passes
    99 and 999) and every sector and cap class, on a short calendar so the test stays quick."""
    md = generate_market(SyntheticSettings(n_symbols=2000, n_days=300))
    members = md.universe.members
    assert len(members) == members["symbol"].nunique() == 2000
    assert set(members["sector"]) == set(GICS_SECTORS)
    assert set(members["cap_class"]) == {"large", "mid", "small"}
    assert md.prices["symbol"].nunique() == 2000
    assert not md.prices.duplicated(["symbol", "date"]).any()
