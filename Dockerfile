# syntax=docker/dockerfile:1
# The oibus image: the package built into wheels in one stage and installed, from those
# wheels only, into a slim runtime that runs as a non-root user. Its default command is
# the daemon; every other `oibus` command runs the same way, the HTTP API too.
#
#   docker build -t oibus .
#   docker run --rm -e OIBUS_REDIS_URL=redis://redis.internal:6379/0 -p 9464:9464 oibus
#   docker run --rm -e OIBUS_REDIS_URL=redis://redis.internal:6379/0 oibus doctor
#   docker run --rm -e OIBUS_REDIS_URL=redis://redis.internal:6379/0 -p 8000:8000 \
#       oibus serve --host 0.0.0.0 --port 8000      # the OpenIntent HTTP API (docs/http.md)
#
# Nothing secret is baked in: give the Redis URL (and its password, if any) at run time,
# from the orchestrator's secret store. See docs/operations.md.

ARG PYTHON_IMAGE=python:3.11-slim

# -- build: the oibus wheel and a wheel of every dependency ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is made of: pyproject.toml maps each top-level folder to its
# subpackage (oibus.bus is bus/, ...), so every mapped folder is copied.
COPY pyproject.toml README.md MANIFEST.in ./
COPY bus ./bus
COPY sdk ./sdk
COPY daemon ./daemon
COPY gateway ./gateway
COPY lua ./lua
COPY examples ./examples
COPY oibus ./oibus
RUN pip wheel --wheel-dir /wheels .

# -- runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="oibus" \
      org.opencontainers.image.description="The OpenIntent Coordination Protocol on Redis: the oibus daemon and CLI" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# The wheels are mounted for this one step, not copied: no layer of the image keeps them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels oibus \
    && groupadd --system --gid 10001 oibus \
    && useradd --system --uid 10001 --gid oibus --home-dir /home/oibus --create-home \
       --shell /usr/sbin/nologin oibus
USER 10001:10001
WORKDIR /home/oibus

# The daemon serves no HTTP unless told to: in a container, serve /metrics and /healthz on
# every interface so Prometheus (and the orchestrator) can reach them.
ENV OIBUS_HTTP_HOST=0.0.0.0 \
    OIBUS_HTTP_PORT=9464
# 8000: the HTTP API, when the container runs `oibus serve --host 0.0.0.0 --port 8000` (give
# the port: OIBUS_HTTP_PORT above is the daemon's metrics port, and `serve` reads it too).
# Its health check is GET /health (see the gateway service in compose.yaml).
EXPOSE 9464 8000

# Exit 0 while a daemon's heartbeat is live on the namespace (OIBUS_REDIS_URL,
# OIBUS_NAMESPACE); it reads Redis, so it also fails while Redis is unreachable.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["oibus", "daemon", "--check"]

# SIGTERM (docker stop) makes the daemon hand in-flight entries back and exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["oibus"]
CMD ["daemon"]
