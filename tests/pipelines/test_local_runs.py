"""Every pipeline end to end through KFP's local runner, on a small synthetic market: the
training run trains up to a past day, the nightly scan issues that day's signals, a later
scan brings the bars that settle them, and the outcome loop tracks, samples and retrains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from turbomode.cli.pipelines import pipelines_app
from turbomode.features import REGISTRY
from turbomode.models.registry import ModelRegistry
from turbomode.pipelines.runs import LocalRun, run_local

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SECTORS = "Energy,Utilities"
PAST_DAY = "2019-07-12"  # the synthetic market below ends on 2019-08-02
LAST_DAY = "2019-08-02"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """66 symbols (6 per sector) over 400 days with a strong planted reversal, one horizon,
    tiny models: small enough for minutes on 2 cores, large enough for the gate to judge."""
    tmp = tmp_path_factory.mktemp("pipelines")
    data = tmp / "data"
    settings = {
        "data": {"data_dir": str(data)},
        "stores": {
            "model_registry_uri": str(data / "models"),
            "signals_url": f"sqlite:///{data / 'signals.db'}",
        },
        "synthetic": {"n_symbols": 66, "n_days": 400, "signal_strength": 0.5},
        "labels": {"horizons": [1]},
        "signals": {"threshold_mode": "quantile", "threshold_quantile": 0.8},
        "gate": {"n_boot": 200},
        "models": {
            "oof_folds": 2,
            "embargo_days": 2,
            "lightgbm": {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 20},
            "catboost": {"iterations": 10, "depth": 3},
            "xgb_hist": {"n_estimators": 10, "max_depth": 3},
            "xgb_linear": {"n_estimators": 5},
            "random_forest": {"n_estimators": 10, "max_depth": 4, "min_samples_leaf": 20},
            "meta": {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 20},
        },
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def run(name: str, config: Path, **params: Any) -> LocalRun:
    return run_local(name, config.parent / "kfp", config, params)


def artifact(r: LocalRun, step: str, output: str) -> Any:
    return json.loads(Path(r.steps[step].artifacts[output]).read_text())


@pytest.fixture(scope="module")
def trained(config: Path) -> LocalRun:
    return run("training", config, sectors=SECTORS, end=PAST_DAY)


@pytest.fixture(scope="module")
def scans(trained: LocalRun, config: Path) -> tuple[LocalRun, LocalRun]:
    return run("nightly-scan", config, end=PAST_DAY), run("nightly-scan", config)


def test_training_trains_gates_and_promotes_what_the_gate_accepted(
    trained: LocalRun, config: Path
) -> None:
    assert list(trained.steps) == [
        "ingest",
        "build-features",
        "materialize",
        "train",
        "evaluate-and-gate",
        "promote",
    ]
    assert artifact(trained, "ingest", "clean")["last_date"] == PAST_DAY
    assert trained.steps["ingest"].metrics["symbols"] == 66
    assert trained.steps["build-features"].metrics["n_features"] == len(REGISTRY)
    train = trained.steps["train"].metrics
    assert train == {"tasks": 2, "trained": 2, "failed": 0, "registered": 2}

    gate = trained.steps["evaluate-and-gate"].metrics
    assert gate["gate_promote"] + gate["gate_reject"] == 2
    # The planted reversal is strong: the ensembles find it, the baselines cannot.
    assert gate["ensemble_mean_rank_ic"] > 0.1
    for baseline in ("majority", "prior", "momentum"):
        assert gate["ensemble_mean_rank_ic"] > gate[f"{baseline}_mean_rank_ic"]

    decisions = artifact(trained, "evaluate-and-gate", "decisions")
    candidates = artifact(trained, "train", "candidates")
    assert {k: d["version"] for k, d in decisions.items()} == candidates
    accepted = {k: d["version"] for k, d in decisions.items() if d["gate"]["decision"] == "promote"}
    promote = trained.steps["promote"].metrics
    assert promote["promoted"] == len(accepted) == gate["gate_promote"]
    assert accepted, "the gate accepted nothing: the scan below would have no model"
    production = artifact(trained, "promote", "production")
    registry = ModelRegistry(config.parent / "data" / "models", family="turbomode")
    for key in candidates:
        assert production[key] == registry.production(key) == accepted.get(key)
    report = Path(trained.steps["evaluate-and-gate"].artifacts["report"]).read_text()
    assert report.startswith("# Training run")


def test_nightly_scan_scores_with_the_promoted_models(
    trained: LocalRun, scans: tuple[LocalRun, LocalRun]
) -> None:
    promoted = int(trained.steps["promote"].metrics["keys_in_production"])
    for night, day in zip(scans, (PAST_DAY, LAST_DAY), strict=True):
        assert list(night.steps) == ["ingest", "build-features", "materialize", "scan"]
        scan = night.steps["scan"].metrics
        assert scan["symbols"] == 66
        assert scan["scored"] == 6 * promoted and scan["scored"] + scan["skipped"] == 66
        assert scan["missing_models"] == 11 - promoted
        assert artifact(night, "scan", "signals")["scan_date"] == day
    assert scans[0].steps["scan"].metrics["signals_fresh"] > 0


def test_the_outcome_loop_tracks_samples_and_retrains(
    scans: tuple[LocalRun, LocalRun], config: Path
) -> None:
    tracked = run("outcomes", config)
    outcomes = tracked.steps["track-outcomes"].metrics
    assert outcomes["registered"] >= scans[0].steps["scan"].metrics["signals_fresh"]
    assert outcomes["n_resolved"] > 0
    assert artifact(tracked, "track-outcomes", "outcomes")["as_of"] == LAST_DAY

    sampled = run("weekly-samples", config)
    added = sampled.steps["generate-samples"].metrics["added"]
    assert 0 < added <= outcomes["n_resolved"]

    retrained = run("monthly-retrain", config, min_samples=1, sectors=SECTORS)
    result = artifact(retrained, "retrain", "result")
    assert result["status"] in ("promoted", "kept"), result
    assert retrained.steps["retrain"].metrics["n_new_samples"] == added


def test_run_local_command_prints_each_steps_figures(
    trained: LocalRun, config: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        pipelines_app,
        ["run-local", "weekly-samples", "--root", str(tmp_path)],
        env={"TURBOMODE_CONFIG": str(config)},
    )
    assert result.exit_code == 0, result.output
    assert "generate-samples" in result.output and "candidates=" in result.output
    assert len(list(tmp_path.glob("turbomode-weekly-samples-*/generate-samples"))) == 1


def test_a_failing_step_fails_the_command(config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        pipelines_app,
        ["run-local", "outcomes", "--root", str(tmp_path), "--param", "as_of=someday"],
        env={"TURBOMODE_CONFIG": str(config)},
    )
    assert result.exit_code == 2
    assert "turbomode-outcomes" in result.output and "track-outcomes" in result.output
