# syntax=docker/dockerfile:1
# The Dagster webserver (UI on port 3000) and daemon (schedules, sensors, run queue): one image,
# two commands. No user code here: both talk to the code location over gRPC (workspace.yaml).
#
# Build context: the repository root.
#   docker build -f docker/dagster.Dockerfile -t ml-assets/dagster:0.1.0 .
# Webserver: the default CMD. Daemon: `dagster-daemon run -w /opt/dagster/app/workspace.yaml`.
#
# Base image: pinned by tag. For reproducible builds pin the digest too:
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY docker/requirements/dagster.txt /tmp/requirements.txt
# The dagster family moves together (pyproject.toml pins the same versions).
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
        dagster==1.13.27 dagster-webserver==1.13.27 dagster-postgres==0.29.27 \
    && pip check

FROM python:3.11.14-slim-bookworm
ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" dagster \
    && useradd --system --uid "$APP_UID" --gid dagster --home-dir /opt/dagster \
       --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/dagster_home/storage /opt/dagster/app \
    && chown -R dagster:dagster /opt/dagster
COPY --from=builder /opt/venv /opt/venv
COPY dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY docker/dagster/workspace.yaml /opt/dagster/app/workspace.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/opt/dagster \
    DAGSTER_HOME=/opt/dagster/dagster_home
WORKDIR /opt/dagster/app
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"]
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/app/workspace.yaml"]
