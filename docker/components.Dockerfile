# syntax=docker/dockerfile:1
# The components image: the `turbomode` command, the Kubeflow components and the Ray nodes
# (CronWorkflows, KFP steps and the RayCluster all run it). Build from the repository root:
#   make images REGISTRY=… TAG=…
#   docker build -f docker/components.Dockerfile -t turbomode/components:0.1.0 .

# ---- build: install the project from the lock into /install --------------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# Every dependency ships a wheel except kfp-server-api, which is pure Python: no compiler here.
# `cluster`: the Ray client and dashboard agent (ray[default]) and s3fs for an s3:// registry.
ARG EXTRAS=live,features,train,store,pipelines,regime,cluster
RUN python -m pip install --prefix=/install --only-binary=:all: --no-binary=kfp-server-api \
        -c constraints.txt ".[${EXTRAS}]"

# ---- runtime: the interpreter, the installed packages and an unprivileged user ---------------
FROM python:3.11.14-slim-bookworm AS runtime
# libgomp1: the OpenMP runtime LightGBM links against; wget: KubeRay's default health probes
# of Ray nodes call it. The base tag pins the Debian release; the package versions follow its
# security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 wget \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 turbomode \
 && useradd --uid 10001 --gid 10001 --home-dir /home/turbomode --create-home \
        --shell /usr/sbin/nologin turbomode
COPY --from=build /install /usr/local
WORKDIR /app
COPY feature_repo ./feature_repo
COPY components ./components
COPY pipelines ./pipelines
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/turbomode
USER 10001:10001
CMD ["turbomode", "--help"]
