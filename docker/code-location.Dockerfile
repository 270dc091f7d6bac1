# syntax=docker/dockerfile:1
# The ml_assets code location: a Dagster gRPC code server (port 4000) that also executes the
# runs the daemon launches (DefaultRunLauncher in compose; K8sRunLauncher run pods use this
# same image on Kubernetes). Training, ONNX export and Bento builds all happen here.
#
# Build context: the repository root.
#   docker build -f docker/code-location.Dockerfile -t ml-assets/code-location:0.1.0 .
#
# Base image: pinned by tag (CPython patch release + Debian release). For byte-for-byte
# reproducible builds pin the digest as well, e.g.
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it).

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# torch is pinned to the CPU build (the code location never uses a GPU): PyPI's default
# Linux wheel pulls several GB of CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Dependencies first (their own cached layer): every version is locked, see lock.py there.
COPY docker/requirements/code-location.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ml_assets ./ml_assets
COPY serving ./serving
RUN pip install --no-cache-dir --no-deps . \
    && pip check

FROM python:3.11.14-slim-bookworm
ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" dagster \
    && useradd --system --uid "$APP_UID" --gid dagster --home-dir /opt/dagster \
       --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/dagster_home/storage /opt/dagster/app \
       /var/lib/ml-assets/artifacts /var/lib/ml-assets/bentoml \
    && chown -R dagster:dagster /opt/dagster /var/lib/ml-assets
COPY --from=builder /opt/venv /opt/venv
# The instance config (Postgres storage from DAGSTER_PG_URL, run queue limits): the same file
# the embedded default uses. The Helm chart mounts its own over it on Kubernetes.
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/opt/dagster \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    ML_ARTIFACT_ROOT=/var/lib/ml-assets/artifacts \
    BENTOML_HOME=/var/lib/ml-assets/bentoml \
    BENTOML_DO_NOT_TRACK=True \
    HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /opt/dagster/app
USER 10001:10001
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-m", "ml_assets.definitions", "--location-name", "ml_assets", "-h", "0.0.0.0", "-p", "4000"]
