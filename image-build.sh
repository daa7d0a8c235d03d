#!/usr/bin/env bash
# Every step of the container image's build, as one script the Dockerfile runs and the tests run too
# (into a temporary prefix, tests/unit/test_image_build.py); `make image` and tests/container build the
# Dockerfile itself with podman.
#
#   image-build.sh [--prefix DIR] [--source DIR] [--python PYTHON] [--payload-from DIR] [--wheelhouse DIR]
#
#   --prefix        where everything goes (default /opt/wandb-kfp-webhook):
#                     PREFIX/venv   the webhook's virtualenv (wandb-kfp-webhook on PREFIX/venv/bin)
#                     PREFIX/shim   the laid-out shim: bootstrap/, lib/, site/ (vendored wandb per
#                                   Python minor) and the completion marker; the init container copies
#                                   it (WANDB_KFP_PAYLOAD_DIR=PREFIX/shim), an image volume mounts it
#   --source        the project checkout to install (default: this script's directory)
#   --python        interpreter for the venv (default python3)
#   --payload-from  reuse an already built payload (a directory holding site/manifest.json) instead of
#                   running `shim build-payload` (tests use the cached one; env WKW_PAYLOAD_FROM)
#   --wheelhouse    install every Python package from the wheels in DIR, without an index (an offline
#                   build: `make image` downloads them on the host; env WKW_WHEELHOUSE)
#
# Prints the installed shim's size (hardlinked files counted once) as the last line:
#   payload-size-bytes=<N>
set -euo pipefail

prefix=/opt/wandb-kfp-webhook
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
payload_from=${WKW_PAYLOAD_FROM:-}
wheelhouse=${WKW_WHEELHOUSE:-}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --source) source_dir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --payload-from) payload_from=$2; shift 2 ;;
    --wheelhouse) wheelhouse=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "image-build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

step() { echo "==> $*" >&2; }

if [ -n "$wheelhouse" ]; then
  # pip reads these in every call below, including the isolated build of the project itself.
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$wheelhouse"
fi

venv="$prefix/venv"
shim="$prefix/shim"
build_payload="$prefix/.payload-build"
mkdir -p "$prefix"

step "virtualenv $venv ($("$python" --version 2>&1))"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check --upgrade pip

step "install the project from $source_dir"
# A copy of the sources, so a read-only or shared checkout never gets build/ or *.egg-info written into it.
staging=$(mktemp -d)
trap 'rm -rf "$staging" "$build_payload"' EXIT
tar -C "$source_dir" -cf - pyproject.toml README.md webhook | tar -C "$staging" -xf -
"$venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check "$staging"

if [ -n "$payload_from" ]; then
  step "reuse the payload in $payload_from"
  payload="$payload_from"
else
  step "build the vendored-wandb payload (one site per supported Python minor)"
  "$venv/bin/wandb-kfp-webhook" shim build-payload "$build_payload" >/dev/null
  payload="$build_payload"
fi

step "lay the shim out in $shim"
rm -rf "$shim"
"$venv/bin/wandb-kfp-webhook" shim install "$shim" --payload "$payload" >&2
# Component containers run as any user: everything in the shim must be world-readable.
chmod -R a+rX,go-w "$shim"

step "remove the intermediate payload"
rm -rf "$build_payload"

# du counts each hardlinked file once, which is what the image layer and the emptyDir hold.
size_bytes=$(du -sb "$shim" | cut -f1)
step "shim with vendored wandb: $size_bytes bytes ($((size_bytes / 1024 / 1024)) MiB)"
echo "payload-size-bytes=$size_bytes"
