# c2d: one image for the four functions (Knative Services, gunicorn) and for the
# configure and publish pods (`python -m functions.configure.pod`,
# `python -m functions.publish.pod`). See docs/deploy.md.
#
#   docker build -t REGISTRY/c2d:TAG . && docker push REGISTRY/c2d:TAG

# --- build: install c2d and its dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/c2d \
 && /opt/c2d/bin/pip install --no-cache-dir .

# --- final: the virtualenv on a clean base; no compilers, no pip cache, no source tree.
FROM python:3.11-slim
ENV PATH=/opt/c2d/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GUNICORN_CMD_ARGS="--config python:shared.gunicorn_config --workers 4 --threads 2 --timeout 60 --graceful-timeout 20 --worker-tmp-dir /dev/shm --no-control-socket --access-logfile -"
RUN groupadd --gid 10001 c2d \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin c2d
COPY --from=build /opt/c2d /opt/c2d
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
WORKDIR /opt/c2d
EXPOSE 8080
# gunicorn binds 0.0.0.0:$PORT when PORT is set (Knative sets it), else 127.0.0.1:8000.
# Each Knative Service names its own app (knative/services.yaml).
CMD ["gunicorn", "functions.configure.app:app"]
