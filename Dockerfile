# flask-example-1: the Flask service on gunicorn, on Alpine. The pipeline builds it with kaniko
# and passes the build args below; nothing here needs PyPI or a Docker engine.

# Alpine 3.24 is the newest stable release that ships every runtime package below. Pinned by
# release tag; pin the digest too (alpine:3.24.2@sha256:...) once your registry mirror has it.
FROM alpine:3.24.2

ARG APP_VERSION=""
ARG APP_COMMIT=""
ARG APP_BRANCH=""
ARG BUILD_DATE=""
ARG SOURCE_URL=""

LABEL org.opencontainers.image.title="flask-example-1" \
      org.opencontainers.image.description="Reference Flask service that proves a cluster, its ingress, its certificates and its pipeline work" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.revision="${APP_COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/alpine:3.24.2"

# Every runtime Python package comes from apk, at the major.minor versions of the exact pins in
# requirements/runtime.txt (local runs and tests). apk's `~=` matches a version prefix and Alpine
# keeps one version per package and branch: a patch pin (3.1.8) breaks the build the day the
# branch ships 3.1.9; the minor (3.1) takes the branch's patch releases and -rN rebuilds.
# hadolint ignore=DL3018 # py3-pip, the original project's, stays unpinned: nothing runs it
RUN apk add --no-cache \
        python3~=3.14 \
        py3-pip \
        py3-flask~=3.1 \
        py3-werkzeug~=3.1 \
        py3-gunicorn~=25.2 \
        py3-prometheus-client~=0.20 \
        py3-wsproto~=1.2 \
        py3-h11~=0.16 \
    && addgroup -S -g 10001 app \
    && adduser -S -D -H -h /nonexistent -s /sbin/nologin -G app -u 10001 app

ENV APP_VERSION="${APP_VERSION}" \
    APP_COMMIT="${APP_COMMIT}" \
    APP_BRANCH="${APP_BRANCH}" \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
# Owned by root and read-only for the service's user, like everything outside /tmp.
COPY entrypoint.sh /usr/local/bin/entrypoint.sh
COPY src/flask_example/ /app/flask_example/
# Byte-compile at build time: the root filesystem is read-only at run time.
RUN python3 -m compileall -q /app/flask_example

# Same uid/gid as the chart's securityContext; numeric, so runAsNonRoot can check it.
USER 10001:10001
# Only PORT: the probe port (PROBE_PORT) listens only where it is set, as the chart does
# (8081, named `probes` in its pod spec); unset here, an EXPOSE 8081 would name a dead port.
EXPOSE 8080
# Docker and compose use this; Kubernetes uses the chart's probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python3", "-m", "flask_example.probe"]
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["gunicorn"]
