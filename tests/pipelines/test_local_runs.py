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

from turbomode.cli.main import app
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


def test_status_after_the_runs_is_all_fresh(
    trained: LocalRun, scans: tuple[LocalRun, LocalRun], config: Path
) -> None:
    result = CliRunner().invoke(app, ["status", "--json"], env={"TURBOMODE_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True, doc["checks"]
    assert {c["state"] for c in doc["checks"]} == {"ok"}
    bars = (doc["clean_last_bar"], doc["offline_last_bar"], doc["online_last_bar"])
    assert bars == (LAST_DAY,) * 3 and doc["last_scan"] == LAST_DAY
    scan = next(c for c in doc["checks"] if c["part"] == "last scan")
    assert scan["detail"] == f"scan of {LAST_DAY}"
    production = {m["key"]: m for m in doc["models"] if m["version"]}
    assert len(production) == trained.steps["promote"].metrics["keys_in_production"]
    for key, model in production.items():
        assert model["version"] == artifact(trained, "promote", "production")[key]
        assert model["oot_rank_ic"] > 0 and 0 <= model["age_days"] < 1
    assert doc["pending_outcomes"] >= 0 and doc["last_retrain"] is None


def test_a_scan_dated_before_the_last_one_is_refused_before_scoring(
    scans: tuple[LocalRun, LocalRun], config: Path
) -> None:
    result = CliRunner().invoke(
        app, ["scan", "--date", PAST_DAY], env={"TURBOMODE_CONFIG": str(config)}
    )
    assert result.exit_code == 2, result.output
    assert f"scan date {PAST_DAY} is before the latest recorded scan {LAST_DAY}" in result.output
    # Refused by the scan itself, before scoring; not by the store after it (which names a
    # function where a command belongs).
    assert "turbomode replay" in result.output and "delete_run" not in result.output


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


def test_run_local_command_prints_one_line_per_step_and_keeps_the_logs(
    trained: LocalRun, config: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        pipelines_app,
        ["run-local", "weekly-samples", "--root", str(tmp_path)],
        env={"TURBOMODE_CONFIG": str(config)},
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [ln for ln in lines if "generate-samples" in ln and "candidates=" in ln]
    # The runner's executor JSON went to the step's log, not here.
    assert "executor_input" not in result.output and "KFP Executor" not in result.output
    assert len(lines) <= 8, result.output
    assert "turbomode status" in result.output and "/dashboard" in result.output
    (run_dir,) = tmp_path.glob("turbomode-weekly-samples-*")
    assert (run_dir / "generate-samples").is_dir()
    log = (run_dir / "logs" / "generate-samples.log").read_text()
    assert "Executing task 'generate-samples'" in log and "finished with status SUCCESS" in log


def test_verbose_shows_the_runners_log(config: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        pipelines_app,
        ["run-local", "weekly-samples", "--root", str(tmp_path), "--verbose"],
        env={"TURBOMODE_CONFIG": str(config)},
    )
    assert result.exit_code == 0, result.output
    assert "KFP Executor" in result.output and "finished with status SUCCESS" in result.output


def test_the_summary_says_what_was_promoted_and_what_to_do_next(
    trained: LocalRun, scans: tuple[LocalRun, LocalRun], config: Path
) -> None:
    from turbomode.cli.pipelines import run_summary
    from turbomode.config import load_settings

    settings = load_settings(config)
    promoted = int(trained.steps["promote"].metrics["promoted"])
    text = "\n".join(run_summary(trained, settings))
    assert f"gate: {promoted} of 2 task(s) promoted" in text
    run_id = artifact(trained, "train", "run")["run_id"]
    assert f"turbomode evaluate --run {run_id}" in text
    assert str(config.parent / "data" / "reports" / f"train_{run_id}.md") in text
    night = "\n".join(run_summary(scans[0], settings))
    fresh = int(scans[0].steps["scan"].metrics["signals_fresh"])
    assert f"scan of {PAST_DAY}: " in night and f"{fresh} fresh signal(s)" in night
    assert "turbomode serve" in night and "http://127.0.0.1:3000/dashboard" in night


def test_a_failing_step_fails_the_command_with_its_last_log_lines(tmp_path: Path) -> None:
    """A fresh data directory: the outcome tracker has no clean store to read."""
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path / "data"), "pipelines", "run-local", "outcomes"]
    )
    assert result.exit_code == 2, result.output
    assert "failed at step 'track-outcomes'" in result.output
    assert "no clean store at" in result.output and "run `turbomode ingest` first" in result.output
    (log,) = (tmp_path / "data" / "kfp").glob("turbomode-outcomes-*/logs/track-outcomes.log")
    assert f"full log: {log}" in result.output.replace("\n", "")
    assert "no clean store at" in log.read_text()
    assert len(result.output.splitlines()) <= 25, result.output
