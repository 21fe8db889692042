# syntax=docker/dockerfile:1
# llm-allocator: multi-stage build. The builder turns the project into a wheel and
# installs it (with its dependencies, CBC included via the cbcbox wheel) into a
# virtualenv; the runtime image copies only that virtualenv.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first: dependency resolution is cached until pyproject.toml changes.
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --upgrade pip wheel \
 && pip wheel --no-deps --wheel-dir /dist . \
 && pip install /dist/*.whl

FROM python:${PYTHON_VERSION}-slim AS runtime
# CBC (from the cbcbox wheel) links the C++ runtime and zlib from the system.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libstdc++6 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 allocator \
 && useradd --system --uid 10001 --gid allocator --home-dir /data --shell /usr/sbin/nologin allocator \
 && mkdir -p /data \
 && chown allocator:allocator /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LLM_ALLOCATOR_HOST=0.0.0.0 \
    LLM_ALLOCATOR_PORT=8080 \
    LLM_ALLOCATOR_DB_PATH=/data/llm-allocator.db
USER allocator
WORKDIR /data
# The SQLite database (and its -wal/-shm/.lock side files) lives here.
VOLUME ["/data"]
EXPOSE 8080
# No curl in a slim image: ask /healthz with the standard library.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LLM_ALLOCATOR_PORT', '8080'), timeout=4)" || exit 1
# uvicorn drains requests on SIGTERM (shutdown_grace_s, default 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-allocator", "serve"]
