"""The compiled YAML: checked in, identical to a fresh compile, and carrying the cluster
settings each step needs (volume, settings file, no caching, retries, the GPU node)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from turbomode.cli.pipelines import pipelines_app
from turbomode.jobs import JOBS, PIPELINE_OF_JOB
from turbomode.pipelines import components as comp
from turbomode.pipelines.definitions import (
    CLUSTER_PARAMS,
    CONFIG_FILE,
    DATA_MOUNT,
    DEFAULT_IMAGE,
    PIPELINES,
    POD_LABELS,
    RUN_AS,
    SECRET_ENV,
    SETTINGS_MOUNT,
    compile_all,
)
from turbomode.pipelines.runs import PipelineParameterError, parse_params

REPO = Path(__file__).resolve().parents[2]
SDK_VERSION = re.compile(rb"^sdkVersion: kfp-\S+$", re.MULTILINE)


def normalised(data: bytes) -> bytes:
    """The only volatile line is the kfp version that compiled the file."""
    return SDK_VERSION.sub(b"sdkVersion: kfp-*", data)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TURBOMODE_COMPONENTS_IMAGE", raising=False)
        compile_all(out / "pipelines", out / "components")
    return out


def load(path: Path) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    spec["platforms"] = docs[1]["platforms"] if len(docs) > 1 else {}
    return spec


@pytest.mark.parametrize("kind", ["pipelines", "components"])
def test_committed_yaml_is_a_fresh_compile(fresh: Path, kind: str) -> None:
    committed = sorted(p.name for p in (REPO / kind).glob("*.yaml"))
    compiled = sorted(p.name for p in (fresh / kind).glob("*.yaml"))
    assert committed == compiled, "run `turbomode pipelines compile` and commit the result"
    for name in compiled:
        assert normalised((REPO / kind / name).read_bytes()) == normalised(
            (fresh / kind / name).read_bytes()
        ), f"{kind}/{name} is stale: run `turbomode pipelines compile` and commit the result"


def test_the_yaml_carries_each_components_code(fresh: Path) -> None:
    """A change to a component's body changes the compiled YAML, so the test above fails
    until the YAML is recompiled."""
    spec = load(fresh / "pipelines" / "training.yaml")
    executors = spec["deploymentSpec"]["executors"]
    for name in ("ingest", "build_features", "materialize", "train", "evaluate_and_gate"):
        program = executors[f"exec-{name.replace('_', '-')}"]["container"]["command"][-1]
        assert inspect.getsource(comp.FUNCTIONS[name]) in program


def test_names_and_files() -> None:
    assert set(PIPELINES) == {
        "training",
        "training-gpu",
        "nightly-scan",
        "outcomes",
        "weekly-samples",
        "monthly-retrain",
    }
    assert set(comp.FUNCTIONS) == {f.name for f in dataclasses.fields(comp.Components)}


def _tasks(spec: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = spec["root"]["dag"]["tasks"]
    return tasks


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_step_mounts_the_stores_runs_uncached_on_the_image(fresh: Path, name: str) -> None:
    spec = load(fresh / "pipelines" / f"{name}.yaml")
    k8s = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = spec["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors)
    for executor, config in k8s.items():
        assert [m["mountPath"] for m in config["pvcMount"]] == [DATA_MOUNT], executor
        pvc = config["pvcMount"][0]["pvcNameParameter"]["componentInputParameter"]
        assert pvc == "data_pvc"
        volumes = config["secretAsVolume"]
        assert [v["mountPath"] for v in volumes] == [SETTINGS_MOUNT], executor
        secret = volumes[0]["secretNameParameter"]["componentInputParameter"]
        assert secret == "settings_secret"
        env_from = {
            e["secretNameParameter"]["componentInputParameter"]: (
                {k["secretKey"]: k["envVar"] for k in e["keyToEnv"]},
                e["optional"],
            )
            for e in config["secretAsEnv"]
        }
        assert env_from == {param: (keys, True) for param, keys in SECRET_ENV.items()}, executor
        assert config["securityContext"] == {
            "runAsUser": str(RUN_AS),
            "runAsGroup": str(RUN_AS),
            "runAsNonRoot": True,
        }
        assert config["podMetadata"]["labels"] == POD_LABELS
        assert executors[executor]["container"]["image"] == DEFAULT_IMAGE
        # kfp is in the image: nothing is pip-installed when a step starts.
        assert "pip install" not in " ".join(executors[executor]["container"]["command"])
    for task, body in _tasks(spec).items():
        assert not body.get("cachingOptions", {}).get("enableCache", False), task
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: params[k]["defaultValue"] for k in CLUSTER_PARAMS} == CLUSTER_PARAMS
    assert params["config"]["defaultValue"] == CONFIG_FILE
    assert CONFIG_FILE.startswith(SETTINGS_MOUNT + "/")


@pytest.mark.parametrize("name", ["training", "training-gpu", "nightly-scan"])
def test_network_steps_retry_with_backoff_and_no_other(fresh: Path, name: str) -> None:
    tasks = _tasks(load(fresh / "pipelines" / f"{name}.yaml"))
    retried = {t for t, body in tasks.items() if "retryPolicy" in body}
    assert retried == {"ingest", "materialize"}
    policy = tasks["ingest"]["retryPolicy"]
    assert policy["maxRetryCount"] == 3
    assert policy["backoffDuration"] == "60s" and policy["backoffFactor"] == 2.0


def test_the_gpu_variant_puts_only_the_train_step_on_a_gpu_node(fresh: Path) -> None:
    gpu = load(fresh / "pipelines" / "training-gpu.yaml")
    k8s = gpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    container = gpu["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "1"
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["exec-train"]["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    # Empty values are left out of the YAML (protobuf), and Kubernetes sets them to "".
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    assert env == {
        "TURBOMODE_COMPUTE__DEVICE": "cuda",
        "TURBOMODE_COMPUTE__GPUS_PER_TASK": "0.25",
        # Ray inside the pod, whatever Ray cluster the settings file names.
        "TURBOMODE_COMPUTE__RAY_ADDRESS": "",
    }
    for executor, config in k8s.items():
        if executor != "exec-train":
            assert "nodeSelector" not in config and "tolerations" not in config
            assert "resources" not in gpu["deploymentSpec"]["executors"][executor]["container"]

    cpu = load(fresh / "pipelines" / "training.yaml")
    train = cpu["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert "resources" not in train and "env" not in train
    assert (
        "nodeSelector"
        not in cpu["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    )


def test_training_runs_ingest_to_promote_in_order(fresh: Path) -> None:
    tasks = _tasks(load(fresh / "pipelines" / "training.yaml"))
    after = {t: set(body.get("dependentTasks", [])) for t, body in tasks.items()}
    assert after == {
        "ingest": set(),
        "build-features": {"ingest"},
        "materialize": {"build-features"},
        "train": {"build-features", "materialize"},
        "evaluate-and-gate": {"train"},
        "promote": {"evaluate-and-gate"},
    }


def test_compile_command_and_image_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        pipelines_app,
        [
            "compile",
            "--out",
            str(tmp_path / "p"),
            "--components-out",
            str(tmp_path / "c"),
            "--image",
            "registry.example/turbomode:test",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "p").glob("*.yaml"))) == len(PIPELINES)
    assert len(list((tmp_path / "c").glob("*.yaml"))) == len(comp.FUNCTIONS)
    spec = load(tmp_path / "p" / "nightly-scan.yaml")
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/turbomode:test"}


def test_image_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TURBOMODE_COMPONENTS_IMAGE", "registry.example/env:1")
    compile_all(tmp_path)
    spec = load(tmp_path / "outcomes.yaml")
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/env:1"}


def test_list_shows_every_pipeline() -> None:
    result = CliRunner().invoke(pipelines_app, ["list"])
    assert result.exit_code == 0, result.output
    for name in PIPELINES:
        assert name in result.output


def test_params_are_typed_as_the_pipeline_declares() -> None:
    assert parse_params("monthly-retrain", ["min_samples=50", "sectors=Energy"]) == {
        "min_samples": 50,
        "sectors": "Energy",
    }
    assert parse_params("training", ["symbols=AAPL,MSFT"]) == {"symbols": "AAPL,MSFT"}
    with pytest.raises(PipelineParameterError, match="Integer expected"):
        parse_params("monthly-retrain", ["min_samples=many"])
    with pytest.raises(PipelineParameterError, match="KEY=VALUE"):
        parse_params("training", ["sectors"])
    with pytest.raises(PipelineParameterError, match="no parameter 'horizon'"):
        parse_params("training", ["horizon=5"])


def test_unknown_pipeline_names_the_known_ones() -> None:
    result = CliRunner().invoke(pipelines_app, ["run-local", "trainign"])
    assert result.exit_code == 2
    assert "unknown pipeline 'trainign'" in result.output and "nightly-scan" in result.output


@pytest.mark.parametrize("job", sorted(PIPELINE_OF_JOB))
def test_pipelines_run_the_jobs_steps_in_order(fresh: Path, job: str) -> None:
    """A scheduled job and its pipeline run the same chain (turbomode.jobs.JOBS): the
    pipeline's tasks, each after the one before, are the job's first steps."""
    tasks = _tasks(load(fresh / "pipelines" / f"{PIPELINE_OF_JOB[job]}.yaml"))
    order: list[str] = []
    while len(order) < len(tasks):
        ready = [
            t
            for t, body in tasks.items()
            if t not in order and set(body.get("dependentTasks", [])) <= set(order)
        ]
        assert len(ready) == 1, f"{job}: not a chain ({ready})"
        order += ready
    steps = [s.name for s in JOBS[job]]
    assert order == steps[: len(order)], (order, steps)
    assert all(s.name not in ("ingest", "scan") for s in JOBS[job][len(order) :])
