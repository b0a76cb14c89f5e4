"""Training samples: features as of the signal date (never a later row), the realized label,
no sample twice, and an outcome without features left for a later run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.outcomes.test_track import DAYS, SECTORS, book, legacy, prices
from turbomode.config import Settings
from turbomode.labels import make_labels
from turbomode.outcomes.retrain import merge_samples
from turbomode.outcomes.samples import frame_lookup, generate_samples, samples_as_training_rows
from turbomode.outcomes.track import track_outcomes
from turbomode.store import SignalStore

NAMES = ["day_index", "noise"]


def features(drop: tuple[str, int] | None = None) -> pd.DataFrame:
    """One row per (symbol, day): ``day_index`` is the day's position, so a sample carrying a
    later row's features would show it."""
    rng = np.random.default_rng(0)
    rows = [
        (sym, d, float(i), float(rng.normal()))
        for i, d in enumerate(DAYS)
        for sym in SECTORS
        if drop is None or (sym, i) != drop
    ]
    return pd.DataFrame(rows, columns=["symbol", "date", *NAMES])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SignalStore]:
    s = SignalStore(f"sqlite:///{tmp_path / 'signals.db'}")
    s.migrate()
    book(s)
    track_outcomes(legacy(), s, prices(), SECTORS, as_of=DAYS[30].date())
    yield s
    s.dispose()


def test_samples_carry_signal_time_features_and_the_realized_label(store: SignalStore) -> None:
    res = generate_samples(legacy(), store, lookup=frame_lookup(features(), NAMES), names=NAMES)
    assert (res.candidates, res.added, res.without_features) == (2, 2, [])
    got = store.training_samples().set_index("symbol")
    assert set(got.index) == {"AAA", "BBB"}
    for sym in ("AAA", "BBB"):
        assert got.loc[sym, "features"]["day_index"] == 20.0  # the signal day's row, not later
    out = store.outcomes().set_index("symbol")
    assert got.loc["AAA", "label"] == out.loc["AAA", "label"]
    assert got.loc["AAA", "outcome"] == "loss" and got.loc["BBB", "outcome"] == "win"
    # The 3-day legacy hold is not the 1-day label's window: the sample carries no exit or
    # return that could pass for the row's 1-day forward return.
    assert pd.isna(got.loc["BBB", "realized_return"]) and pd.isna(got.loc["BBB", "exit_date"])
    assert out.loc[["AAA", "BBB"], "sampled"].all() and not out.loc["CCC", "sampled"]


def test_label_rule_samples_keep_their_exit_and_return(tmp_path: Path) -> None:
    s = SignalStore(f"sqlite:///{tmp_path / 'label.db'}")
    s.migrate()
    book(s)
    track_outcomes(Settings(), s, prices(), SECTORS, as_of=DAYS[30].date())
    generate_samples(Settings(), s, lookup=frame_lookup(features(), NAMES), names=NAMES)
    got = s.training_samples().set_index("symbol")
    out = s.outcomes().set_index("symbol")
    assert got.loc["BBB", "realized_return"] == pytest.approx(out.loc["BBB", "realized_return"])
    assert got.loc["BBB", "exit_date"] == out.loc["BBB", "exit_date"]
    s.dispose()


def moved_after(day: int) -> pd.DataFrame:
    """prices() with every bar after ``day`` moved hard (AAA −30 %, BBB +40 %): a label that
    reads past ``day`` changes, one that stops at ``day`` does not."""
    p = prices()
    late = p["date"] > DAYS[day]
    for sym, factor in (("AAA", 0.7), ("BBB", 1.4)):
        rows = late & (p["symbol"] == sym)
        p.loc[rows, ["open", "high", "low", "close"]] *= factor
    return p


def test_an_h_day_sample_label_never_reads_past_t_plus_h(tmp_path: Path) -> None:
    """Legacy outcomes are held 14 days and judged on ±10 %; the samples they leave for the
    1-day models carry the 1-day label — prices up to t + 1 only — and no 14-day return."""
    settings = legacy(hold=14)
    t, h = 20, 1
    training_rows = []
    for name, p in (("as_is", prices()), ("moved", moved_after(t + h))):
        s = SignalStore(f"sqlite:///{tmp_path / name}.db")
        s.migrate()
        book(s)
        track_outcomes(settings, s, p, SECTORS, as_of=DAYS[36].date())
        res = generate_samples(settings, s, lookup=frame_lookup(features(), NAMES), names=NAMES)
        assert res.added == 2  # AAA and BBB; CCC delisted before its hold ended
        outcomes = s.outcomes().set_index("symbol")
        assert (outcomes.loc[["AAA", "BBB"], "hold_days"] == 14).all()
        training_rows.append(
            samples_as_training_rows(s.training_samples(), NAMES).set_index("symbol")
        )
        s.dispose()
    as_is, moved = training_rows
    pd.testing.assert_frame_equal(as_is, moved)  # nothing after t + h reaches a sample
    truncated = prices()[prices()["date"] <= DAYS[t + h]]
    want = make_labels(truncated, settings.labels, sectors=SECTORS).set_index(["symbol", "date"])
    for sym in ("AAA", "BBB"):
        assert as_is.loc[sym, "label_1"] == want.loc[(sym, DAYS[t]), "label_1"]
        assert np.isnan(as_is.loc[sym, "fwd_ret_1"])


def test_merged_samples_override_labels_never_returns() -> None:
    """A sample replaces its row's label; the row keeps the forward return computed from
    prices; a row the training set lacks is appended only with its h-day return."""
    history = pd.DataFrame(
        {
            "symbol": ["AAA", "BBB"],
            "date": [DAYS[20], DAYS[20]],
            "label_1": pd.array([1, 1], dtype="Int8"),
            "fwd_ret_1": [0.004, -0.002],
        }
    )
    samples = pd.DataFrame(
        {
            "symbol": ["AAA", "CCC", "DDD"],
            "date": [DAYS[20], DAYS[20], DAYS[21]],
            "label_1": [2, 0, 2],
            "fwd_ret_1": [np.nan, np.nan, 0.03],  # legacy, legacy, label rule
        }
    )
    merged, counts = merge_samples(history, samples, [1])
    assert counts == {"replaced": 1, "appended": 1}
    by = merged.set_index("symbol")
    assert by.loc["AAA", "label_1"] == 2 and by.loc["AAA", "fwd_ret_1"] == 0.004
    assert "CCC" not in by.index
    assert by.loc["DDD", "label_1"] == 2 and by.loc["DDD", "fwd_ret_1"] == 0.03


def test_no_sample_twice(store: SignalStore) -> None:
    lookup = frame_lookup(features(), NAMES)
    generate_samples(legacy(), store, lookup=lookup, names=NAMES)
    again = generate_samples(legacy(), store, lookup=lookup, names=NAMES)
    assert (again.candidates, again.added) == (0, 0)
    assert len(store.training_samples()) == 2


def test_an_outcome_without_features_waits(store: SignalStore) -> None:
    res = generate_samples(
        legacy(), store, lookup=frame_lookup(features(drop=("AAA", 20)), NAMES), names=NAMES
    )
    assert res.added == 1 and res.without_features == [f"AAA {DAYS[20].date()}"]
    assert not store.outcomes().set_index("symbol").loc["AAA", "sampled"]
    later = generate_samples(legacy(), store, lookup=frame_lookup(features(), NAMES), names=NAMES)
    assert later.added == 1 and len(store.training_samples()) == 2


def test_samples_in_the_training_set_shape(store: SignalStore) -> None:
    generate_samples(legacy(), store, lookup=frame_lookup(features(), NAMES), names=NAMES)
    rows = samples_as_training_rows(store.training_samples(), NAMES)
    assert list(rows["date"]) == [DAYS[20], DAYS[20]]
    assert rows["label_1"].notna().all() and "label_2" not in rows
    assert (rows["day_index"] == 20.0).all()


@pytest.mark.integration
def test_feast_lookup_is_the_point_in_time_row(tmp_path: Path) -> None:
    """The production lookup (Feast's offline store) returns the row of the signal date."""
    import warnings

    from turbomode import feature_store as fs
    from turbomode.config import Settings
    from turbomode.data.sources.synthetic import generate_market
    from turbomode.features.engine import build_features
    from turbomode.outcomes.samples import feast_lookup

    md = generate_market(Settings(synthetic={"n_symbols": 22, "n_days": 320}).synthetic)
    feats = build_features(md.prices, md.market, md.universe.sector_map()).frame
    settings = Settings(data={"data_dir": tmp_path})
    fs.write_offline_tables(feats, settings)
    fs.apply(settings, "local")
    names = fs.FeatureLayout.from_registry().all
    entities = feats[["symbol", "date"]].sample(50, random_state=2).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = feast_lookup(settings)(entities)
    want = frame_lookup(feats, names)(entities)
    np.testing.assert_array_equal(
        got[names].to_numpy(dtype=np.float32), want[names].to_numpy(dtype=np.float32)
    )
