# syntax=docker/dockerfile:1
# The serving image: the BentoML service (turbomode.serving.service) from the installed
# package. Build from the repository root:
#   make images REGISTRY=… TAG=…
#   docker build -f docker/serving.Dockerfile -t turbomode/serving:0.1.0 .

# ---- build: install the project from the lock into /install --------------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# `cluster`: s3fs for an s3:// model registry (and the Ray client, as in the components image).
ARG EXTRAS=features,train,store,serve,cluster
RUN python -m pip install --prefix=/install --only-binary=:all: \
        -c constraints.txt ".[${EXTRAS}]"

# ---- runtime: the interpreter, the installed packages and an unprivileged user ---------------
FROM python:3.11.14-slim-bookworm AS runtime
# libgomp1: the OpenMP runtime LightGBM links against. The base tag pins the Debian release;
# the package version follows its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 turbomode \
 && useradd --uid 10001 --gid 10001 --home-dir /home/turbomode --create-home \
        --shell /usr/sbin/nologin turbomode
COPY --from=build /install /usr/local
WORKDIR /app
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/turbomode \
    BENTOML_HOME=/home/turbomode/bentoml \
    BENTOML_DO_NOT_TRACK=True
USER 10001:10001
EXPOSE 3000
# `turbomode serve` standalone: resolves the settings like every command, then becomes
# `bentoml serve turbomode.serving.service:TurboMode`.
CMD ["python", "-m", "turbomode.cli.serve", "--host", "0.0.0.0", "--port", "3000"]
