"""A stacked ensemble with an LSTM, end to end: the scan reads each symbol's last days from
the offline store point in time and scores exactly what the model says on the offline rows;
a row dated after the scan date never reaches a window; the service scores such a key from
``/predict`` the same way and refuses ``/predict_features`` (one vector is no window),
``/explain`` and an unreadable history with one-line errors, never a 500; the night's drift
scores such a model with its history too.

One module fixture: 12 synthetic symbols, their features in the offline store, one tiny
stacked ensemble with an LSTM (window 5, two epochs) on 1-day labels, production for every
sector on 1 day.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY, need
from tests.serving.test_predictor import FakeOnlineStore
from turbomode import feature_store as fs
from turbomode.config import GICS_SECTORS, ModelSettings, Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.features.engine import build_features
from turbomode.labels import make_labels
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.registry import ModelRegistry
from turbomode.signals.scan import ModelCache, run_scan
from turbomode.store import SignalStore

try:
    import jax  # noqa: F401

    HAVE_JAX = True
except ImportError:
    HAVE_JAX = False

WINDOW = 5


@pytest.fixture(autouse=True)
def _jax_installed() -> None:
    need(HAVE_JAX, "JAX is not installed (pip install 'turbomode[neural]')")


@dataclass
class SeqMarket:
    settings: Settings
    features: pd.DataFrame
    members: pd.DataFrame
    registry: ModelRegistry
    model: StackedEnsemble
    dates: list[date]

    def vectors(self, day: date) -> pd.DataFrame:
        """The online vectors of ``day`` (float32, as the store holds them)."""
        cols = fs.FeatureLayout.from_registry().all
        rows = self.features[self.features["date"] == pd.Timestamp(day)]
        return rows[["symbol", *cols]].astype(dict.fromkeys(cols, "float32"))


@pytest.fixture(scope="module")
def seq(tmp_path_factory: pytest.TempPathFactory) -> SeqMarket:
    tmp = tmp_path_factory.mktemp("scan_seq")
    models = TINY.model_copy(
        update={
            "neural_learners": ["lstm"],
            # a meta-learner fine enough to hear the LSTM, so its windows show in the scores
            "meta": {"n_estimators": 40, "num_leaves": 15, "min_child_samples": 5},
            "neural": {**ModelSettings().neural, "window": WINDOW, "hidden": 8, "max_epochs": 2},
        }
    )
    settings = Settings(
        data={"data_dir": tmp / "data"},
        synthetic={"n_symbols": 12, "n_days": 300},
        labels={"horizons": [1]},
        models=models.model_dump(),
        stores={"signals_url": f"sqlite:///{tmp / 'signals.db'}"},
        signals={"threshold_mode": "quantile", "threshold_quantile": 0.8, "threshold_floor": 0.05},
    )
    ingest(settings)
    md = load_clean(settings)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    fs.write_offline_tables(feats, settings)
    labels = make_labels(md.prices, settings.labels, sectors=sectors)
    cols = fs.FeatureLayout.from_registry().all
    data = feats.merge(labels, on=["symbol", "date"]).dropna(subset=["label_1"])
    data = data[data["date"] >= data["date"].max() - pd.Timedelta(days=150)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN warm-up columns
        ens = StackedEnsemble(cols, 1, settings.models).fit(
            data[[*cols, "symbol", "date"]],
            data["label_1"].to_numpy(dtype=np.int64),
            data["date"].to_numpy(),
        )
    assert ens.window_days == WINDOW and "lstm" in ens.learners_
    ens.save(tmp / "artifact")
    registry = ModelRegistry(tmp / "models", family="turbomode")
    files = {p.name: p for p in (tmp / "artifact").iterdir() if p.is_file()}
    for sector in GICS_SECTORS:
        registry.promote(f"{sector}/1d", registry.register(f"{sector}/1d", files, {}))
    return SeqMarket(
        settings=settings,
        features=feats,
        members=md.universe.members[["symbol", "sector", "cap_class"]],
        registry=registry,
        model=StackedEnsemble.load(tmp / "artifact"),
        dates=[d.date() for d in sorted(md.prices["date"].unique())],
    )


def _offline_rows(settings: Settings, day: date, dates: list[date]) -> pd.DataFrame:
    """Every offline row dated ≤ ``day``, sorted by date then symbol (``day``'s rows last)."""
    rows = fs.stored_vectors(settings, [pd.Timestamp(d) for d in dates if d <= day])
    return rows.sort_values(["date", "symbol"]).reset_index(drop=True)


def _offline_prediction(settings: Settings, seq: SeqMarket, day: date) -> pd.DataFrame:
    """The model on every offline row dated ≤ ``day`` (whole histories), kept at ``day``."""
    rows = _offline_rows(settings, day, seq.dates)
    model = seq.model
    proba = model.predict_proba(rows)
    out = pd.DataFrame({"symbol": rows["symbol"], "date": rows["date"], "p_buy": proba[:, 2]})
    return out[out["date"] == pd.Timestamp(day)].set_index("symbol")


def _scan(seq: SeqMarket, day: date, db: Path, settings: Settings | None = None) -> Any:
    store = SignalStore(f"sqlite:///{db}")
    try:
        return run_scan(
            settings or seq.settings,
            store=store,
            models=ModelCache(seq.registry),
            scan_date=day,
            vectors=seq.vectors(day),
            market=load_clean(seq.settings),
        )
    finally:
        store.dispose()


def test_scan_scores_sequence_models_as_the_offline_rows_do(seq: SeqMarket, tmp_path: Path) -> None:
    day = seq.dates[-3]
    result = _scan(seq, day, tmp_path / "s.db")
    assert not result.missing_models, result.missing_models
    assert result.n_scored >= 10 and len(result.fresh) > 0
    direct = _offline_prediction(seq.settings, seq, day)
    got = result.scores.set_index("symbol")["p_buy"]
    np.testing.assert_allclose(got.to_numpy(), direct.loc[got.index, "p_buy"], atol=1e-6)
    # without the history each window is one day long, and the scores differ
    tonight = seq.vectors(day).assign(date=pd.Timestamp(day)).set_index("symbol")
    alone = seq.model.predict_proba(tonight.loc[direct.index].reset_index())
    assert np.abs(alone[:, 2] - direct["p_buy"].to_numpy()).max() > 1e-3
    # the LSTM itself reads the reader's rows as it reads the offline rows in full
    rows = fs.recent_rows(seq.settings, list(direct.index), day, WINDOW)
    short = seq.model.learner_probabilities(tonight.loc[direct.index].reset_index(), rows)
    full = seq.model.learner_probabilities(_offline_rows(seq.settings, day, seq.dates))["lstm"]
    np.testing.assert_allclose(short["lstm"], full[-len(direct) :], atol=1e-6)


def test_a_row_after_the_scan_date_never_reaches_a_window(seq: SeqMarket, tmp_path: Path) -> None:
    day = seq.dates[-4]
    planted = seq.features.copy()
    later = planted["date"] > pd.Timestamp(day)
    for c in seq.settings.models.sequence_features:
        planted.loc[later, c] = planted.loc[later, c] * -25.0 + 3.0
    settings = seq.settings.model_copy(deep=True)
    settings.data.data_dir = tmp_path / "planted"
    fs.write_offline_tables(planted, settings)

    rows = fs.recent_rows(settings, sorted(planted["symbol"].unique()), day, WINDOW)
    assert rows["date"].max() == pd.Timestamp(day)
    assert rows.groupby("symbol").size().max() == WINDOW
    # inside a window the planted rows move the scores: the next day's differ
    nxt = seq.dates[-3]
    moved = _offline_prediction(settings, seq, nxt)["p_buy"]
    kept = _offline_prediction(seq.settings, seq, nxt)["p_buy"]
    assert np.abs(moved - kept.loc[moved.index]).max() > 1e-3

    result = _scan(seq, day, tmp_path / "planted.db", settings=settings)
    clean = _scan(seq, day, tmp_path / "clean.db")
    assert len(result.scores) == len(clean.scores) > 0
    np.testing.assert_array_equal(result.scores["p_buy"], clean.scores["p_buy"])
    direct = _offline_prediction(seq.settings, seq, day)
    got = result.scores.set_index("symbol")["p_buy"]
    np.testing.assert_allclose(got.to_numpy(), direct.loc[got.index, "p_buy"], atol=1e-6)


def _online_store(vectors: pd.DataFrame, day: date) -> FakeOnlineStore:
    """Feast's online read of the features of one day (the service tests' fake)."""
    cols = fs.FeatureLayout.from_registry().all
    rows = {
        str(s): [float(v) for v in row]
        for s, row in zip(vectors["symbol"], vectors[cols].to_numpy(), strict=True)
    }
    return FakeOnlineStore(rows, int(pd.Timestamp(day).tz_localize("UTC").timestamp()) + 72000)


def test_service_reads_windows_for_predict_and_refuses_a_lone_vector(
    seq: SeqMarket, tmp_path: Path
) -> None:
    from turbomode.serving.predictor import Predictor, ServingError
    from turbomode.serving.settings import ServingSettings

    day = seq.dates[-1]
    predictor = Predictor(
        seq.settings,
        ServingSettings(scan_file=tmp_path / "none.json", health_cache_s=0),
        registry=seq.registry,
        store=_online_store(seq.vectors(day), day),
    )
    direct = _offline_prediction(seq.settings, seq, day)
    sym = str(direct.index[0])
    pred = predictor.predict(sym, 1)
    assert pred.p_buy == pytest.approx(direct.loc[sym, "p_buy"], abs=1e-6)

    sector = str(seq.members.set_index("symbol").loc[sym, "sector"])
    with pytest.raises(ServingError) as lone:
        predictor.predict_features(sector, 1, [[0.0] * len(seq.model.features)])
    assert lone.value.status == 400 and "last 5 days" in lone.value.message
    assert "\n" not in lone.value.message

    with pytest.raises(ServingError) as unexplained:
        predictor.explain(sym, 1)
    assert unexplained.value.status == 400 and "tree models only" in unexplained.value.message

    gone = seq.settings.model_copy(deep=True)
    gone.data.data_dir = tmp_path / "no-offline"
    predictor.settings = gone  # the offline store is not there: a 503 that says so
    other = str(direct.index[1])
    with pytest.raises(ServingError) as down:
        predictor.predict(other, 1)
    assert down.value.status == 503 and "feature history unavailable" in down.value.message
    assert "\n" not in down.value.message


def test_drift_scores_sequence_models_with_their_history(seq: SeqMarket) -> None:
    from turbomode.models import drift
    from turbomode.signals import drift as scan_drift

    day = seq.dates[-1]
    sector = str(seq.members["sector"].iloc[0])
    key = f"{sector}/1d"
    cols = fs.FeatureLayout.from_registry().all
    past = _offline_rows(seq.settings, seq.dates[-30], seq.dates)
    scores = drift.score_of(seq.model.predict_proba(past))
    reference = drift.build_reference(past, cols, scores, past["date"].to_numpy())

    class Registry:
        def manifest(self, _key: str, _version: str) -> dict[str, Any]:
            return {"drift_reference": reference, "sector": sector}

    version = seq.registry.production(key)
    assert version is not None
    [measured] = scan_drift.drift_for(
        seq.settings,
        day,
        seq.members,
        seq.vectors(day),
        seq.dates,
        Registry(),
        ModelCache(seq.registry),
        {key: version},
    )
    in_sector = int((seq.members["sector"] == sector).sum())
    assert measured.score_rows["tonight"] == in_sector
    assert measured.score_rows["20d"] >= 15 * in_sector
    assert all(np.isfinite(v) for v in measured.score.values())
