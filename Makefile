# Every target creates or reuses .venv and installs what it needs. Heavy artefacts (KFP venvs, the
# kube-apiserver, etcd, helm, the vendored wandb payload) are cached under $(WKW_CACHE), outside the checkout.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export WKW_CACHE ?= $(HOME)/.cache/wandb-kfp-webhook
STAMP := $(VENV)/.installed

.PHONY: run test e2e-node bench lint fixtures demo venv clean

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
	@echo "== every test tier: unit, integration (real TLS server), shim (real kfp + wandb), chart, e2e (real apiserver), node (real kubelet + Argo)"
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15 tests

# The node tier alone: a real single-node cluster (kubelet, containerd, kube-proxy) with Argo and MinIO.
e2e-node: $(STAMP)
	$(PY) -m tests.node.prepare
	$(PY) -m pytest -p no:cacheprovider -ra --durations=15 tests/node

lint: $(STAMP)
	$(VENV)/bin/ruff check webhook tests benchmarks
	$(VENV)/bin/ruff format --check webhook
	$(VENV)/bin/mypy webhook

fixtures: $(STAMP)
	$(PY) -m tests.fixtures.generate

demo: $(STAMP)
	$(PY) -m tests.demo

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) build *.egg-info
