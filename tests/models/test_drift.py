"""The population stability index: a hand-computed example, an independent formula (the
symmetric Kullback–Leibler divergence, scipy), the binning of ties and constants, the noise
floor of small windows, and a planted shift that must show."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from turbomode.models import drift


def test_psi_of_a_hand_computed_example() -> None:
    # two bins of 1..10 cut at the median value 5 (bins (-inf, 5], (5, inf)); live
    # [1, 2, 3, 9]: shares 0.75 / 0.25
    ref = drift.reference_of(np.arange(1, 11), bins=2)
    assert ref is not None
    assert ref.edges == (5.0,) and ref.expected == (0.5, 0.5) and ref.n == 10
    np.testing.assert_allclose(drift.shares(ref.edges, [1, 2, 3, 9]), [0.75, 0.25])
    # (0.75 - 0.5)·ln(1.5) + (0.25 - 0.5)·ln(0.5) = 0.101366 + 0.173287
    assert drift.psi_of(ref, [1, 2, 3, 9]) == pytest.approx(0.274653, abs=1e-6)
    assert drift.psi_of(ref, [5, 6]) == 0.0  # the same shares
    assert drift.level(0.274653) == "major" and drift.level(0.15) == "moderate"
    assert drift.level(0.05) == "stable" and drift.level(math.nan) == ""


def test_psi_equals_the_symmetric_kl_divergence() -> None:
    """PSI = KL(a‖e) + KL(e‖a), computed here by scipy, whenever no share needs the floor."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        e = rng.dirichlet(np.ones(10))
        a = rng.dirichlet(np.ones(10))
        assert drift.psi(e, a) == pytest.approx(entropy(a, e) + entropy(e, a), rel=1e-12)


def test_ties_constants_and_missing_values() -> None:
    flag = drift.reference_of([0, 0, 0, 1, 1, np.nan])
    assert flag is not None and flag.bins == 2 and flag.n == 5
    np.testing.assert_allclose(flag.expected, [0.6, 0.4])
    assert drift.reference_of([3.0] * 50) is None  # nothing to compare
    assert drift.reference_of([np.nan, np.inf]) is None
    assert math.isnan(drift.psi_of(flag, [np.nan, np.nan]))
    # an empty bin is floored, not infinite
    assert np.isfinite(drift.psi_of(flag, [0.5, 1]))
    assert math.isnan(drift.psi_of(flag, [1, 1, 1]))  # one value: a point, not a distribution


def test_same_distribution_stays_near_the_noise_floor_and_a_shift_shows() -> None:
    rng = np.random.default_rng(11)
    ref = drift.reference_of(rng.normal(size=200_000))
    assert ref is not None and ref.bins == 10
    for n in (50, 1000):
        draws = [drift.psi_of(ref, rng.normal(size=n)) for _ in range(300)]
        # sampling alone: about (k - 1)/n, as the table's noise floor says
        assert np.mean(draws) == pytest.approx(drift.noise_floor(ref, n), rel=0.25)
    assert drift.psi_of(ref, rng.normal(size=1000)) < drift.MODERATE
    assert drift.psi_of(ref, rng.normal(0.5, 1.0, size=1000)) > drift.MODERATE
    assert drift.psi_of(ref, rng.normal(0.0, 2.5, size=1000)) > drift.MAJOR


def test_key_drift_counts_and_worst_features() -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame({f"f{i}": rng.normal(size=5000) for i in range(5)})
    train["flat"] = 1.0
    reference = drift.build_reference(train, list(train.columns), scores=rng.normal(size=800))
    assert set(reference["features"]) == {f"f{i}" for i in range(5)}  # the constant left out
    live = pd.DataFrame({f"f{i}": rng.normal(size=2000) for i in range(5)})
    live["f3"] = live["f3"] * 3 + 2  # planted
    live["f4"] = live["f4"] + 0.4  # planted, milder: PSI ≈ δ² ≈ 0.16
    d = drift.key_drift(
        "Energy/5d",
        "v1",
        reference,
        {"20d": live, "tonight": live.head(40)},
        {"20d": rng.normal(size=2000) + 1.0},
    )
    assert d.count_over("20d", drift.MAJOR) == 1 and d.count_over("20d", drift.MODERATE) == 2
    assert list(d.worst("20d", 2)["feature"]) == ["f3", "f4"]
    assert d.score["20d"] > drift.MAJOR and d.score_rows == {"20d": 2000}
    tonight = d.table[d.table["window"] == "tonight"]
    assert (tonight["n"] == 40).all()
    assert tonight["noise_floor"].iloc[0] == pytest.approx(9 * (1 / 40 + 1 / 5000))
    row = drift.summary([d]).iloc[0]
    assert row["over_0.25_20d"] == 1 and np.isnan(row["score_psi_tonight"])


def test_reference_round_trips_through_json() -> None:
    ref = drift.reference_of(np.linspace(0, 1, 101))
    assert ref is not None
    assert drift.Reference.from_dict(ref.to_dict()) == ref


def test_beyond_the_training_range_is_its_own_bin() -> None:
    ref = drift.reference_of(np.linspace(0, 1, 1001))
    assert ref is not None and (ref.lo, ref.hi) == (0.0, 1.0)
    top = np.linspace(0.95, 1.0, 50)  # all in the top decile
    beyond = np.linspace(1.5, 2.0, 50)  # all beyond the maximum
    assert drift.psi_of(ref, beyond) > drift.psi_of(ref, top) > drift.MAJOR
    # by hand: 0.9·ln(1/0.1) + 9·(0.1 − 1e-4)·ln(0.1/1e-4) = 2.072 + 6.211
    assert drift.psi_of(ref, top) == pytest.approx(8.283, abs=0.01)


def test_windows_psi_equals_psi_of_each_window_and_calibration_is_its_quantile() -> None:
    rng = np.random.default_rng(5)
    days = np.repeat(pd.bdate_range("2020-01-01", periods=120).to_numpy(), 40)
    values = rng.normal(size=len(days))
    values[: 40 * 3] = 7.0  # three nights of one value each: points, left out
    ref = drift.reference_of(values)
    assert ref is not None
    groups = drift.window_groups(days, 1)
    got = drift.windows_psi(ref, values, groups)
    want = [drift.psi_of(ref, values[groups == g]) for g in np.unique(groups)]
    np.testing.assert_allclose(got, [w for w in want if np.isfinite(w)], rtol=1e-12)
    assert len(got) == 117
    assert list(np.bincount(drift.window_groups(days, 20))) == [800] * 6
    calibrated = drift.calibrate(ref, values, days)
    assert calibrated.usual["tonight"] == pytest.approx(np.quantile(got, 0.99))
    assert calibrated.usual["20d"] > 0 and calibrated.edges == ref.edges
    # a window like the training period's is usual; a shifted one is not
    reference = {"features": {"x": calibrated.to_dict()}}
    calm = drift.key_drift("k", "v", reference, {"20d": pd.DataFrame({"x": rng.normal(size=800)})})
    moved = drift.key_drift(
        "k", "v", reference, {"20d": pd.DataFrame({"x": rng.normal(1.0, 1.0, size=800)})}
    )
    assert calm.count_unusual("20d") == 0 and moved.count_unusual("20d") == 1
