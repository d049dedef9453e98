# syntax=docker/dockerfile:1
# memtype-explorer container image.
# Why two stages: the builder needs pip and a build backend; the runtime image
# gets only the finished venv (pip and setuptools removed from it) plus the
# files the app reads (app/, templates/, static/), so nothing from the build
# lingers in the final layers.
# Reproducible: third-party packages come from requirements.lock, installed
# with --require-hashes --no-deps (exact files, nothing resolved at build
# time; regenerate with scripts/lock). The project itself is built without
# build isolation from the setuptools pinned in the same lock.
# Base: same Python minor and Debian release as dev/CI. Full version tag, not
# a digest: no registry could be reached where this file was written, so no
# digest could be verified. To pin one, see docs/deploying.md ("Base image").

FROM python:3.11.17-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /build
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
# Only what `pip install .` needs: pyproject.toml names README.md as readme.
COPY pyproject.toml README.md ./
COPY app/ ./app/
# pip compiles the venv's .pyc here, so the read-only runtime never needs to
# write bytecode; `pip check` fails the build if the lock missed a
# dependency (--no-deps would not notice); then pip and setuptools leave the
# venv (pip last: it uninstalls itself).
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall -y setuptools \
 && /opt/venv/bin/python -m pip uninstall -y pip \
 && rm -f /opt/venv/bin/pip*

FROM python:3.11.17-slim-bookworm
# The version label comes from pyproject.toml, the one version string:
# scripts/image passes it (`--build-arg VERSION=...`); a plain `docker build`
# labels the image "unknown" rather than a number that may be stale.
ARG VERSION=unknown
LABEL org.opencontainers.image.title="memtype-explorer" \
      org.opencontainers.image.description="Which EPT memory type KVM on Intel VT-x gives guest memory, why, and what it must zap" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.17-slim-bookworm"
# Fixed numeric uid so orchestrators (runAsNonRoot) can verify it is not root.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin memtype
COPY --from=builder /opt/venv /opt/venv
# The base image's own pip/setuptools (system site-packages, outside the venv)
# go too: nothing in the runtime image can install packages.
RUN python -m pip uninstall -y setuptools wheel \
 && python -m pip uninstall -y pip \
 && rm -rf /usr/local/bin/pip* /usr/local/lib/python3.11/ensurepip
WORKDIR /srv/memtype-explorer
# Files stay root-owned: the service never writes to disk, so the container
# runs with a read-only root filesystem (deploy/k8s.yaml, deploy/compose.yaml).
COPY app/ ./app/
COPY templates/ ./templates/
COPY static/ ./static/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MEMTYPE_ROOT=/srv/memtype-explorer \
    MEMTYPE_HOST=0.0.0.0 \
    MEMTYPE_PORT=8000 \
    MEMTYPE_WORKERS=2
USER 10001
EXPOSE 8000
# python + urllib, not curl: slim has no curl and adding it grows the image.
# Reads MEMTYPE_PORT so a port override keeps the check honest; ProxyHandler({})
# because Docker may inject HTTP_PROXY, which urllib would use even for 127.0.0.1.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; o = u.build_opener(u.ProxyHandler({})); sys.exit(o.open('http://127.0.0.1:%s/healthz' % os.environ.get('MEMTYPE_PORT', '8000'), timeout=2).status != 200)"]
# Exec form: uvicorn is PID 1 and receives SIGTERM. app.serve reads MEMTYPE_*
# because exec form cannot expand environment variables.
CMD ["python", "-m", "app.serve"]
