"""The Helm chart, checked with the real tools: ``helm lint``/``helm template`` with the default
and the production values, every rendered manifest against its schema (``kubernetes-validate``
for core kinds, the published CRD schemas for CronWorkflow, RayCluster, ServiceMonitor and
PrometheusRule), ``promtool`` on the alert rules, a ``checkov`` scan, and the chart's contract
with the code: schedules from ``ScheduleSettings``, environment variables that are real settings,
store URLs that Feast and the settings read back, metric names the jobs really push."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO
from turbomode.jobs import JOBS, enabled_steps

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
    require_tool,
    run,
)

pytestmark = pytest.mark.integration

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest whose schemas
# kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
CUSTOM_SCHEMAS = {
    "CronWorkflow": "argoproj.io/cronworkflow_v1alpha1.json",
    "RayCluster": "ray.io/raycluster_v1.json",
    "ServiceMonitor": "monitoring.coreos.com/servicemonitor_v1.json",
    "PrometheusRule": "monitoring.coreos.com/prometheusrule_v1.json",
    "AlertmanagerConfig": "monitoring.coreos.com/alertmanagerconfig_v1alpha1.json",
}
# Custom resources whose published schema ../shared/schemas does not hold yet: validated once it
# does; until then test_alertmanager_config_routes_as_the_plain_file checks the content.
NOT_YET_SHARED = {"AlertmanagerConfig"}
# The command each CronWorkflow runs (`turbomode …`), keyed like ScheduleSettings' fields.
# Every job's steps, each a `turbomode` command line: the one definition (turbomode.jobs).
JOB_COMMANDS = {job: [list(s.args) for s in steps] for job, steps in JOBS.items()}
# Jobs the default values run; a job whose command has not landed yet is disabled there.
ENABLED_JOBS = [
    job
    for job, spec in yaml.safe_load((CHART / "values.yaml").read_text())["cronWorkflows"][
        "jobs"
    ].items()
    if spec["enabled"]
]
# checkov findings the chart may waive, each with its reason on the resource (see
# templates/_helpers.tpl "turbomode.checkovWaivers"); anything else must pass.
ALLOWED_WAIVERS = {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_43"}
TURBOMODE_REPOS = ("turbomode/components", "turbomode/serving")
PROFILE_IDS = list(PROFILES)


# ---- helpers ---------------------------------------------------------------------------------


def schema_validator(path: Path) -> jsonschema.protocols.Validator:
    """A validator for a CRD schema, as published. The schema itself is not checked against
    its metaschema: PrometheusRule's carries a Go regex (``^(?i)…``) that Python's ``re``
    rejects, and the check takes seconds on these large schemas. A pattern is compiled only
    when a manifest sets the field it constrains."""
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_manifest(doc: Manifest, validators: dict[str, jsonschema.protocols.Validator]) -> None:
    """Raise a ValidationError when the manifest does not match its kind's schema."""
    kind = doc["kind"]
    if kind in CUSTOM_SCHEMAS:
        if kind in validators or kind not in NOT_YET_SHARED:
            validators[kind].validate(doc)
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def pod_specs(doc: Manifest) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    """(where, pod-level securityContext, containers) of every pod a manifest creates."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    spec = doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet"):
        pod = spec["template"]["spec"]
        yield f"{kind}/{name}", pod.get("securityContext", {}), pod["containers"]
    elif kind == "CronWorkflow":
        wf = spec["workflowSpec"]
        containers = [t["container"] for t in wf["templates"] if "container" in t]
        yield f"{kind}/{name}", wf.get("securityContext", {}), containers
    elif kind == "RayCluster":
        head = spec["headGroupSpec"]["template"]["spec"]
        yield f"{kind}/{name}/head", head.get("securityContext", {}), head["containers"]
        for group in spec.get("workerGroupSpecs", []):
            pod = group["template"]["spec"]
            where = f"{kind}/{name}/{group['groupName']}"
            yield where, pod.get("securityContext", {}), pod["containers"]
        if spec.get("enableInTreeAutoscaling"):
            # KubeRay injects the autoscaler container with these settings.
            options = spec.get("autoscalerOptions", {})
            autoscaler = {
                "name": "autoscaler",
                "image": head["containers"][0]["image"],
                "securityContext": options.get("securityContext", {}),
                "resources": options.get("resources", {}),
                "volumeMounts": options.get("volumeMounts", []),
            }
            yield f"{kind}/{name}/autoscaler", head.get("securityContext", {}), [autoscaler]


def count_images(node: Any) -> int:
    """How many container images a manifest names anywhere (so no pod escapes pod_specs)."""
    if isinstance(node, dict):
        here = 1 if isinstance(node.get("image"), str) and "name" in node else 0
        return here + sum(count_images(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_images(v) for v in node)
    return 0


def container_problems(pod_ctx: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """What a container lacks of the chart's security and resource rules."""
    ctx = container.get("securityContext", {})
    problems = []

    def effective(key: str) -> Any:
        return ctx.get(key, pod_ctx.get(key))

    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    uid = effective("runAsUser")
    if not isinstance(uid, int) or uid < 10000:
        problems.append(f"runAsUser {uid!r} is not a uid >= 10000")
    if ctx.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if ctx.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if ctx.get("privileged"):
        problems.append("privileged")
    if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
        problems.append("capabilities do not drop ALL")
    if ctx.get("capabilities", {}).get("add"):
        problems.append("capabilities are added")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(bound, {}):
                problems.append(f"no {resource} {bound}")
    image = container.get("image", "")
    tag = image.split("@")[0].rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
    if not tag or tag == "latest":
        problems.append(f"image {image!r} has no version tag")
    return problems


def env_of(container: dict[str, Any]) -> list[dict[str, Any]]:
    return list(container.get("env", []))


URL_PASSWORD = re.compile(r"://[^/@\s:]*:(?P<pw>[^@\s]*)@")
FEAST_PASSWORD = re.compile(r"password=(?P<pw>[^,\s]*)")
ENV_REF = re.compile(r"^\$\((?P<name>[A-Z_][A-Z0-9_]*)\)$|^\$\{(?P<name2>[A-Z_][A-Z0-9_]*)\}$")


def inlined_secrets(container: dict[str, Any]) -> list[str]:
    """Env values that carry a literal password instead of a reference to a secretKeyRef var."""
    from_secret = {e["name"] for e in env_of(container) if "secretKeyRef" in e.get("valueFrom", {})}
    problems = []
    for entry in env_of(container):
        value = entry.get("value")
        if not isinstance(value, str):
            continue
        for pattern in (URL_PASSWORD, FEAST_PASSWORD):
            for match in pattern.finditer(value):
                ref = ENV_REF.match(match.group("pw"))
                name = ref and (ref.group("name") or ref.group("name2"))
                if name not in from_secret:
                    problems.append(f"{entry['name']}: password {match.group('pw')!r} inlined")
        if re.search(r"(PASSWORD|TOKEN|SECRET)", entry["name"]) and value:
            problems.append(f"{entry['name']}: a credential given as a literal value")
    return problems


def expand_env(container: dict[str, Any], config: dict[str, str], secret: str) -> dict[str, str]:
    """The environment Kubernetes gives the container: ConfigMap entries, then env in order,
    secretKeyRef values replaced by ``secret`` and $(VAR) references expanded."""
    env = dict(config)
    for entry in env_of(container):
        if "valueFrom" in entry:
            assert "secretKeyRef" in entry["valueFrom"], entry
            env[entry["name"]] = secret
        else:
            env[entry["name"]] = re.sub(
                r"\$\(([A-Z_][A-Z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                entry["value"],
            )
    return env


def settings_configmap(manifests: list[Manifest]) -> dict[str, str]:
    return dict(named(manifests, "ConfigMap", f"{RELEASE}-settings")["data"])


def turbomode_containers(manifests: list[Manifest]) -> list[tuple[str, dict[str, Any]]]:
    """Containers that run a TurboMode image (jobs, Ray nodes, serving)."""
    out = []
    for doc in manifests:
        for where, _, containers in pod_specs(doc):
            for c in containers:
                if any(repo in c["image"] for repo in TURBOMODE_REPOS) and "env" in c:
                    out.append((f"{where}/{c['name']}", c))
    return out


def rules_file(manifests: list[Manifest], tmp_path: Path, annotations: bool = True) -> Path:
    """The rendered PrometheusRule's groups as a Prometheus rules file."""
    (rule,) = of_kind(manifests, "PrometheusRule")
    groups = copy.deepcopy(rule["spec"]["groups"])
    if not annotations:  # promtool's unit tests compare annotations; firing does not use them
        for group in groups:
            for r in group["rules"]:
                r.pop("annotations", None)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


# ---- helm lint / template ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_helm_lint_passes(helm: str, profile: str) -> None:
    result = run([helm, "lint", str(CHART), "--strict", *helm_args(profile)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("serving.replicaCount=two", "/serving/replicaCount"),
        ("sevring.enabled=false", "sevring"),
        ("images.components.tag=latest", "/images/components/tag"),
        ("schedules.nightly_scan=nightly", "/schedules/nightly_scan"),
        ("containerSecurityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
        ("ray.workerGroups[0].gpus=-1", "/ray/workerGroups/0/gpus"),
    ],
)
def test_helm_lint_rejects_bad_values(helm: str, setting: str, message: str) -> None:
    result = run([helm, "lint", str(CHART), "--set", setting])
    assert result.returncode != 0, f"helm lint accepted --set {setting}"
    assert message in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["postgresql.enabled=false", "externalPostgresql.host=db"], "existingSecret is required"),
        (["redis.enabled=false"], "externalRedis.host is required"),
    ],
)
def test_helm_template_requires_external_stores(helm: str, sets: list[str], message: str) -> None:
    result = helm_template(helm, "default", sets)
    assert result.returncode != 0
    assert message in result.stderr


def test_rendered_resources(rendered: dict[str, list[Manifest]]) -> None:
    default, production = rendered["default"], rendered["production"]
    kinds = {m["kind"] for m in default}
    assert {
        "CronWorkflow",
        "RayCluster",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "StatefulSet",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "ConfigMap",
    } <= kinds
    assert len(of_kind(default, "CronWorkflow")) == len(ENABLED_JOBS)
    assert {m["metadata"]["name"] for m in of_kind(default, "StatefulSet")} == {
        f"{RELEASE}-redis",
        f"{RELEASE}-postgresql",
    }
    # Production uses managed stores and existing Secrets: nothing bundled, and the only Secret
    # rendered is the pipeline steps' settings file, which holds no password.
    assert not of_kind(production, "StatefulSet")
    assert [s["metadata"]["name"] for s in of_kind(production, "Secret")] == [
        f"{RELEASE}-pipeline-settings"
    ]
    for docs in rendered.values():
        for doc in docs:
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


# ---- schema validation -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validators(schemas_dir: Path) -> dict[str, jsonschema.protocols.Validator]:
    return {
        kind: schema_validator(schemas_dir / rel)
        for kind, rel in CUSTOM_SCHEMAS.items()
        if kind not in NOT_YET_SHARED or (schemas_dir / rel).exists()
    }


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_every_manifest_validates(
    rendered: dict[str, list[Manifest]],
    validators: dict[str, jsonschema.protocols.Validator],
    profile: str,
) -> None:
    for doc in rendered[profile]:
        try:
            validate_manifest(doc, validators)
        except (jsonschema.ValidationError, kubernetes_validate.utils.ValidationError) as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def _set(doc: Manifest, path: str, value: Any) -> Manifest:
    doc = copy.deepcopy(doc)
    node: Any = doc
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("CronWorkflow", "spec.concurrencyPolicy", 5),
        ("CronWorkflow", "spec.workflowSpec.templates.1.retryStrategy.limti", 2),
        ("RayCluster", "spec.workerGroupSpecs.0.maxReplicas", "many"),
        ("ServiceMonitor", "spec.endpoints.0.honorLabels", "yes"),
        ("PrometheusRule", "spec.groups.0.rules.0.for", 600),
        ("Deployment", "spec.replicas", "two"),
        ("Deployment", "spec.template.spec.containers.0.imagePullPolice", "Always"),
        ("HorizontalPodAutoscaler", "spec.minReplicas", "2"),
        ("NetworkPolicy", "spec.policyTypes", "Ingress"),
    ],
)
def test_validation_rejects_broken_manifests(
    rendered: dict[str, list[Manifest]],
    validators: dict[str, jsonschema.protocols.Validator],
    kind: str,
    path: str,
    value: Any,
) -> None:
    doc = of_kind(rendered["default"], kind)[0]
    validate_manifest(doc, validators)  # the rendered one is valid …
    broken = _set(doc, path, value)
    with pytest.raises(jsonschema.ValidationError):  # … and a broken field is caught
        validate_manifest(broken, validators)


# ---- security and resources --------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_every_container_is_locked_down(rendered: dict[str, list[Manifest]], profile: str) -> None:
    checked = 0
    problems = []
    for doc in rendered[profile]:
        specs = list(pod_specs(doc))
        images_in_specs = sum(len(c) for where, _, c in specs if not where.endswith("autoscaler"))
        assert images_in_specs == count_images(doc), f"unchecked containers in {doc['kind']}"
        for where, pod_ctx, containers in specs:
            for container in containers:
                checked += 1
                problems += [
                    f"{where}/{container['name']}: {p}"
                    for p in container_problems(pod_ctx, container)
                ]
                if any(repo in container["image"] for repo in TURBOMODE_REPOS):
                    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                    if "/tmp" not in mounts:
                        problems.append(f"{where}: no writable /tmp under a read-only root")
    assert checked >= len(ENABLED_JOBS) + 5  # jobs, Ray, serving, stores, Pushgateway
    assert not problems, "\n".join(problems)


def test_container_checks_can_fail(rendered: dict[str, list[Manifest]]) -> None:
    serving = named(rendered["default"], "Deployment", f"{RELEASE}-serving")
    pod = serving["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container_problems(pod["securityContext"], container) == []
    loose = copy.deepcopy(container)
    loose["securityContext"]["readOnlyRootFilesystem"] = False
    del loose["resources"]["limits"]
    loose["image"] = "turbomode/serving:latest"
    found = container_problems({}, loose)
    assert "readOnlyRootFilesystem is not true" in found
    assert "no cpu limits" in found
    assert "runAsUser None is not a uid >= 10000" not in found  # container-level uid suffices
    assert any("no version tag" in p for p in found)


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_no_secret_is_inlined(rendered: dict[str, list[Manifest]], profile: str) -> None:
    docs = rendered[profile]
    problems = []
    for doc in docs:
        for where, _, containers in pod_specs(doc):
            for container in containers:
                problems += [f"{where}: {p}" for p in inlined_secrets(container)]
        if doc["kind"] == "ConfigMap" or doc["metadata"]["name"] == f"{RELEASE}-pipeline-settings":
            text = json.dumps(doc.get("data") or doc.get("stringData"))
            found = 0
            for pattern in (URL_PASSWORD, FEAST_PASSWORD):
                for match in pattern.finditer(text):
                    found += 1
                    if not ENV_REF.match(match.group("pw")):
                        problems.append(f"{doc['kind']}/{doc['metadata']['name']}: a password")
            if doc["kind"] == "Secret":  # its store URLs name their passwords as ${VAR}
                assert found >= 2, "the pipeline settings carry no store URL"
    assert not problems, "\n".join(problems)
    secrets = {s["metadata"]["name"]: s for s in of_kind(docs, "Secret")}
    if profile == "production":
        assert set(secrets) == {f"{RELEASE}-pipeline-settings"}
    else:  # and the generated credentials of the bundled stores, random each render
        assert set(secrets) == {f"{RELEASE}-pipeline-settings", f"{RELEASE}-credentials"}
        credentials = secrets[f"{RELEASE}-credentials"]
        assert set(credentials["data"]) == {"redis-password", "postgres-password"}


def test_secret_check_can_fail() -> None:
    container = {
        "env": [
            {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": "A", "value": "redis://:$(REDIS_PASSWORD)@redis:6379/0"},
            {"name": "B", "value": "postgresql+psycopg://u:hunter2@db:5432/x"},
            {"name": "C", "value": "redis:6379,db=0,password=$(NOT_A_SECRET)"},
            {"name": "DB_PASSWORD", "value": "hunter2"},
        ]
    }
    found = inlined_secrets(container)
    assert len(found) == 3
    assert not any(p.startswith("A:") for p in found)


# ---- the chart's contract with the code ----------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from the caller's shell (TURBOMODE_<SECTION>__<FIELD>, TURBOMODE_CONFIG)
    leaks into Settings()."""
    for name in list(os.environ):
        if name == "TURBOMODE_CONFIG" or (name.startswith("TURBOMODE_") and "__" in name):
            monkeypatch.delenv(name)
    return monkeypatch


def test_schedules_match_settings(
    clean_env: pytest.MonkeyPatch, values: dict[str, Any], rendered: dict[str, list[Manifest]]
) -> None:
    from turbomode.config import Settings

    expected = Settings().schedules.model_dump()
    assert values["schedules"] == expected
    assert set(values["cronWorkflows"]["jobs"]) == set(expected) - {"timezone"} == set(JOB_COMMANDS)
    for profile, docs in rendered.items():
        crons = {
            c["metadata"]["labels"]["turbomode.io/job"]: c for c in of_kind(docs, "CronWorkflow")
        }
        assert set(crons) == set(ENABLED_JOBS), profile
        for job, cron in crons.items():
            spec = cron["spec"]
            assert spec["schedules"] == [expected[job]], (profile, job)
            assert spec["timezone"] == expected["timezone"]
            assert spec["concurrencyPolicy"] == "Forbid"
            assert spec["startingDeadlineSeconds"] > 0
            assert spec["successfulJobsHistoryLimit"] >= 1
            assert spec["failedJobsHistoryLimit"] >= 1
            wf = spec["workflowSpec"]
            assert wf["serviceAccountName"] == RELEASE
            entry, *templates = wf["templates"]
            steps = enabled_steps(job)
            assert wf["entrypoint"] == entry["name"]
            assert [g[0]["template"] for g in entry["steps"]] == [s.name for s in steps]
            assert all(len(g) == 1 for g in entry["steps"])  # one after the other
            assert [t["name"] for t in templates] == [s.name for s in steps], (profile, job)
            for step, template in zip(steps, templates, strict=True):
                assert int(template["retryStrategy"]["limit"]) >= 1
                container = template["container"]
                assert "turbomode/components:" in container["image"]
                assert [*container["command"], *container["args"]] == ["turbomode", *step.args]
                assert container["envFrom"][0]["configMapRef"]["name"] == f"{RELEASE}-settings"


def test_chart_steps_are_the_jobs_definition(values: dict[str, Any]) -> None:
    """values.yaml lists exactly turbomode.jobs.JOBS: names, commands, order, defaults."""
    for job, steps in JOBS.items():
        listed = values["cronWorkflows"]["jobs"][job]["steps"]
        assert [(s["name"], s["args"], s["enabled"]) for s in listed] == [
            (s.name, list(s.args), s.enabled) for s in steps
        ], job


@pytest.mark.parametrize("job", ENABLED_JOBS)
def test_cron_commands_exist_in_the_cli(job: str) -> None:
    """Each CronWorkflow's command is a real `turbomode` sub-command."""
    import typer.main

    from turbomode.cli.main import app

    command: Any = typer.main.get_command(app)
    root = command
    for path in JOB_COMMANDS[job]:
        command = root
        words = [w for w in path if not w.startswith("-")]
        for name in words:
            subcommands = getattr(command, "commands", None)
            if subcommands is None:  # a positional argument of the command reached
                break
            assert name in subcommands, f"`turbomode {' '.join(path)}` does not exist ({job})"
            command = subcommands[name]
        assert not getattr(command, "commands", None), f"`turbomode {' '.join(path)}` is a group"


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_environment_names_are_real_settings(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    from turbomode.config import Settings

    docs = rendered[profile]
    names = set(settings_configmap(docs))
    for _, container in turbomode_containers(docs):
        names |= {e["name"] for e in env_of(container)}
    settings_vars = {n for n in names if n.startswith("TURBOMODE_")}
    assert {
        "TURBOMODE_STORES__SIGNALS_URL",
        "TURBOMODE_STORES__REDIS_URL",
        "TURBOMODE_STORES__REGISTRY_SQL_URL",
        "TURBOMODE_STORES__MODEL_REGISTRY_URI",
        "TURBOMODE_STORES__PUSHGATEWAY_URL",
        "TURBOMODE_FEATURES__PROFILE",
        "TURBOMODE_COMPUTE__RAY_ADDRESS",
        "TURBOMODE_COMPUTE__DEVICE",
    } <= settings_vars
    for name in settings_vars:
        section, sep, field = name.removeprefix("TURBOMODE_").lower().partition("__")
        assert sep, f"{name} is not TURBOMODE_<SECTION>__<FIELD>"
        assert section in Settings.model_fields, f"{name}: no settings section {section!r}"
        model = Settings.model_fields[section].annotation
        assert model is not None and field in model.model_fields, f"{name}: no field {field!r}"


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_every_turbomode_container_sees_the_same_settings(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    """Jobs, Ray nodes and serving read the same stores: one ConfigMap, one set of store
    variables (serving adds only its own BENTOML_* process settings)."""
    containers = turbomode_containers(rendered[profile])
    assert len(containers) >= len(ENABLED_JOBS) + 3  # jobs, Ray head and workers, serving
    first_where, first = containers[0]
    shared = [e for e in env_of(first) if not e["name"].startswith("BENTOML_")]
    for where, container in containers:
        assert container["envFrom"] == first["envFrom"], (where, first_where)
        own = [e for e in env_of(container) if not e["name"].startswith("BENTOML_")]
        assert own == shared, (where, first_where)


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_rendered_environment_builds_the_settings(
    clean_env: pytest.MonkeyPatch, rendered: dict[str, list[Manifest]], profile: str, tmp_path: Path
) -> None:
    """Settings() read from a rendered container's environment (a Secret's value substituted)
    point at the chart's stores, and Feast's feature_store.yaml in the chart expands to the same
    configuration the library builds for the production profile."""
    from feast.repo_config import RepoConfig

    from turbomode.config import Settings
    from turbomode.feature_store import redis_connection_string, repo_config

    docs = rendered[profile]
    config = settings_configmap(docs)
    where, container = turbomode_containers(docs)[0]
    env = expand_env(container, config, secret="s3cr3t")
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = Settings()
    assert settings.features.profile == "production"
    assert settings.stores.signals_url.startswith("postgresql+psycopg://turbomode:s3cr3t@")
    assert settings.stores.redis_url.startswith(("redis://:s3cr3t@", "rediss://:s3cr3t@"))
    assert settings.stores.registry_sql_url.startswith("postgresql+psycopg://turbomode:s3cr3t@")
    assert settings.stores.pushgateway_url and settings.stores.pushgateway_url.startswith("http")
    assert settings.compute.ray_address == f"ray://{RELEASE}-ray-head-svc.{NAMESPACE}.svc:10001"
    assert env["FEAST_REDIS_CONNECTION_STRING"] == redis_connection_string(
        settings.stores.redis_url
    )
    if profile == "production":
        assert settings.stores.model_registry_uri.startswith("s3://")
        assert settings.compute.device == "cuda"
        assert settings.stores.registry_sql_url.endswith("/turbomode_feast?sslmode=require")

    feast_yaml = named(docs, "ConfigMap", f"{RELEASE}-feast")["data"]["feature_store.yaml"]
    clean_env.setenv("TURBOMODE_DATA__DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    from_chart = RepoConfig(repo_path=tmp_path, **yaml.safe_load(os.path.expandvars(feast_yaml)))
    from_code = repo_config(settings, "production")
    assert from_chart.project == from_code.project
    assert from_chart.registry.model_dump() == from_code.registry.model_dump()
    assert from_chart.online_store.model_dump() == from_code.online_store.model_dump()
    assert from_chart.offline_store.model_dump() == from_code.offline_store.model_dump()
    assert from_chart.entity_key_serialization_version == (
        from_code.entity_key_serialization_version
    ), where


def test_offline_store_follows_the_setting(helm: str) -> None:
    """The production profile joins on the RayCluster; features.offlineStore=duckdb keeps the
    join in the job's pod, and without the RayCluster the Ray store has no address to join."""

    def feast_offline(sets: list[str]) -> tuple[dict[str, Any], str]:
        docs = load_manifests(helm_template(helm, "default", sets).stdout)
        feast = yaml.safe_load(
            named(docs, "ConfigMap", f"{RELEASE}-feast")["data"]["feature_store.yaml"]
        )
        return feast["offline_store"], settings_configmap(docs)["TURBOMODE_FEATURES__OFFLINE_STORE"]

    ray, kind = feast_offline([])
    assert ray["type"] == "turbomode.feast_ray.PointInTimeRayOfflineStore" and kind == "auto"
    assert ray["ray_address"] == "${TURBOMODE_COMPUTE__RAY_ADDRESS}"
    assert feast_offline(["features.offlineStore=duckdb"]) == ({"type": "duckdb"}, "duckdb")
    no_cluster, _ = feast_offline(["ray.enabled=false"])
    assert "ray_address" not in no_cluster


def test_ray_version_and_app_version_match_the_lock(
    values: dict[str, Any], rendered: dict[str, list[Manifest]]
) -> None:
    lock = (REPO / "constraints.txt").read_text()
    ray = re.search(r"^ray==(\S+)$", lock, re.MULTILINE)
    assert ray is not None
    assert values["ray"]["rayVersion"] == ray.group(1)
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert version is not None and chart["appVersion"] == version.group(1)
    (cluster,) = of_kind(rendered["default"], "RayCluster")
    image = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"turbomode/components:{chart['appVersion']}"


@pytest.mark.parametrize("profile", PROFILE_IDS)
def test_ray_cluster_has_a_gpu_worker_group(
    rendered: dict[str, list[Manifest]], profile: str
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in PROFILES[profile]:  # the profile's ray section replaces the default keys
        values["ray"].update(yaml.safe_load((CHART / name).read_text()).get("ray", {}))
    (cluster,) = of_kind(rendered[profile], "RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"].get("limits", {})
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    wanted = {g["name"]: g for g in values["ray"]["workerGroups"]}
    assert set(groups) == set(wanted)
    gpu = groups["gpu"]
    pod = gpu["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == wanted["gpu"]["gpus"]
    assert pod["nodeSelector"] == wanted["gpu"]["nodeSelector"]
    assert pod["tolerations"] == wanted["gpu"]["tolerations"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (
        wanted["gpu"]["minReplicas"],
        wanted["gpu"]["maxReplicas"],
    )
    if profile == "production":
        assert gpu["minReplicas"] >= 1
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_serving_deployment_service_and_scaling(rendered: dict[str, list[Manifest]]) -> None:
    for profile, docs in rendered.items():
        name = f"{RELEASE}-serving"
        deployment = named(docs, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert "turbomode/serving:" in container["image"]
        module = container["command"][container["command"].index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, f"{module} is not importable"
        assert container["args"][-2:] == ["--port", "3000"]
        assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
        assert container["readinessProbe"]["httpGet"]["path"] in ("/readyz", "/health")
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        service = named(docs, "Service", name)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["ports"][0]["port"] == 3000
        hpa = named(docs, "HorizontalPodAutoscaler", name)
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert "replicas" not in deployment["spec"]  # the HPA owns the replica count
        pdb = named(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
        monitor = named(docs, "ServiceMonitor", name)
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
        if profile == "production":
            assert hpa["spec"]["minReplicas"] >= 3


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def test_network_policies_admit_what_is_needed(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["default"]
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies[f"{RELEASE}-default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Serving: port 3000 from anywhere.
    serving = policies[f"{RELEASE}-serving"]
    assert serving["ingress"] == [{"ports": [{"port": 3000, "protocol": "TCP"}]}]
    # The pods that use Redis and PostgreSQL: every job, every Ray node, serving.
    (cluster,) = of_kind(docs, "RayCluster")
    clients = [
        c["spec"]["workflowSpec"]["podMetadata"]["labels"] for c in of_kind(docs, "CronWorkflow")
    ]
    clients.append(cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"])
    clients += [g["template"]["metadata"]["labels"] for g in cluster["spec"]["workerGroupSpecs"]]
    clients.append(
        named(docs, "Deployment", f"{RELEASE}-serving")["spec"]["template"]["metadata"]["labels"]
    )
    for store, port in (("redis", 6379), ("postgresql", 5432)):
        policy = policies[f"{RELEASE}-{store}"]
        pods = named(docs, "StatefulSet", f"{RELEASE}-{store}")["spec"]["template"]["metadata"]
        assert _selects(policy["podSelector"], pods["labels"])
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
        for labels in clients:
            assert any(_selects(peer["podSelector"], labels) for peer in rule["from"]), labels
        outsider = {"app.kubernetes.io/name": "other", "app.kubernetes.io/instance": "x"}
        assert not any(_selects(peer["podSelector"], outsider) for peer in rule["from"])
    # Ray: node to node on every port (labels KubeRay sets), Ray client from TurboMode pods.
    ray = policies[f"{RELEASE}-ray"]
    assert ray["podSelector"] == {"matchLabels": {"ray.io/cluster": f"{RELEASE}-ray"}}
    assert ray["ingress"][0] == {
        "from": [{"podSelector": {"matchLabels": {"ray.io/cluster": f"{RELEASE}-ray"}}}]
    }
    client_rule = ray["ingress"][1]
    assert {"port": 10001, "protocol": "TCP"} in client_rule["ports"]
    assert all(_selects(client_rule["from"][0]["podSelector"], labels) for labels in clients)


# ---- monitoring -------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every series name the batch jobs push (turbomode.job_metrics) and BentoML's request metrics
    (namespace from BentoML's default configuration)."""
    from importlib import resources

    from prometheus_client.metrics import MetricWrapperBase

    from turbomode.job_metrics import JOB_GAUGES, JobMetrics
    from turbomode.serving import service_metrics as serving

    metrics = JobMetrics("scan")
    metrics.rows.labels(stage="x").inc()
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    names |= set(JOB_GAUGES)
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    for metric in vars(serving).values():
        if isinstance(metric, MetricWrapperBase):
            (family,) = metric.describe()
            names |= {family.name + suffix for suffix in suffixes[family.type]}
    config = resources.files("bentoml") / "_internal/configuration/v2/default_configuration.yaml"
    namespace = yaml.safe_load(config.read_text())["services"]["metrics"]["namespace"]
    for metric in ("request_total", "request_in_progress"):
        names.add(f"{namespace}_{metric}")
    names |= {f"{namespace}_request_duration_seconds{s}" for s in suffixes["histogram"]}
    return names


METRIC_NAME = re.compile(r"\b((?:turbomode|bentoml)_[a-z0-9_]+)\b")


def test_rules_and_dashboards_use_exported_metrics(rendered: dict[str, list[Manifest]]) -> None:
    exported = exported_metric_names()
    assert "turbomode_job_last_success_timestamp_seconds" in exported
    (rule,) = of_kind(rendered["default"], "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    for path in sorted((CHART / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    # Metric names, not label values (job="turbomode_scan"): drop the {…} matchers first.
    used = {name for e in exprs for name in METRIC_NAME.findall(re.sub(r"\{[^}]*\}", "", e))}
    assert used, "no metric found in rules and dashboards"
    assert used <= exported, f"not exported by the jobs or BentoML: {sorted(used - exported)}"
    scan_rule = [e for e in exprs if 'job="turbomode_scan"' in e]
    assert scan_rule and any("> 266400" in e for e in scan_rule)  # 74 h without a success


def test_promtool_checks_the_rules(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    for profile, docs in rendered.items():
        result = run([promtool, "check", "rules", str(rules_file(docs, tmp_path))])
        assert result.returncode == 0, f"{profile}: {result.stdout}{result.stderr}"
        assert "SUCCESS" in result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "A", "expr": "rate(x[5m]"}]}]})
    )
    assert run([promtool, "check", "rules", str(broken)]).returncode != 0


def test_promtool_rule_unit_tests(rendered: dict[str, list[Manifest]], tmp_path: Path) -> None:
    """The alerts fire when they should and stay quiet otherwise (promtool test rules)."""
    promtool = require_tool("promtool")
    rules = rules_file(rendered["default"], tmp_path, annotations=False)
    scan = 'turbomode_job_last_success_timestamp_seconds{job="turbomode_scan"}'

    def requests(code: str) -> str:
        labels = f'namespace="{NAMESPACE}", service="{RELEASE}-serving", endpoint="/predict"'
        return f'bentoml_service_request_total{{{labels}, http_response_code="{code}"}}'

    def duration(le: str) -> str:
        labels = f'namespace="{NAMESPACE}", service="{RELEASE}-serving", endpoint="/predict"'
        return f'bentoml_service_request_duration_seconds_bucket{{{labels}, le="{le}"}}'

    def outcomes(metric: str, horizon: str) -> str:
        return f'turbomode_signal_{metric}{{job="turbomode_outcomes", horizon="{horizon}"}}'

    def drifted(sector: str, horizon: str, window: str) -> str:
        labels = f'sector="{sector}", horizon="{horizon}", window="{window}", threshold="usual"'
        return f'turbomode_feature_drift_features{{job="turbomode_scan", {labels}}}'

    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {  # the scan succeeded at t=0 and never again: stale after 74 h (+10 m pending)
                "interval": "5m",
                "input_series": [
                    {"series": scan, "values": "0x1000"},
                    {"series": 'turbomode_job_success{job="turbomode_scan"}', "values": "1x1000"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "73h",
                        "alertname": "TurboModeNightlyScanStale",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "74h30m",
                        "alertname": "TurboModeNightlyScanStale",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "job": "turbomode_scan"}}
                        ],
                    },
                    {"eval_time": "74h30m", "alertname": "TurboModeJobFailed", "exp_alerts": []},
                    {
                        "eval_time": "75h",
                        "alertname": "TurboModeNightlyScanMissing",
                        "exp_alerts": [],
                    },
                ],
            },
            {  # nothing ever reported: missing after 74 h
                "interval": "5m",
                "input_series": [{"series": "up", "values": "1x1000"}],
                "alert_rule_test": [
                    {
                        "eval_time": "73h",
                        "alertname": "TurboModeNightlyScanMissing",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "74h10m",
                        "alertname": "TurboModeNightlyScanMissing",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "critical", "job": "turbomode_scan"}}
                        ],
                    },
                ],
            },
            {  # a job's last run failed
                "interval": "1m",
                "input_series": [
                    {"series": 'turbomode_job_success{job="turbomode_train"}', "values": "0x20"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "TurboModeJobFailed",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "job": "turbomode_train"}}
                        ],
                    }
                ],
            },
            {  # the online store's newest close stops moving at t=0: stale after 108 h (+30 m)
                "interval": "5m",
                "input_series": [
                    {
                        "series": "turbomode_features_latest_timestamp_seconds"
                        '{job="turbomode_materialize"}',
                        "values": "0x1400",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "108h20m",
                        "alertname": "TurboModeFeaturesStale",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "108h40m",
                        "alertname": "TurboModeFeaturesStale",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                ],
            },
            {  # no materialization ever reported: the features alert fires on absence too
                "interval": "5m",
                "input_series": [{"series": "up", "values": "1x40"}],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "TurboModeFeaturesStale", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "TurboModeFeaturesStale",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                ],
            },
            {  # fresh features (the close moves every 24 h): quiet, absent() included
                "interval": "5m",
                "input_series": [
                    {
                        "series": "turbomode_features_latest_timestamp_seconds"
                        '{job="turbomode_materialize"}',
                        "values": "0x287 86400x287 172800x287",
                    }
                ],
                "alert_rule_test": [
                    {"eval_time": "70h", "alertname": "TurboModeFeaturesStale", "exp_alerts": []}
                ],
            },
            {  # the scan found a new bar on night 1, none on night 2, stale vectors on night 3
                "interval": "5m",
                "input_series": [
                    {
                        "series": 'turbomode_scan_new_bar{job="turbomode_scan"}',
                        "values": "1x287 0x287 1x287",
                    },
                    {
                        "series": 'turbomode_scan_stale_features{job="turbomode_scan"}',
                        "values": "0x287 0x287 5x287",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "20h", "alertname": "TurboModeScanNoNewData", "exp_alerts": []},
                    {
                        "eval_time": "30h",
                        "alertname": "TurboModeScanNoNewData",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {"eval_time": "50h", "alertname": "TurboModeScanNoNewData", "exp_alerts": []},
                    {
                        "eval_time": "30h",
                        "alertname": "TurboModeScanStaleFeatures",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "50h",
                        "alertname": "TurboModeScanStaleFeatures",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                ],
            },
            {  # 1 day: below the floor over enough outcomes; 2: above it; 5: too few to judge
                "interval": "1m",
                "input_series": [
                    {"series": outcomes("hit_rate", "1"), "values": "0.25x120"},
                    {"series": outcomes("outcomes_window", "1"), "values": "40x120"},
                    {"series": outcomes("hit_rate", "2"), "values": "0.45x120"},
                    {"series": outcomes("outcomes_window", "2"), "values": "40x120"},
                    {"series": outcomes("hit_rate", "5"), "values": "0.10x120"},
                    {"series": outcomes("outcomes_window", "5"), "values": "10x120"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "50m",
                        "alertname": "TurboModeSignalHitRateLow",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "70m",
                        "alertname": "TurboModeSignalHitRateLow",
                        "exp_alerts": [{"exp_labels": {"severity": "warning", "horizon": "1"}}],
                    },
                ],
            },
            {  # one refused retrain, then a second in a row
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'turbomode_retrain_consecutive_refusals{job="turbomode_retrain"}',
                        "values": "1x30 2x30",
                    }
                ],
                "alert_rule_test": [
                    {"eval_time": "25m", "alertname": "TurboModeRetrainRefused", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "TurboModeRetrainRefused",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                ],
            },
            {  # drift: Energy/5d has 3 unusual features (quiet) then 12 (fires after 30 m);
                # Utilities/1d's score PSI passes its usual 0.3; the night's window never alerts
                "interval": "1m",
                "input_series": [
                    {"series": drifted("Energy", "5", "20d"), "values": "3x60 12x60"},
                    {"series": drifted("Energy", "5", "tonight"), "values": "40x120"},
                    {"series": drifted("Utilities", "1", "20d"), "values": "0x120"},
                    {
                        "series": 'turbomode_prediction_drift_psi{job="turbomode_scan", '
                        'sector="Utilities", horizon="1", window="20d"}',
                        "values": "0.05x60 0.4x60",
                    },
                    {
                        "series": 'turbomode_prediction_drift_usual_psi{job="turbomode_scan", '
                        'sector="Utilities", horizon="1", window="20d"}',
                        "values": "0.3x120",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "55m", "alertname": "TurboModeFeatureDrift", "exp_alerts": []},
                    {
                        "eval_time": "85m",
                        "alertname": "TurboModeFeatureDrift",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "100m",
                        "alertname": "TurboModeFeatureDrift",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "sector": "Energy",
                                    "horizon": "5",
                                }
                            },
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "sector": "Utilities",
                                    "horizon": "1",
                                }
                            },
                        ],
                    },
                ],
            },
            {  # /predict: an hour all under 0.1 s (quiet), then 10 % take 0.1–0.5 s (p99 ≈ 0.46 s)
                "interval": "1m",
                "input_series": [
                    {"series": duration("0.1"), "values": "0+100x60 6000+90x60"},
                    {"series": duration("0.5"), "values": "0+100x60 6000+100x60"},
                    {"series": duration("+Inf"), "values": "0+100x60 6000+100x60"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "50m",
                        "alertname": "TurboModeServingLatencyHigh",
                        "exp_alerts": [],
                    },
                    {
                        "eval_time": "95m",
                        "alertname": "TurboModeServingLatencyHigh",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning", "endpoint": "/predict"}}
                        ],
                    },
                ],
            },
            {  # serving: 10 % of requests answer 5xx (alert), then 1 % (quiet)
                "interval": "1m",
                "input_series": [
                    {"series": requests("200"), "values": "0+90x60 5400+99x60"},
                    {"series": requests("500"), "values": "0+10x60 600+1x60"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "TurboModeServingErrorRate",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {
                        "eval_time": "115m",
                        "alertname": "TurboModeServingErrorRate",
                        "exp_alerts": [],
                    },
                ],
            },
        ],
    }
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run([promtool, "test", "rules", str(test_file)])
    assert result.returncode == 0, result.stdout + result.stderr
    # The same tests fail against rules that never fire: the tests can tell.
    silent = yaml.safe_load(rules.read_text())
    for group in silent["groups"]:
        for rule in group["rules"]:
            rule["expr"] = "vector(1) == 0"
    rules.write_text(yaml.safe_dump(silent))
    assert run([promtool, "test", "rules", str(test_file)]).returncode != 0


def test_plain_rules_file_is_the_charts(helm: str, tmp_path: Path) -> None:
    """monitoring/prometheus/turbomode-rules.yml is what the chart renders now, and valid."""
    promtool = require_tool("promtool")
    script = REPO / "tools" / "render_rules.py"
    result = run([sys.executable, str(script), "--helm", helm, "--check"])
    assert result.returncode == 0, result.stdout + result.stderr
    plain = REPO / "monitoring" / "prometheus" / "turbomode-rules.yml"
    check = run([promtool, "check", "rules", str(plain)])
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = {r["alert"] for g in yaml.safe_load(plain.read_text())["groups"] for r in g["rules"]}
    assert {"TurboModeSignalHitRateLow", "TurboModeServingLatencyHigh"} <= alerts
    assert 'job="turbomode-serving"' in plain.read_text()


def _matchers(items: list[dict[str, str]]) -> list[str]:
    """AlertmanagerConfig matchers as the plain file writes them (name op "value")."""
    return [f'{m["name"]}{m["matchType"]}"{m["value"]}"' for m in items]


def test_alertmanager_config_routes_as_the_plain_file(
    rendered: dict[str, list[Manifest]], values: dict[str, Any]
) -> None:
    """The chart's AlertmanagerConfig (production values: every receiver on) routes, groups
    and inhibits as monitoring/alertmanager/alertmanager.yml does (the file the Alertmanager
    test runs), with each credential from a Secret; the default values render none."""
    assert not values["monitoring"]["alertmanagerConfig"]["enabled"]
    assert not of_kind(rendered["default"], "AlertmanagerConfig")
    (doc,) = of_kind(rendered["production"], "AlertmanagerConfig")
    plain = yaml.safe_load((REPO / "monitoring" / "alertmanager" / "alertmanager.yml").read_text())
    spec, route = doc["spec"], plain["route"]
    assert spec["route"]["receiver"] == route["receiver"]
    assert spec["route"]["groupBy"] == route["group_by"]
    for chart_key, plain_key in (
        ("groupWait", "group_wait"),
        ("groupInterval", "group_interval"),
        ("repeatInterval", "repeat_interval"),
    ):
        assert spec["route"][chart_key] == route[plain_key], chart_key
    assert [
        (r["receiver"], _matchers(r["matchers"]), r["repeatInterval"])
        for r in spec["route"]["routes"]
    ] == [(r["receiver"], r["matchers"], r["repeat_interval"]) for r in route["routes"]]
    assert [
        (_matchers(r["sourceMatch"]), _matchers(r["targetMatch"]), r.get("equal"))
        for r in spec["inhibitRules"]
    ] == [
        (r["source_matchers"], r["target_matchers"], r.get("equal")) for r in plain["inhibit_rules"]
    ]
    kinds = {"emailConfigs": "email_configs", "slackConfigs": "slack_configs"}
    kinds["webhookConfigs"] = "webhook_configs"
    chart_receivers = {r["name"]: {kinds[k] for k in r if k in kinds} for r in spec["receivers"]}
    plain_receivers = {r["name"]: {k for k in r if k != "name"} for r in plain["receivers"]}
    assert chart_receivers == plain_receivers
    refs = [
        c.get("authPassword") or c.get("apiURL") or c.get("urlSecret")
        for r in spec["receivers"]
        for k in kinds
        for c in r.get(k, [])
    ]
    assert refs and all(ref["name"] == "turbomode-alerting" and ref["key"] for ref in refs)
    slack = next(c for r in spec["receivers"] for c in r.get("slackConfigs", []))
    plain_slack = next(c for r in plain["receivers"] for c in r.get("slack_configs", []))
    assert (slack["title"], slack["text"]) == (plain_slack["title"], plain_slack["text"])


def test_alertmanager_config_needs_its_secrets(helm: str) -> None:
    result = helm_template(
        helm,
        sets=[
            "monitoring.alertmanagerConfig.enabled=true",
            "monitoring.alertmanagerConfig.slack.enabled=true",
        ],
    )
    assert result.returncode != 0
    assert "slack.apiUrlSecret.name is required" in result.stderr


def test_amtool_checks_the_plain_alertmanager_file(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    plain = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
    result = run([amtool, "check-config", str(plain)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout and "2 receivers" in result.stdout
    broken = tmp_path / "alertmanager.yml"
    config = yaml.safe_load(plain.read_text())
    config["route"]["routes"][0]["receiver"] = "nobody"
    broken.write_text(yaml.safe_dump(config))
    assert run([amtool, "check-config", str(broken)]).returncode != 0


def test_grafana_dashboards_configmap(rendered: dict[str, list[Manifest]]) -> None:
    for docs in rendered.values():
        cm = named(docs, "ConfigMap", f"{RELEASE}-dashboards")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
        assert files and sorted(cm["data"]) == files
        for name, text in cm["data"].items():
            dashboard = json.loads(text)
            assert dashboard["title"] and dashboard["uid"], name
            assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"]), name


# ---- checkov ----------------------------------------------------------------------------------

INSECURE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: insecure, namespace: turbomode}
spec:
  selector: {matchLabels: {app: insecure}}
  template:
    metadata: {labels: {app: insecure}}
    spec:
      containers:
        - name: app
          image: example/app:latest
          securityContext: {privileged: true}
"""


def test_checkov_finds_nothing_unwaived(rendered_text: dict[str, str], tmp_path: Path) -> None:
    """checkov's Kubernetes checks pass on both renderings; the only skips are the chart's
    waivers, each with its reason. A deliberately insecure manifest scanned alongside proves the
    scan runs and fails."""
    checkov = require_tool("checkov")
    scan = tmp_path / "scan"
    scan.mkdir()
    for profile, text in rendered_text.items():
        (scan / f"{profile}.yaml").write_text(text)
    (scan / "insecure.yaml").write_text(INSECURE)
    result = run(
        [checkov, "-d", str(scan), "--framework", "kubernetes", "-o", "json", "--skip-download"],
        timeout=300,
    )
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    results = report["results"]
    failed = [(c["file_path"], c["check_id"], c["resource"]) for c in results["failed_checks"]]
    chart_failures = [f for f in failed if not f[0].endswith("insecure.yaml")]
    assert not chart_failures, "\n".join(map(str, chart_failures))
    assert any(f[0].endswith("insecure.yaml") for f in failed)
    assert len(results["passed_checks"]) > 100
    assert not results.get("parsing_errors")
    for check in results["skipped_checks"]:
        assert check["check_id"] in ALLOWED_WAIVERS, check["check_id"]
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} has no reason"


def test_production_rendering_is_deterministic(helm: str) -> None:
    first, second = (helm_template(helm, "production") for _ in range(2))
    assert first.returncode == 0
    assert first.stdout == second.stdout
    assert load_manifests(first.stdout)
