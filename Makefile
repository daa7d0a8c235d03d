# Every target creates or reuses .venv and installs what it needs. Heavy artefacts (KFP venvs, the
# kube-apiserver, etcd, helm, the vendored wandb payload) are cached under $(WKW_CACHE), outside the checkout.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export WKW_CACHE ?= $(HOME)/.cache/wandb-kfp-webhook
STAMP := $(VENV)/.installed

.PHONY: run test unit e2e-node bench lint fixtures demo image venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,lint]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/wandb-kfp-webhook serve --dev

test: $(STAMP) lint
	@echo "== node tier: Debian packages; Kubernetes node binaries, Argo, MinIO and images built once, cached in $(WKW_CACHE)"
	$(PY) -m tests.node.prepare
	@echo "== kube-apiserver, etcd, kubectl, helm: built from the Go module proxy once, cached in $(WKW_CACHE)/bin"
	$(PY) -m tests.e2e.binaries
	@echo "== every test tier: unit, integration (real TLS server), shim (real kfp + wandb), fixtures, chart, e2e (real apiserver), container (podman), node (real kubelet + Argo)"
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15 tests

# The fast tier: pure admission, server pieces in process, certificates, CLI. No network, no builds: seconds.
unit: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

# The node tier alone: a real single-node cluster (kubelet, containerd, kube-proxy) with Argo and MinIO.
e2e-node: $(STAMP)
	$(PY) -m tests.node.prepare
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15 tests/node

lint: $(STAMP)
	$(VENV)/bin/ruff check webhook tests benchmarks
	$(VENV)/bin/ruff format --check webhook
	$(VENV)/bin/mypy webhook

# The image from the Dockerfile, built offline by podman on a Debian base assembled here (mmdebstrap);
# writes dist/wandb-kfp-webhook-<version>.oci.tar. podman, runc and mmdebstrap are installed when missing.
image: $(STAMP)
	nice $(PY) -m tests.container.images webhook --dist dist

# Recompile the pod fixtures with the real KFP SDKs, then rewrite the expected injected pods from them.
fixtures: $(STAMP)
	$(PY) -m tests.fixtures.generate
	$(PY) -m tests.unit.admission.test_injected_pods

demo: $(STAMP)
	$(PY) -m tests.demo

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build dist *.egg-info
