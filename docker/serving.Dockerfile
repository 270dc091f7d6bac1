# syntax=docker/dockerfile:1
# The serving image for a built Bento: fraud scoring, embeddings and search on ONNX Runtime and
# tokenizers (no torch, no scikit-learn), the models verified by sha256 inside the Bento.
#
# Build context: an exported Bento, unpacked (bento.yaml, src/, models/, env/python/...):
#   bentoml export ml-assets:<version> build/ml-assets.bento     # with BENTOML_HOME set
#   mkdir -p build/bento && tar -xf build/ml-assets.bento -C build/bento
#   docker build -f docker/serving.Dockerfile -t ml-assets/serving:<version> build/bento
# (`bentoml export` adds models/; the Bento directory in the store has no models/ of its own.)
# This replaces the Dockerfile BentoML generates under env/docker/: that one installs
# build-essential and git in the image that runs; this one keeps the final stage free of any
# toolchain and installs exactly env/python/requirements.txt (pinned by the serving_bundle asset).
#
# Base image: pinned by tag. For reproducible builds pin the digest too:
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY env/python/requirements.txt /tmp/requirements.txt
# Fail the build if the training stack leaked into the serving environment.
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip check \
    && python -c "import importlib.util as u, sys; bad = [m for m in ('torch', 'sklearn') if u.find_spec(m)]; sys.exit(f'serving image must not contain {bad}' if bad else 0)"

FROM python:3.11.14-slim-bookworm
ARG APP_UID=10001
RUN groupadd --system --gid "$APP_UID" bentoml \
    && useradd --system --uid "$APP_UID" --gid bentoml --home-dir /home/bentoml \
       --create-home --shell /usr/sbin/nologin bentoml \
    && mkdir -p /var/lib/bentoml \
    && chown bentoml:bentoml /var/lib/bentoml
COPY --from=builder /opt/venv /opt/venv
# The Bento itself stays root-owned and read-only to the server: only BENTOML_HOME (metrics
# files, a model store for /reload) and /tmp (the workers' release file) are written.
COPY bento.yaml /home/bentoml/bento/bento.yaml
COPY src /home/bentoml/bento/src
COPY models /home/bentoml/bento/models
COPY env/python /home/bentoml/bento/env/python
COPY apis /home/bentoml/bento/apis
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BENTO_PATH=/home/bentoml/bento \
    BENTOML_HOME=/var/lib/bentoml \
    BENTOML_CONTAINERIZED=true \
    BENTOML_DO_NOT_TRACK=True \
    HF_HUB_OFFLINE=1
WORKDIR /home/bentoml/bento
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=4)"]
# `bentoml serve <dir>` loads a built Bento from its directory (bento.yaml) and its models/.
CMD ["bentoml", "serve", "/home/bentoml/bento", "--host", "0.0.0.0", "--port", "3000"]
