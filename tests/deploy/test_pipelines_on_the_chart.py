"""The Kubeflow pipelines (``pipelines/*.yaml``, compiled from src/turbomode/pipelines) against
the Helm chart: a ``helm install turbomode charts/turbomode`` followed by ``turbomode pipelines
submit`` must find, under the parameters' defaults, the image ``make images`` built, the data
volume at the path the jobs and Ray nodes use, the settings Secret, the Secrets holding the
passwords its URLs name, the user that owns the volume's files, and NetworkPolicies that let
the steps reach the stores and the Ray client."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from turbomode import __version__
from turbomode.pipelines import runtime as rt
from turbomode.pipelines.definitions import (
    CLUSTER_PARAMS,
    CONFIG_FILE,
    DATA_MOUNT,
    DEFAULT_IMAGE,
    PIPELINES,
    POD_LABELS,
    RUN_AS,
    SETTINGS_MOUNT,
)
from turbomode.pipelines.runs import parse_params

from .conftest import (
    CHART,
    NAMESPACE,
    PROFILES,
    RELEASE,
    Manifest,
    helm_args,
    helm_template,
    load_manifests,
    named,
    of_kind,
    run,
)
from .test_chart import env_of, expand_env, settings_configmap, turbomode_containers

PROFILE_IDS = list(PROFILES)
SETTINGS_KEY = Path(CONFIG_FILE).name  # config.yaml
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---- the compiled pipelines -------------------------------------------------------------------


def compiled(name: str) -> dict[str, Any]:
    """A committed pipeline (what `submit` uploads: test_compile checks it is a fresh compile),
    with its Kubernetes platform spec under ``platforms``."""
    docs = list(yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text()))
    spec: dict[str, Any] = docs[0]
    spec["platforms"] = docs[1]["platforms"]
    return spec


def defaults(spec: dict[str, Any]) -> dict[str, Any]:
    params = spec["root"]["inputDefinitions"]["parameters"]
    return {name: p.get("defaultValue") for name, p in params.items()}


def step_configs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each executor's Kubernetes config (volumes, Secrets, security context, labels)."""
    configs: dict[str, dict[str, Any]] = spec["platforms"]["kubernetes"]["deploymentSpec"][
        "executors"
    ]
    return configs


def secret_env(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """run parameter naming the Secret → {Secret key: variable}."""
    return {
        e["secretNameParameter"]["componentInputParameter"]: {
            k["secretKey"]: k["envVar"] for k in e["keyToEnv"]
        }
        for e in config.get("secretAsEnv", [])
    }


# ---- the rendered chart -----------------------------------------------------------------------


def pods(doc: Manifest) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod a manifest creates (CronWorkflows as their workflow spec:
    volumes, securityContext and the template containers)."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet"):
        return [(f"{kind}/{name}", spec["template"]["spec"])]
    if kind == "CronWorkflow":
        wf = spec["workflowSpec"]
        containers = [t["container"] for t in wf["templates"] if "container" in t]
        return [(f"{kind}/{name}", {**wf, "containers": containers})]
    if kind == "RayCluster":
        out = [(f"{kind}/{name}/head", spec["headGroupSpec"]["template"]["spec"])]
        for group in spec["workerGroupSpecs"]:
            out.append((f"{kind}/{name}/{group['groupName']}", group["template"]["spec"]))
        return out
    return []


def turbomode_pods(docs: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """Pods that run a TurboMode image: the jobs, the Ray head and workers, serving."""
    return [
        (where, pod)
        for doc in docs
        for where, pod in pods(doc)
        if any("turbomode/" in c["image"] for c in pod["containers"])
    ]


def password_refs(docs: list[Manifest]) -> dict[str, tuple[str, str]]:
    """Variable → (Secret, key) of the passwords the chart's containers take from Secrets."""
    _, container = turbomode_containers(docs)[0]
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in env_of(container)
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def pipeline_settings(docs: list[Manifest]) -> dict[str, str]:
    return dict(named(docs, "Secret", f"{RELEASE}-pipeline-settings")["stringData"])


def client_selectors(docs: list[Manifest]) -> dict[str, dict[str, str]]:
    """The podSelector each NetworkPolicy admits TurboMode clients with: to Redis, PostgreSQL
    and the Pushgateway, and to the Ray client port."""
    out = {}
    for policy in of_kind(docs, "NetworkPolicy"):
        name = policy["metadata"]["name"].removeprefix(f"{RELEASE}-")
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if name in ("redis", "postgresql", "pushgateway") or 10001 in ports:
                for peer in rule["from"]:
                    if "podSelector" in peer and "ray.io/cluster" not in str(peer):
                        out[name] = peer["podSelector"]["matchLabels"]
    return out


# ---- 1. the image -------------------------------------------------------------------------------


def test_components_image_is_what_make_images_tags_and_the_chart_pulls() -> None:
    """By default the steps run turbomode/components:<version>: the tag `make images` builds
    and the image the chart's default values pull (<images.registry>/components:<appVersion>)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    from_values = (
        f"{values['images']['registry']}/{values['images']['components']['repository']}"
        f":{values['images']['components']['tag'] or chart['appVersion']}"
    )
    make = run(["make", "-n", "-C", str(REPO), "images"])
    assert make.returncode == 0, make.stderr
    built = re.findall(r"docker build -f docker/components\.Dockerfile -t (\S+) \.", make.stdout)
    assert built == [from_values] == [DEFAULT_IMAGE]
    for kind in ("pipelines", "components"):
        for path in sorted((REPO / kind).glob("*.yaml")):
            spec = next(yaml.safe_load_all(path.read_text()))
            images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
            assert images == {DEFAULT_IMAGE}, path.name


@pytest.mark.integration
def test_chart_runs_the_compiled_image(rendered: dict[str, list[Manifest]]) -> None:
    for where, pod in turbomode_pods(rendered["default"]):
        if "serving" not in where:
            assert {c["image"] for c in pod["containers"]} == {DEFAULT_IMAGE}, where


# ---- 2. names, mounts, user, labels ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipeline_defaults_name_what_the_chart_renders(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    docs = rendered["default"]
    spec = compiled(name)
    given = defaults(spec)
    assert {k: given[k] for k in CLUSTER_PARAMS} == CLUSTER_PARAMS

    # The data volume: the chart's claim, mounted where every job and Ray node mounts it.
    (pvc,) = of_kind(docs, "PersistentVolumeClaim")
    assert given["data_pvc"] == pvc["metadata"]["name"]
    # The settings file: a key of the chart's pipeline settings Secret.
    settings_secret = named(docs, "Secret", given["settings_secret"])
    assert SETTINGS_KEY in settings_secret["stringData"]
    assert given["config"] == f"{SETTINGS_MOUNT}/{SETTINGS_KEY}"
    # The Secrets with the passwords, under the keys the chart's containers read.
    passwords = password_refs(docs)
    assert set(passwords) == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    rendered_secrets = {s["metadata"]["name"] for s in of_kind(docs, "Secret")}
    assert given["model_registry_secret"] in rendered_secrets
    # Every ${VAR} the settings file names, a step gets from one of those Secrets.
    wanted = set(REFERENCE.findall(settings_secret["stringData"][SETTINGS_KEY]))
    assert wanted == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    # The uid that owns the volume's files.
    cron = of_kind(docs, "CronWorkflow")[0]["spec"]["workflowSpec"]["securityContext"]
    assert (cron["runAsUser"], cron["runAsGroup"], cron["fsGroup"]) == (RUN_AS,) * 3
    # The labels the NetworkPolicies admit to the stores and the Ray client.
    selectors = client_selectors(docs)
    assert set(selectors) == {"redis", "postgresql", "pushgateway", "ray"}

    # Where the jobs, the Ray nodes and serving mount the data volume.
    data_mounts = {
        m["mountPath"]
        for _, pod in turbomode_pods(docs)
        for c in pod["containers"]
        for m in c["volumeMounts"]
        if m["name"] == "data"
    }
    assert data_mounts == {DATA_MOUNT}

    for executor, config in step_configs(spec).items():
        (mount,) = config["pvcMount"]
        assert mount["pvcNameParameter"]["componentInputParameter"] == "data_pvc"
        assert mount["mountPath"] == DATA_MOUNT
        (volume,) = config["secretAsVolume"]
        assert volume["secretNameParameter"]["componentInputParameter"] == "settings_secret"
        assert volume["mountPath"] == SETTINGS_MOUNT
        from_secrets = secret_env(config)
        got = {}
        for param, keys in from_secrets.items():
            for key, var in keys.items():
                got[var] = (given[param], key)
        for var, ref in passwords.items():
            assert got[var] == ref, (executor, var)
        assert wanted <= set(got)
        assert config["securityContext"] == {
            "runAsUser": str(RUN_AS),
            "runAsGroup": str(RUN_AS),
            "runAsNonRoot": True,
        }
        labels = config["podMetadata"]["labels"]
        assert labels == POD_LABELS
        for policy, selector in selectors.items():
            assert selector.items() <= labels.items(), (executor, policy)


@pytest.mark.integration
def test_the_object_store_endpoint_reaches_the_steps(helm: str) -> None:
    """modelRegistry.endpointUrl (MinIO and other S3-compatible stores) is an environment
    variable, not a setting: the settings Secret carries it beside config.yaml, and the steps
    map it from there."""
    result = helm_template(helm, "production", ["modelRegistry.endpointUrl=http://minio:9000"])
    assert result.returncode == 0, result.stderr
    data = pipeline_settings(load_manifests(result.stdout))
    assert data["AWS_ENDPOINT_URL"] == "http://minio:9000"
    for config in step_configs(compiled("training")).values():
        assert secret_env(config)["settings_secret"] == {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}


# ---- 3. the same settings -----------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting and no password variable from the caller's shell."""
    for name in list(os.environ):
        if name == "TURBOMODE_CONFIG" or (name.startswith("TURBOMODE_") and "__" in name):
            monkeypatch.delenv(name)
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.integration
@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_pipeline_steps_read_the_settings_the_jobs_read(
    clean_env: pytest.MonkeyPatch,
    rendered: dict[str, list[Manifest]],
    profile: str,
    tmp_path: Path,
) -> None:
    """A step's settings (the Secret's config.yaml, passwords from its Secrets' variables) are
    exactly the settings of a CronWorkflow container (the ConfigMap and its env entries)."""
    from turbomode.config import Settings

    docs = rendered[profile]
    _, container = turbomode_containers(docs)[0]
    job_env = expand_env(container, settings_configmap(docs), "s3cr3t")
    for name, value in job_env.items():
        clean_env.setenv(name, value)
    job = Settings().model_dump()
    for name in job_env:
        clean_env.delenv(name)

    config = tmp_path / SETTINGS_KEY
    config.write_text(pipeline_settings(docs)[SETTINGS_KEY])
    with pytest.raises(rt.UnsetReferenceError, match=r"POSTGRES_PASSWORD|REDIS_PASSWORD"):
        rt.settings(str(config))  # without the Secrets' variables a step fails, naming one
    clean_env.setenv("POSTGRES_PASSWORD", "s3cr3t")
    clean_env.setenv("REDIS_PASSWORD", "s3cr3t")
    step = rt.settings(str(config)).model_dump()
    # The webhook URL is a credential that only the report CronWorkflows read (from its
    # Secret); no pipeline step sends a report, so the steps' settings never carry it.
    hook = job["notify"].pop("webhook_url")
    assert step["notify"].pop("webhook_url") is None
    assert hook == ("s3cr3t" if profile == "production" else None)
    assert step == job
    assert step["stores"]["signals_url"].startswith("postgresql+psycopg://turbomode:s3cr3t@")
    assert step["compute"]["ray_address"] == f"ray://{RELEASE}-ray-head-svc.{NAMESPACE}.svc:10001"
    assert str(step["data"]["data_dir"]).startswith(DATA_MOUNT + "/")


# ---- 4. the shared volume -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_one_data_volume_for_jobs_ray_and_serving(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    """The jobs, the Ray head, every Ray worker group (they write the trained models under
    data_dir/runs) and serving mount the same claim at the same path; production shares it
    across nodes (ReadWriteMany)."""
    docs = rendered[profile]
    (pvc,) = of_kind(docs, "PersistentVolumeClaim")
    claim = pvc["metadata"]["name"]
    places = turbomode_pods(docs)
    wheres = {w.split("/")[0] + "/" + w.split("/")[-1] for w, _ in places}
    (cluster,) = of_kind(docs, "RayCluster")
    for group in ["head", *(g["groupName"] for g in cluster["spec"]["workerGroupSpecs"])]:
        assert f"RayCluster/{group}" in wheres
    assert any(w.startswith("CronWorkflow/") for w in wheres)
    assert f"Deployment/{RELEASE}-serving" in {w for w, _ in places}
    for where, pod in places:
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        assert data == {"name": "data", "persistentVolumeClaim": {"claimName": claim}}, where
        for container in pod["containers"]:
            mounts = [m for m in container["volumeMounts"] if m["name"] == "data"]
            assert mounts == [{"name": "data", "mountPath": DATA_MOUNT}], where
    modes = pvc["spec"]["accessModes"]
    assert modes == (["ReadWriteMany"] if profile == "production" else ["ReadWriteOnce"])


@pytest.mark.integration
def test_access_mode_and_storage_class_are_values(helm: str) -> None:
    result = helm_template(
        helm,
        "default",
        ["persistence.accessModes={ReadWriteMany}", "persistence.storageClass=nfs-client"],
    )
    assert result.returncode == 0, result.stderr
    (pvc,) = of_kind(load_manifests(result.stdout), "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs-client"
    # A mode that cannot be shared by several pods is refused.
    refused = run([helm, "lint", str(CHART), "--set", "persistence.accessModes={ReadWriteOncePod}"])
    assert refused.returncode != 0
    assert "/persistence/accessModes/0" in refused.stdout + refused.stderr


# ---- 5. what the release tells the user to submit -----------------------------------------------


def notes(helm: str, profile: str) -> str:
    result = run(
        [
            helm,
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
            *helm_args(profile),
        ]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


@pytest.mark.integration
def test_notes_name_the_parameters_a_release_needs(helm: str) -> None:
    """The release's notes print the submit command with every parameter whose default does not
    fit it: none for the default values, the stores' and the registry's existing Secrets for
    values-production.yaml. Each is a real parameter of every pipeline."""
    wanted = {
        "default": {},
        "production": {
            "postgres_secret": "turbomode-postgresql",
            "redis_secret": "turbomode-redis",
            "model_registry_secret": "turbomode-s3",
        },
    }
    for profile, params in wanted.items():
        text = notes(helm, profile)
        assert "turbomode pipelines submit training" in text
        printed = dict(p.split("=", 1) for p in re.findall(r"-p (\S+=\S+)", text))
        assert printed == params, profile
        for name in PIPELINES:
            assert parse_params(name, [f"{k}={v}" for k, v in printed.items()]) == printed
