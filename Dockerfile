# syntax=docker/dockerfile:1.7
# PLANT-ICD images, two targets (BuildKit builds only the stages a target needs):
#   serve (the default, last stage): FastAPI + ONNX Runtime, no torch, non-root, HEALTHCHECK on /readyz
#       docker build -t plant-icd-serve .                                     (bundle mounted at run time)
#       docker build -t plant-icd-serve:codiesp-d-en --build-arg BUNDLE_SOURCE=baked \
#                    --build-arg BUNDLE_DIR=bundles/codiesp-d-en .            (bundle baked in)
#   train: the `plant-icd` training commands with torch (CPU by default), no web stack
#       docker build --target train -t plant-icd-train .
#       docker build --target train --build-arg TRAIN_BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                    --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t plant-icd-train:cuda .
# Secrets (API keys file, database password) are never built in: mount them and point
# PLANT_ICD_API_KEYS_FILE / PLANT_ICD_DATABASE_PASSWORD_FILE at them (docs/OPERATIONS.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG TRAIN_BASE=python:3.11-slim-bookworm
# mount: the image has an empty /srv/bundle to mount a bundle on; baked: BUNDLE_DIR is copied in.
ARG BUNDLE_SOURCE=mount

# ---- the package sources, and nothing else of the build context ------------------------------
# serve-source: what the serving image installs, no training code; source adds training/.
FROM scratch AS serve-source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plant_icd/ plant_icd/
COPY model/ model/
COPY service/ service/

FROM serve-source AS source
COPY training/ training/

# ---- train: torch and the training stack ------------------------------------------------------
FROM ${TRAIN_BASE} AS train
# The CPU wheel index by default; a CUDA base image wants the matching CUDA index.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# CUDA bases ship no Python (or an old one); the project needs 3.11 or newer.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    && python3 -m venv /opt/venv \
    && (getent group 10001 || groupadd --gid 10001 plant) \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/plant --shell /bin/sh plant
COPY --from=source /src /tmp/src
# torch first, from the chosen index, so the `train` extra's torch==2.13.0 pin is already met.
# No `serve` extra: `plant-icd` mounts each command group lazily, so the service's commands are
# listed here but say which extra they need.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
    && pip install "/tmp/src[train]" \
    && rm -rf /tmp/src
WORKDIR /work
RUN chown plant /work
USER 10001:10001
# Corpora, stage caches (runs/) and written bundles live in /work: mount a volume there.
VOLUME ["/work"]
ENTRYPOINT ["plant-icd"]
CMD ["--help"]

# ---- serve-build: the serving virtual environment, built by the script the smoke test runs ----
FROM ${PYTHON_IMAGE} AS serve-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deploy/docker/build-serve-env.sh /usr/local/bin/build-serve-env
COPY --from=serve-source /src /tmp/src
RUN sh /usr/local/bin/build-serve-env /opt/venv /tmp/src

# ---- serve-base: runtime without build tools, a non-root user, no secrets ---------------------
FROM ${PYTHON_IMAGE} AS serve-base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PLANT_ICD_BUNDLE_DIR=/srv/bundle \
    PLANT_ICD_ENVIRONMENT=production \
    HEALTHCHECK_URL=http://127.0.0.1:8000/readyz
RUN groupadd --system --gid 10001 plant \
    && useradd --system --uid 10001 --gid 10001 --home-dir /srv --shell /usr/sbin/nologin plant \
    && mkdir -p /srv/bundle /srv/data \
    && chown plant:plant /srv/data
COPY --from=serve-build /opt/venv /opt/venv
COPY deploy/docker/entrypoint.py /usr/local/bin/plant-icd-entrypoint
COPY deploy/docker/healthcheck.py /usr/local/bin/plant-icd-healthcheck
# The working directory is writable: the default SQLite file (trials only) lands here.
WORKDIR /srv/data

FROM serve-base AS bundle-mount
# Nothing to add: mount a bundle directory on /srv/bundle (read-only) at run time.

FROM serve-base AS bundle-baked
ARG BUNDLE_DIR=bundles/demo
# Owned by root, read-only to the service user: a running service cannot alter its model.
COPY ${BUNDLE_DIR}/ /srv/bundle/

# ---- serve: the default target ----------------------------------------------------------------
# hadolint ignore=DL3006
FROM bundle-${BUNDLE_SOURCE} AS serve
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/plant-icd-healthcheck"]
ENTRYPOINT ["python", "/usr/local/bin/plant-icd-entrypoint"]
# One uvicorn worker per container: scale with replicas, not workers (docs/OPERATIONS.md).
CMD ["plant-icd", "serve", "--host", "0.0.0.0", "--port", "8000"]
