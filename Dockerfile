# syntax=docker/dockerfile:1
# wandb-kfp-webhook: the admission server, the certificate sync and the shim it injects, in one image.
# Every build step lives in image-build.sh (tests/unit/test_image_build.py runs the same script).
# `make image` builds this file with podman without a registry (PYTHON_IMAGE: a Debian base it assembles);
# the container tier (tests/container) runs the result as the Helm chart does.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Empty by default: the build downloads from PyPI and builds the vendored-wandb payload itself.
# `make image` builds offline instead: it mounts a wheelhouse and an already built payload (podman build
# --volume) and names them here (image-build.sh --wheelhouse / --payload-from).
ARG WKW_WHEELHOUSE=""
ARG WKW_PAYLOAD_FROM=""
WORKDIR /src
COPY pyproject.toml README.md image-build.sh ./
COPY webhook ./webhook
RUN ./image-build.sh --prefix /opt/wandb-kfp-webhook --source /src

# Same base (the venv's interpreter symlinks point into it); no pip cache, no sources, no compilers.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="wandb-kfp-webhook" \
      org.opencontainers.image.description="Weights & Biases tracking for every Kubeflow Pipelines run" \
      org.opencontainers.image.source="https://github.com/wandb/wandb-kfp-webhook" \
      org.opencontainers.image.licenses="Apache-2.0"
# One COPY of the whole prefix keeps the payload's hardlinks (files shared across Python minors) linked.
COPY --from=build /opt/wandb-kfp-webhook /opt/wandb-kfp-webhook
ENV PATH=/opt/wandb-kfp-webhook/venv/bin:${PATH} \
    WANDB_KFP_PAYLOAD_DIR=/opt/wandb-kfp-webhook/shim \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["wandb-kfp-webhook"]
CMD ["--help"]
