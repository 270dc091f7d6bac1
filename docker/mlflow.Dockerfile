# syntax=docker/dockerfile:1
# The MLflow tracking server and model registry on Postgres, proxying artifacts to a volume.
#
# Build context: the repository root.
#   docker build -f docker/mlflow.Dockerfile -t ml-assets/mlflow:0.1.0 .
# The backend store comes from the environment (MLFLOW_BACKEND_STORE_URI, a
# postgresql+psycopg2:// URL), so no credential appears on the command line.
#
# Base image: pinned by tag. For reproducible builds pin the digest too:
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/requirements/mlflow.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt mlflow==3.17.2 psycopg2-binary==2.9.13 \
    && pip check

FROM python:3.11.14-slim-bookworm
ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" mlflow \
    && useradd --system --uid "$APP_UID" --gid mlflow --home-dir /opt/mlflow \
       --shell /usr/sbin/nologin mlflow \
    && mkdir -p /opt/mlflow /mlartifacts \
    && chown -R mlflow:mlflow /opt/mlflow /mlartifacts
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/opt/mlflow
WORKDIR /opt/mlflow
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=5)"]
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--artifacts-destination", "/mlartifacts"]
