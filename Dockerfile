# syntax=docker/dockerfile:1
# trackflow: one image for every process (`trackflow gateway|worker|migrate|topics`).
#   docker build -t trackflow:0.1.0 .
#   docker run --rm trackflow:0.1.0 --help
# The build context is an allow-list (see .dockerignore): pyproject.toml, README.md and the
# four Python packages. Nothing from the local stack (.venv, .trackflow) gets in.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install trackflow and its dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler only in this stage, for any dependency that has no wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY trackflow ./trackflow
COPY ingest_gateway ./ingest_gateway
COPY processors ./processors
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/trackflow --version

# ---- runtime: slim, non-root, no compiler ----------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trackflow" \
      org.opencontainers.image.description="Event-collection pipeline: HTTP gateway -> Kafka -> Faust stages -> PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRACKFLOW_LOG_FORMAT=json \
    TRACKFLOW_GATEWAY_HOST=0.0.0.0 \
    TRACKFLOW_WORKER_HOST=0.0.0.0
# uid/gid 10001: numeric, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 trackflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
            --home-dir /var/lib/trackflow --shell /usr/sbin/nologin trackflow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/trackflow
COPY --from=build /opt/venv /opt/venv
# The worker keeps Faust's small local state (<worker id>-data/) in its working directory.
WORKDIR /var/lib/trackflow
USER 10001:10001
EXPOSE 8686 8687
ENTRYPOINT ["trackflow"]
CMD ["--help"]
