"""Pod in, pod out: every fixture pod, reviewed with the default settings in an opted-in namespace, becomes
exactly the pod in expected/<fixture>.yaml (as the OpenTelemetry operator's injector tests compare whole
pods). A change to what the webhook injects shows up here as a diff to review.

    python -m tests.unit.admission.test_injected_pods    # rewrite expected/ after an intended change

The payload manifest the narrowed copies are sized from is expected/payload/site/manifest.json (sizes of a
real build), so the sizeLimit of `python:3.X` pods is part of what is compared.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg
from webhook.admission.review import evaluate
from webhook.shim import contract

EXPECTED = Path(__file__).resolve().parent / "expected"
PAYLOAD = EXPECTED / "payload"
ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
FIXTURES = [entry["name"] for entry in fixture_pods.load_index()]


def injected(name: str) -> dict[str, Any] | None:
    """The fixture after the webhook's patch, or None when the webhook leaves it alone."""
    pod = fixture_pods.load_pod(name)
    evaluation = evaluate(copy.deepcopy(pod), "kubeflow-user", ENABLED, cfg.Settings(watch_namespaces=False), "uid")
    if evaluation.injection is None:
        return None
    mutated: dict[str, Any] = jsonpatch.apply_patch(pod, evaluation.injection.operations)
    return mutated


def expected_path(name: str) -> Path:
    return EXPECTED / f"{name}.yaml"


@pytest.fixture(autouse=True)
def example_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.PAYLOAD_DIR_ENV, str(PAYLOAD))


@pytest.mark.parametrize("name", FIXTURES)
def test_the_pod_the_webhook_makes_is_the_expected_one(name: str) -> None:
    made = injected(name)
    path = expected_path(name)
    if made is None:
        assert not path.exists(), f"{name} is left alone now, but {path.name} expects a mutated pod"
        return
    assert path.exists(), f"no expected pod for {name}: run python -m {__name__.removesuffix('.py')}"
    assert made == yaml.safe_load(path.read_text())


def update() -> None:
    import os

    os.environ[contract.PAYLOAD_DIR_ENV] = str(PAYLOAD)
    for name in FIXTURES:
        made, path = injected(name), expected_path(name)
        if made is None:
            path.unlink(missing_ok=True)
            print(f"{name}: left alone")
            continue
        path.write_text(yaml.safe_dump(made, sort_keys=False, width=120))
        print(f"{name}: {path.relative_to(Path.cwd())}")


if __name__ == "__main__":
    update()
