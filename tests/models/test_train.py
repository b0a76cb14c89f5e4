"""Training orchestration: the Feast training set, one task end to end, and Ray running a
failing task without losing the others."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import Settings
from turbomode.data.ingest import ingest
from turbomode.feature_store import (
    FeatureLayout,
    FeatureStoreError,
    build,
    model_features,
    require_macro_values,
)
from turbomode.features.registry import GROUPS, REGISTRY
from turbomode.models.ensemble import BASE_MODELS, StackedEnsemble
from turbomode.models.train import (
    TrainTask,
    all_tasks,
    oot_window_start,
    results_table,
    train_all,
    training_set,
)

from .test_ensemble import FAST

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    s = Settings(
        data={"data_dir": tmp_path_factory.mktemp("train")},
        synthetic={"n_symbols": 22, "n_days": 400},
        models=FAST.model_dump(),
    )
    ingest(s)
    build(s, "local")
    return s


@pytest.fixture(scope="module")
def data(settings: Settings) -> pd.DataFrame:
    return training_set(settings)


def test_training_set_is_labels_joined_point_in_time(
    settings: Settings, data: pd.DataFrame
) -> None:
    names = model_features(settings)
    assert {"symbol", "date", "sector", "label_1", "fwd_ret_5", *names} <= set(data.columns)
    assert not set(REGISTRY.names("macro")) & set(data.columns)  # not the models' by default
    assert data["sector"].notna().all()
    assert not data.duplicated(["symbol", "date"]).any()
    # Features are exactly the offline rows of the same date: the join moved nothing in time.
    feats = pd.read_parquet(settings.data.data_dir / "feast" / "offline" / "stock_features.parquet")
    feats["date"] = feats["event_timestamp"].dt.tz_localize(None).astype("datetime64[ns]")
    row = data.sample(1, random_state=0).iloc[0]
    src = feats[(feats["symbol"] == row["symbol"]) & (feats["date"] == row["date"])].iloc[0]
    assert np.float32(row["rsi_14"]) == pytest.approx(src["rsi_14"], nan_ok=True)


def test_macro_in_models_adds_the_macro_group(settings: Settings, data: pd.DataFrame) -> None:
    """With macro.in_models the training set carries the macro group (the synthetic market has
    macro series) beside the very same rows and features; without macro values it refuses."""
    on = settings.model_copy(deep=True)
    on.macro.in_models = True
    rows = training_set(on)
    macro = REGISTRY.names("macro")
    assert model_features(on) == FeatureLayout.from_registry().all
    assert rows[macro].notna().any().all()
    pd.testing.assert_frame_equal(rows[list(data.columns)], data)
    require_macro_values(rows, model_features(on))
    with pytest.raises(FeatureStoreError, match=r"macro\.in_models is on"):
        require_macro_values(rows.assign(**dict.fromkeys(macro, np.nan)), model_features(on))
    require_macro_values(rows.assign(**dict.fromkeys(macro, np.nan)), model_features(settings))


def test_tasks_and_test_window(settings: Settings, data: pd.DataFrame) -> None:
    assert len(all_tasks(Settings())) == 33
    with pytest.raises(Exception, match="unknown sector"):
        all_tasks(settings, ["Tech"])
    start = oot_window_start(data["date"], settings)
    share = (data["date"].drop_duplicates() >= start).mean()
    assert share == pytest.approx(0.2, abs=0.01)


@pytest.mark.slow
def test_ray_runs_a_failing_task_without_losing_the_others(
    settings: Settings, data: pd.DataFrame, tmp_path: Path
) -> None:
    names = model_features(settings)
    tasks = [
        TrainTask("Energy", 1),
        TrainTask("Utilities", 5),
        TrainTask("Materials", 2),
    ]
    broken = data[data["sector"] != "Materials"]  # Materials has no rows: its task fails
    seen: list[str] = []
    results = train_all(
        settings, broken, names, tmp_path, tasks, use_ray=True, on_done=lambda r: seen.append(r.key)
    )
    by_key = {r.key: r for r in results}
    assert sorted(seen) == sorted(t.key for t in tasks)
    assert not by_key["Materials/2d"].ok and "no labelled rows" in by_key["Materials/2d"].error
    for key in ("Energy/1d", "Utilities/5d"):
        r = by_key[key]
        assert r.ok, r.error
        assert r.n_train > 0 and r.n_test > 0 and r.train_end < r.test_start
        assert set(r.baselines) == {"majority", "prior", "momentum"}
        model = StackedEnsemble.load(r.model_dir)
        assert model.horizon == int(key[-2])
    table = results_table(results)
    learners = {f"base:{n}" for n in BASE_MODELS}  # each base learner beside the ensemble
    assert set(table["model"]) == {"ensemble", "majority", "prior", "momentum", "FAILED"} | learners


@pytest.mark.slow
def test_sequential_mode_gives_the_same_models(
    settings: Settings, data: pd.DataFrame, tmp_path: Path
) -> None:
    names = model_features(settings)
    task = [TrainTask("Energy", 1)]
    a = train_all(settings, data, names, tmp_path / "a", task, use_ray=False)[0]
    b = train_all(settings, data, names, tmp_path / "b", task, use_ray=False)[0]
    assert a.ok and b.ok
    rows = data[data["sector"] == "Energy"][names].head(50)
    np.testing.assert_array_equal(
        StackedEnsemble.load(a.model_dir).predict_proba(rows),
        StackedEnsemble.load(b.model_dir).predict_proba(rows),
    )


@pytest.mark.slow
def test_run_registers_every_candidate_and_promotes_only_on_the_gate(
    settings: Settings, data: pd.DataFrame, tmp_path: Path
) -> None:
    from turbomode.models.pipeline import run_training
    from turbomode.models.registry import ModelRegistry

    s = settings.model_copy(deep=True)
    s.stores.model_registry_uri = str(tmp_path / "registry")
    s.data.data_dir = tmp_path / "data"
    s.labels.horizons = [1]
    run = run_training(s, ["Energy", "Utilities"], use_ray=False, data=data)
    registry = ModelRegistry(s.stores.model_registry_uri, family="turbomode")
    assert set(run.versions) == {"Energy/1d", "Utilities/1d"}
    for key, version in run.versions.items():
        manifest = registry.manifest(key, version)
        assert manifest["gate"]["decision"] == run.gates[key].decision
        assert manifest["features"] and manifest["run_id"] == run.run_id
        assert manifest["train_range"][1] < manifest["test_range"][0]
        assert set(manifest["metrics"]["base_learners"]) == set(BASE_MODELS)
        assert manifest["metrics"]["dropped"] == {}
        # the drift reference: deciles of the training window, scores of the test window
        ref = manifest["drift_reference"]
        assert set(ref["features"]) <= set(manifest["features"]) and len(ref["features"]) > 50
        assert all(abs(sum(r["expected"]) - 1) < 1e-9 for r in ref["features"].values())
        assert ref["score"]["n"] > 0 and len(ref["score"]["edges"]) == ref["bins"] - 1
        # the global view: mean |contribution| per feature and group
        imp = manifest["importance"]
        assert imp["rows"] > 0 and set(imp["features"]) == set(manifest["features"])
        assert max(imp["features"].values()) > 0 and max(imp["groups"].values()) > 0
        assert set(imp["groups"]) <= set(GROUPS)
        assert 1 <= imp["forest_trees"]["used"] <= imp["forest_trees"]["grown"]
        expected = version if run.gates[key].promoted else None
        assert registry.production(key) == expected
    latest = s.data.data_dir / "reports" / "train_latest.md"
    assert "Out-of-time evaluation beside baselines" in latest.read_text()
    assert set(run.summary()["decision"]) <= {"promote", "reject"}

    # every decision is a look the registry counts: the next run is the second on each key
    again = run_training(s, ["Energy"], use_ray=False, data=data, promote=False)
    looks = registry.looks("Energy/1d")
    assert [x["number"] for x in looks] == [1, 2]
    assert [x["version"] for x in looks] == [run.versions["Energy/1d"], again.versions["Energy/1d"]]
    assert again.gates["Energy/1d"].look["number"] == 2
    assert looks[1]["alpha"] == again.gates["Energy/1d"].look["alpha"] < looks[0]["alpha"]
    assert len(registry.looks("Utilities/1d")) == 1


def test_run_registers_a_model_with_sequence_learners(
    settings: Settings, data: pd.DataFrame, tmp_path: Path
) -> None:
    """An LSTM in the ensemble: the run scores its out-of-time rows with their history for the
    drift reference and the production comparison, and leaves TreeSHAP importance out."""
    from tests.conftest import need
    from turbomode.config import ModelSettings
    from turbomode.models.pipeline import run_training
    from turbomode.models.registry import ModelRegistry

    try:
        import jax  # noqa: F401
    except ImportError:
        need(False, "JAX is not installed (pip install 'turbomode[neural]')")
    s = settings.model_copy(deep=True)
    s.stores.model_registry_uri = str(tmp_path / "registry")
    s.data.data_dir = tmp_path / "data"
    s.labels.horizons = [1]
    s.models = s.models.model_copy(
        update={
            "neural_learners": ["lstm"],
            "neural": {**ModelSettings().neural, "window": 5, "hidden": 8, "max_epochs": 2},
        }
    )
    for _ in range(2):  # the second run compares with the first's production model
        run = run_training(s, ["Energy"], use_ray=False, data=data)
    registry = ModelRegistry(s.stores.model_registry_uri, family="turbomode")
    manifest = registry.manifest("Energy/1d", run.versions["Energy/1d"])
    assert "lstm" in manifest["metrics"]["base_learners"]
    assert manifest["drift_reference"]["score"]["n"] > 0
    assert manifest["importance"] == {}
