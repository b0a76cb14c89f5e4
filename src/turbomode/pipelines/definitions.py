"""The KFP pipelines, built from the components, and their compilation to YAML.

Steps hand each other small reports; the data itself stays in the stores the settings name.
On a cluster every step therefore mounts the same volume (``data_pvc`` at
``/var/lib/turbomode``, where the chart's jobs and Ray nodes mount it) and reads its settings
file from a Secret (``settings_secret`` at ``/etc/turbomode/pipeline``). The Helm chart renders
that Secret from the same values as its jobs' settings; its store URLs leave the passwords out
as ``${POSTGRES_PASSWORD}`` / ``${REDIS_PASSWORD}``, which each step takes from the Secrets
named by ``postgres_secret`` and ``redis_secret`` and the components expand
(:func:`turbomode.pipelines.runtime.settings`). All these names are run parameters whose
defaults are what ``helm install turbomode charts/turbomode`` creates (tests/deploy checks).
Steps run as the images' user (uid 10001), the owner of the volume's files, and carry the
labels the chart's NetworkPolicies admit to Redis, PostgreSQL, the Pushgateway and the Ray
client. Every step reads stores that change daily while its inputs may not, so caching is off
everywhere: a cached train step would skip training on new data.

No ``from __future__ import annotations`` here: KFP reads the pipeline functions' parameter
annotations as types.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turbomode import __version__
from turbomode.pipelines.components import Components, make_components

IMAGE_ENV = "TURBOMODE_COMPONENTS_IMAGE"
# `make images` tags <REGISTRY>/components:<version> with REGISTRY=turbomode by default, and the
# chart pulls <images.registry>/components:<appVersion> with images.registry=turbomode.
DEFAULT_REGISTRY = "turbomode"
DEFAULT_IMAGE = f"{DEFAULT_REGISTRY}/components:{__version__}"

# What `helm install turbomode charts/turbomode` creates (release "turbomode", default values).
RELEASE = "turbomode"
DATA_PVC = f"{RELEASE}-data"
DATA_MOUNT = "/var/lib/turbomode"  # the chart's persistence.mountPath
SETTINGS_SECRET = f"{RELEASE}-pipeline-settings"
SETTINGS_MOUNT = "/etc/turbomode/pipeline"
CONFIG_FILE = f"{SETTINGS_MOUNT}/config.yaml"
# The chart generates the bundled stores' passwords into this Secret; with existing Secrets
# (values-production.yaml) pass their names as postgres_secret / redis_secret.
CREDENTIALS_SECRET = f"{RELEASE}-credentials"
RUN_AS = 10001  # the user of the TurboMode images (docker/components.Dockerfile)

# Environment each step takes from Secrets: run parameter → {Secret key: variable}. Every entry
# is optional: a Secret or key that is absent leaves its variable unset, and a settings file
# that refers to it (``${POSTGRES_PASSWORD}``) then fails the step with the variable's name.
SECRET_ENV: dict[str, dict[str, str]] = {
    # The passwords the chart's settings file leaves out of its store URLs (the chart's
    # existingSecretPasswordKey defaults).
    "postgres_secret": {"postgres-password": "POSTGRES_PASSWORD"},
    "redis_secret": {"redis-password": "REDIS_PASSWORD"},
    # An S3 model registry's credentials (the chart's modelRegistry.existingSecret).
    "model_registry_secret": {
        name: name
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        )
    },
    # Process settings that are not TurboMode settings, beside config.yaml in the chart's
    # settings Secret (modelRegistry.endpointUrl, e.g. MinIO).
    "settings_secret": {"AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"},
}

# The chart admits pods with these labels (its release's client selector) to Redis, PostgreSQL,
# the Pushgateway and the Ray client port.
POD_LABELS = {
    "app.kubernetes.io/name": "turbomode",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/part-of": "turbomode",
    "app.kubernetes.io/component": "pipeline",
}

# Steps that reach the network (a market data API; Redis for the online store) retry with
# backoff: 1 min, 2 min, 4 min. Both are safe to repeat (ingest rewrites the clean store,
# materialize is idempotent).
RETRIES = 3
RETRY_BACKOFF = "60s"
RETRY_FACTOR = 2.0


def default_image() -> str:
    """The components image: TURBOMODE_COMPONENTS_IMAGE, else the one tagged with this
    version."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


@dataclass(frozen=True)
class GpuOptions:
    """Put the training step on a GPU node, with Ray started inside the step's pod.

    The step runs with TURBOMODE_COMPUTE__DEVICE=cuda and TURBOMODE_COMPUTE__GPUS_PER_TASK,
    which override the settings file: the pod pays for a GPU, so training must use it. It also
    runs with an empty TURBOMODE_COMPUTE__RAY_ADDRESS, so the settings file's Ray cluster (the
    chart's) is not joined: a remote Ray cluster would not see this GPU. Leave the
    ``ray_address`` run parameter empty with this variant for the same reason.
    """

    accelerator: str = "nvidia.com/gpu"
    count: int = 1
    node_selector: dict[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}
    )
    toleration_key: str = "nvidia.com/gpu"
    gpus_per_task: float = 0.25


@dataclass(frozen=True)
class PipelineInfo:
    """A pipeline as the CLI lists it (name, what it is for) and how to build it."""

    name: str
    description: str
    build: Callable[[Components], Any]


@dataclass(frozen=True)
class Cluster:
    """The run parameters that name what a step uses on the cluster (see ``CLUSTER_PARAMS``)."""

    data_pvc: Any
    settings_secret: Any
    postgres_secret: Any
    redis_secret: Any
    model_registry_secret: Any


# Every pipeline's cluster parameters and their defaults, in the order the pipelines declare
# them (``config`` is the settings file inside the step's container).
CLUSTER_PARAMS: dict[str, str] = {
    "config": CONFIG_FILE,
    "data_pvc": DATA_PVC,
    "settings_secret": SETTINGS_SECRET,
    "postgres_secret": CREDENTIALS_SECRET,
    "redis_secret": CREDENTIALS_SECRET,
    "model_registry_secret": CREDENTIALS_SECRET,
}


def _on_cluster(task: Any, cluster: Cluster, retries: bool = False) -> Any:
    """The data volume, the settings file and the Secrets' variables, the images' user, the
    chart's client labels, no caching, and retries for network steps."""
    from kfp import kubernetes

    kubernetes.mount_pvc(task, pvc_name=cluster.data_pvc, mount_path=DATA_MOUNT)
    kubernetes.use_secret_as_volume(
        task, secret_name=cluster.settings_secret, mount_path=SETTINGS_MOUNT
    )
    for param, key_to_env in SECRET_ENV.items():
        kubernetes.use_secret_as_env(
            task,
            secret_name=getattr(cluster, param),
            secret_key_to_env=key_to_env,
            optional=True,
        )
    kubernetes.set_security_context(
        task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True
    )
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, label_key=key, label_value=value)
    task.set_caching_options(enable_caching=False)
    if retries:
        task.set_retry(RETRIES, backoff_duration=RETRY_BACKOFF, backoff_factor=RETRY_FACTOR)
    return task


def _use_gpu(task: Any, gpu: GpuOptions) -> None:
    from kfp import kubernetes

    task.set_accelerator_type(gpu.accelerator).set_accelerator_limit(gpu.count)
    for key, value in sorted(gpu.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, key=gpu.toleration_key, operator="Exists", effect="NoSchedule")
    task.set_env_variable("TURBOMODE_COMPUTE__DEVICE", "cuda")
    task.set_env_variable("TURBOMODE_COMPUTE__GPUS_PER_TASK", str(gpu.gpus_per_task))
    task.set_env_variable("TURBOMODE_COMPUTE__RAY_ADDRESS", "")


def _data_steps(
    c: Components,
    config: Any,
    cluster: Cluster,
    source: Any = "",
    symbols: Any = "",
    start: Any = "",
    end: Any = "",
) -> Any:
    """ingest → build features → materialize; returns the features and materialize tasks."""
    got = c.ingest(config=config, source=source, symbols=symbols, start=start, end=end)
    _on_cluster(got.set_display_name("ingest"), cluster, retries=True)
    built = c.build_features(config=config, clean=got.outputs["clean"])
    _on_cluster(built.set_display_name("build features"), cluster)
    online = c.materialize(config=config, features=built.outputs["features"])
    _on_cluster(online.set_display_name("materialize"), cluster, retries=True)
    return built, online


def training_pipeline(c: Components, gpu: GpuOptions | None = None) -> Any:
    """ingest → features → online store → train every sector × horizon on Ray → gate →
    promote."""
    from kfp import dsl

    name = "turbomode-training-gpu" if gpu else "turbomode-training"

    @dsl.pipeline(name=name, description=TRAINING_DESCRIPTION)
    def training(
        config: str = CONFIG_FILE,
        data_pvc: str = DATA_PVC,
        settings_secret: str = SETTINGS_SECRET,
        postgres_secret: str = CREDENTIALS_SECRET,
        redis_secret: str = CREDENTIALS_SECRET,
        model_registry_secret: str = CREDENTIALS_SECRET,
        source: str = "",
        symbols: str = "",
        start: str = "",
        end: str = "",
        sectors: str = "",
        ray_address: str = "",
    ) -> None:
        cluster = Cluster(
            data_pvc, settings_secret, postgres_secret, redis_secret, model_registry_secret
        )
        built, online = _data_steps(c, config, cluster, source, symbols, start, end)
        trained = c.train(
            config=config,
            features=built.outputs["features"],
            sectors=sectors,
            ray_address=ray_address,
        ).after(online)
        _on_cluster(trained.set_display_name("train on Ray"), cluster)
        if gpu is not None:
            _use_gpu(trained, gpu)
        gated = c.evaluate_and_gate(config=config, run=trained.outputs["run"])
        _on_cluster(gated.set_display_name("evaluate and gate"), cluster)
        promoted = c.promote(config=config, decisions=gated.outputs["decisions"])
        _on_cluster(promoted.set_display_name("promote"), cluster)

    return training


TRAINING_DESCRIPTION = (
    "Ingest, build features into Feast, load the online store, train every sector x horizon "
    "ensemble on Ray, evaluate out of time beside the baselines, gate and promote."
)


def nightly_scan_pipeline(c: Components) -> Any:
    """ingest → features → online store → tonight's signals."""
    from kfp import dsl

    @dsl.pipeline(
        name="turbomode-nightly-scan",
        description="Ingest the day's bars, rebuild features, load the online store and scan: "
        "production ensembles, signal rules, stops, targets and the position book.",
    )
    def nightly_scan(
        config: str = CONFIG_FILE,
        data_pvc: str = DATA_PVC,
        settings_secret: str = SETTINGS_SECRET,
        postgres_secret: str = CREDENTIALS_SECRET,
        redis_secret: str = CREDENTIALS_SECRET,
        model_registry_secret: str = CREDENTIALS_SECRET,
        source: str = "",
        end: str = "",
        scan_date: str = "",
    ) -> None:
        cluster = Cluster(
            data_pvc, settings_secret, postgres_secret, redis_secret, model_registry_secret
        )
        _built, online = _data_steps(c, config, cluster, source=source, end=end)
        scanned = c.scan(config=config, online=online.outputs["online"], scan_date=scan_date)
        _on_cluster(scanned.set_display_name("scan"), cluster)

    return nightly_scan


def outcomes_pipeline(c: Components) -> Any:
    from kfp import dsl

    @dsl.pipeline(
        name="turbomode-outcomes",
        description="Record how past signals turned out against the bars since.",
    )
    def outcomes(
        config: str = CONFIG_FILE,
        data_pvc: str = DATA_PVC,
        settings_secret: str = SETTINGS_SECRET,
        postgres_secret: str = CREDENTIALS_SECRET,
        redis_secret: str = CREDENTIALS_SECRET,
        model_registry_secret: str = CREDENTIALS_SECRET,
        as_of: str = "",
    ) -> None:
        cluster = Cluster(
            data_pvc, settings_secret, postgres_secret, redis_secret, model_registry_secret
        )
        tracked = c.track_outcomes(config=config, as_of=as_of)
        _on_cluster(tracked.set_display_name("track outcomes"), cluster)

    return outcomes


def weekly_samples_pipeline(c: Components) -> Any:
    from kfp import dsl

    @dsl.pipeline(
        name="turbomode-weekly-samples",
        description="Turn the week's tracked outcomes into training samples.",
    )
    def weekly_samples(
        config: str = CONFIG_FILE,
        data_pvc: str = DATA_PVC,
        settings_secret: str = SETTINGS_SECRET,
        postgres_secret: str = CREDENTIALS_SECRET,
        redis_secret: str = CREDENTIALS_SECRET,
        model_registry_secret: str = CREDENTIALS_SECRET,
    ) -> None:
        cluster = Cluster(
            data_pvc, settings_secret, postgres_secret, redis_secret, model_registry_secret
        )
        made = c.generate_samples(config=config)
        _on_cluster(made.set_display_name("generate samples"), cluster)

    return weekly_samples


def monthly_retrain_pipeline(c: Components) -> Any:
    from kfp import dsl

    @dsl.pipeline(
        name="turbomode-monthly-retrain",
        description="Retrain on the accumulated samples once there are enough of them.",
    )
    def monthly_retrain(
        config: str = CONFIG_FILE,
        data_pvc: str = DATA_PVC,
        settings_secret: str = SETTINGS_SECRET,
        postgres_secret: str = CREDENTIALS_SECRET,
        redis_secret: str = CREDENTIALS_SECRET,
        model_registry_secret: str = CREDENTIALS_SECRET,
        min_samples: int = 0,
        sectors: str = "",
        ray_address: str = "",
    ) -> None:
        cluster = Cluster(
            data_pvc, settings_secret, postgres_secret, redis_secret, model_registry_secret
        )
        done = c.retrain(
            config=config, min_samples=min_samples, sectors=sectors, ray_address=ray_address
        )
        _on_cluster(done.set_display_name("retrain"), cluster)

    return monthly_retrain


PIPELINES: dict[str, PipelineInfo] = {
    p.name: p
    for p in (
        PipelineInfo("training", TRAINING_DESCRIPTION, training_pipeline),
        PipelineInfo(
            "training-gpu",
            "training with the train step on a GPU node (node selector, toleration, "
            "accelerator) and Ray inside its pod",
            lambda c: training_pipeline(c, GpuOptions()),
        ),
        PipelineInfo(
            "nightly-scan", "ingest → features → online store → scan", nightly_scan_pipeline
        ),
        PipelineInfo("outcomes", "track how past signals turned out", outcomes_pipeline),
        PipelineInfo("weekly-samples", "outcomes → training samples", weekly_samples_pipeline),
        PipelineInfo("monthly-retrain", "retrain on the samples", monthly_retrain_pipeline),
    )
}


def get_pipeline(name: str, image: str | None = None) -> Any:
    """The pipeline called ``name`` (see :data:`PIPELINES`) on ``image``."""
    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    return PIPELINES[name].build(make_components(image or default_image()))


def compile_pipeline(name: str, path: Path, image: str | None = None) -> Path:
    """Compile one pipeline to ``path`` (YAML)."""
    from kfp import compiler

    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(get_pipeline(name, image), package_path=str(path))
    return path


def compile_all(
    pipelines_dir: Path, components_dir: Path | None = None, image: str | None = None
) -> list[Path]:
    """Every pipeline to ``pipelines_dir/<name>.yaml`` and, when given, every component to
    ``components_dir/<component>.yaml`` (reusable elsewhere through
    ``kfp.components.load_component_from_file``)."""
    from kfp import compiler

    written = [compile_pipeline(n, pipelines_dir / f"{n}.yaml", image) for n in PIPELINES]
    if components_dir is not None:
        components_dir.mkdir(parents=True, exist_ok=True)
        for cname, component in make_components(image or default_image()).items():
            path = components_dir / f"{cname}.yaml"
            compiler.Compiler().compile(component, package_path=str(path))
            written.append(path)
    return written
