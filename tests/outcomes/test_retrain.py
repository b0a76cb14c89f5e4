"""The retrainer: waits for enough samples, promotes a candidate that beats production,
keeps production when the candidate loses, and leaves production exactly as it was when it
fails mid-way or is killed (the next run restores the recorded pointers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.models.test_ensemble import FAST
from turbomode.config import Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.features.engine import build_features
from turbomode.features.registry import model_feature_names
from turbomode.job_metrics import JobMetrics
from turbomode.labels import make_labels
from turbomode.models import pipeline
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.registry import ModelRegistry
from turbomode.outcomes.retrain import consecutive_refusals, retrain
from turbomode.store import SignalStore

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SECTOR = "Information Technology"
KEY = f"{SECTOR}/1d"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """A synthetic market with the planted 1-day reversal; training rows of one sector."""
    tmp = tmp_path_factory.mktemp("retrain")
    s = Settings(
        data={"data_dir": tmp},
        synthetic={"n_symbols": 60, "n_days": 700, "signal_strength": 0.3},
        labels={"horizons": [1]},
        models=FAST.model_dump(),
        gate={"n_boot": 300},
    )
    ingest(s)
    md = load_clean(s)
    sectors = md.universe.sector_map()
    feats = build_features(md.prices, md.market, sectors).frame
    labels = make_labels(md.prices, s.labels, sectors=sectors)
    labels["sector"] = labels["symbol"].map(sectors)
    data = labels[labels["label_1"].notna()].merge(feats, on=["symbol", "date"])
    data = data[data["sector"] == SECTOR].sort_values(["date", "symbol"]).reset_index(drop=True)
    return s, data


def shuffled(data: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """The same rows with labels and returns permuted: nothing left to learn."""
    out = data.copy()
    perm = np.random.default_rng(seed).permutation(len(out))
    out["label_1"] = out["label_1"].to_numpy()[perm]
    out["fwd_ret_1"] = out["fwd_ret_1"].to_numpy()[perm]
    return out


@pytest.fixture
def env(
    world: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> Iterator[tuple[Settings, SignalStore, ModelRegistry]]:
    base, _ = world
    s = base.model_copy(
        update={
            "stores": base.stores.model_copy(
                update={
                    "signals_url": f"sqlite:///{tmp_path / 'signals.db'}",
                    "model_registry_uri": str(tmp_path / "models"),
                }
            ),
            "data": base.data.model_copy(update={"data_dir": tmp_path}),
        }
    )
    store = SignalStore(s.stores.signals_url)
    store.migrate()
    yield s, store, ModelRegistry(s.stores.model_registry_uri, family="turbomode")
    store.dispose()


@pytest.fixture(scope="module")
def fitted(
    world: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Production models fitted once for the module: on the planted rows ("good") and on the
    same rows shuffled ("empty"). Each test registers its own copy."""
    _, data = world
    names = model_feature_names()
    out = {}
    for kind, rows in (("good", data), ("empty", shuffled(data))):
        ens = StackedEnsemble(names, 1, FAST).fit(
            rows[names], rows["label_1"].to_numpy(dtype=np.int64), rows["date"].to_numpy()
        )
        out[kind] = tmp_path_factory.mktemp(f"prod_{kind}")
        ens.save(out[kind])
    return out


def production_from(artifact: Path, registry: ModelRegistry) -> str:
    """Register a fitted model and make it the production model of KEY."""
    version = registry.register(KEY, {p.name: p for p in artifact.iterdir()}, {})
    registry.promote(KEY, version)
    return version


def pushed(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The unlabelled gauges each job run pushes, captured at push time."""
    got: dict[str, float] = {}

    def capture(self: JobMetrics, gateway: str | None) -> bool:
        for family in self.registry.collect():
            got.update({x.name: x.value for x in family.samples if not x.labels})
        return False

    monkeypatch.setattr(JobMetrics, "push", capture)
    return got


def test_consecutive_refusals() -> None:
    def runs(*statuses: str) -> pd.DataFrame:
        return pd.DataFrame({"status": list(statuses)})

    assert consecutive_refusals(runs()) == 0
    assert consecutive_refusals(runs("promoted")) == 0
    assert consecutive_refusals(runs("kept", "kept")) == 2
    # skipped and failed runs neither count nor break the streak; a promotion ends it
    assert consecutive_refusals(runs("kept", "promoted", "kept", "skipped", "failed", "kept")) == 2


@pytest.mark.slow  # the module's two production fits
def test_waits_for_enough_new_samples(
    env: Any, fitted: dict[str, Path], world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, store, registry = env
    old = production_from(fitted["good"], registry)
    gauges = pushed(monkeypatch)
    res = retrain(s, store, data=world[1], min_samples=5, use_ray=False, sectors=[SECTOR])
    assert res.status == "skipped" and "0 new, 5 needed" in res.report["reason"]
    assert registry.production(KEY) == old
    assert store.retrain_runs()["status"].tolist() == ["skipped"]
    assert gauges["turbomode_retrain_consecutive_refusals"] == 0
    assert gauges["turbomode_production_models"] == 1


@pytest.mark.slow
def test_a_task_without_production_is_retrained_on_schedule(env: Any, world: Any) -> None:
    """No production model → no signals → no samples: waiting for samples would never end."""
    s, store, registry = env
    res = retrain(s, store, data=world[1], min_samples=5, use_ray=False, sectors=[SECTOR])
    assert res.status in ("promoted", "kept") and res.report["mode"].startswith("cold start")
    assert list(res.report["decisions"]) == [KEY]
    assert store.retrain_runs()["max_sample_id"].tolist() == [0]  # samples not consumed
    assert (registry.production(KEY) is not None) == (res.status == "promoted")


@pytest.mark.slow
def test_promotes_a_candidate_that_beats_production(
    env: Any, fitted: dict[str, Path], world: Any, tmp_path: Path
) -> None:
    s, store, registry = env
    _, data = world
    old = production_from(fitted["empty"], registry)
    res = retrain(s, store, data=data, force=True, use_ray=False, sectors=[SECTOR])
    assert res.status == "promoted", res.report["decisions"]
    assert res.promoted == [KEY] and registry.production(KEY) not in (None, old)
    assert res.report["production_before"] == {KEY: old}
    assert Path(res.report_path or "").read_text().startswith(f"# Retrain {res.run_id}: promoted")


@pytest.mark.slow
def test_keeps_production_when_the_candidate_is_worse(
    env: Any, fitted: dict[str, Path], world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, store, registry = env
    _, data = world
    good = production_from(fitted["good"], registry)
    gauges = pushed(monkeypatch)
    res = retrain(s, store, data=shuffled(data), force=True, use_ray=False, sectors=[SECTOR])
    assert res.status == "kept" and res.refused == [KEY]
    assert gauges["turbomode_retrain_consecutive_refusals"] == 1
    assert registry.production(KEY) == good
    assert res.report["decisions"][KEY]["decision"] == "reject"


@pytest.mark.slow
def test_a_failure_midway_leaves_production_as_it_was(
    env: Any, fitted: dict[str, Path], world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, store, registry = env
    _, data = world
    old = production_from(fitted["empty"], registry)

    def promote_then_die(run: pipeline.TrainingRun, reg: ModelRegistry) -> list[str]:
        reg.promote(KEY, run.versions[KEY])  # the pointer moved ...
        raise RuntimeError("node lost")  # ... and the job died before finishing

    monkeypatch.setattr(pipeline, "apply_decisions", promote_then_die)
    with pytest.raises(RuntimeError, match="node lost"):
        retrain(s, store, data=data, force=True, use_ray=False, sectors=[SECTOR])
    assert registry.production(KEY) == old
    run = store.retrain_runs().iloc[-1]
    assert run["status"] == "failed" and run["report"]["restored"] == [KEY]


@pytest.mark.slow  # the module's two production fits
def test_a_killed_run_is_undone_by_the_next(
    env: Any, fitted: dict[str, Path], world: Any, tmp_path: Path
) -> None:
    s, store, registry = env
    _, data = world
    old = production_from(fitted["empty"], registry)
    store.start_retrain({KEY: old, "Energy/1d": None}, 10, 10)  # killed after this ...
    newer = production_from(fitted["good"], registry)  # ... and one promotion
    assert registry.production(KEY) == newer
    res = retrain(s, store, data=data, min_samples=1000, use_ray=False, sectors=[SECTOR])
    assert res.recovered == [1] and res.status == "skipped"
    assert registry.production(KEY) == old and registry.production("Energy/1d") is None
    assert store.retrain_runs()["status"].tolist() == ["aborted", "skipped"]
