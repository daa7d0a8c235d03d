"""Every patch the webhook returns yields a pod the real apiserver accepts.

Each fixture pod, and every pod the shared hypothesis strategy generates (the one the unit tests use),
is reviewed in process under several server settings; the patched pod is then created with a
server-side dry run (`?dryRun=All`: full validation and admission, nothing stored) in a namespace no
webhook reaches. A generated pod the apiserver refuses before any patch is not the webhook's to fix and
is counted apart; for every other one, the patched pod must be accepted. Zero rejections.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from typing import Any

import jsonpatch
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s

from tests.e2e.cluster import Cluster
from tests.e2e.deployment import admin
from tests.fixtures import pods as fixture_pods
from tests.support import strategies
from webhook.admission import config as cfg
from webhook.admission.podshape import pod_shape_problem
from webhook.admission.review import evaluate

ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
SETTINGS = {
    "default": cfg.Settings(watch_namespaces=False),
    "offline-pvc": cfg.Settings(watch_namespaces=False, offline_pvc="wandb-runs"),
    "image-volume": cfg.Settings(watch_namespaces=False, shim_delivery="imageVolume"),
    "locked": cfg.Settings(watch_namespaces=False, locked_annotations=["base-url", "api-key-secret"]),
}
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module")
def namespace(apiserver: Cluster) -> str:
    """A namespace outside every webhook's selectors, with the ServiceAccounts the fixtures run as."""
    name = f"dryrun-{uuid.uuid4().hex[:8]}"
    apiserver.create_namespace(name)
    accounts = {fixture_pods.load_pod(entry["name"])["spec"].get("serviceAccountName") for entry in _fixtures()}
    with admin(apiserver) as api_client:
        for account in accounts - {None, "default"}:
            k8s.CoreV1Api(api_client).create_namespaced_service_account(
                name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=account))
            )
    return name


def _fixtures() -> list[dict[str, Any]]:
    return fixture_pods.load_index()


def dry_run(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> tuple[int, str]:
    """POST the pod with ?dryRun=All as the admin: (HTTP status, the apiserver's message)."""
    response = requests.post(
        f"{cluster.url}/api/v1/namespaces/{namespace}/pods",
        params={"dryRun": "All"},
        json=pod,
        headers={"Authorization": f"Bearer {cluster.token}"},
        verify=str(cluster.ca_file),
        timeout=30,
    )
    message = "" if response.status_code < 300 else str(response.json().get("message", response.text))[:500]
    return response.status_code, message


def patched(pod: dict[str, Any], namespace: str, settings_name: str) -> dict[str, Any] | None:
    """The pod after the webhook's patch, or None when the webhook leaves it alone."""
    evaluation = evaluate(copy.deepcopy(pod), namespace, ENABLED, SETTINGS[settings_name], "dry-run")
    if evaluation.injection is None or not evaluation.injection.operations:
        return None
    return jsonpatch.apply_patch(copy.deepcopy(pod), evaluation.injection.operations)


@pytest.mark.parametrize("settings_name", sorted(SETTINGS))
@pytest.mark.parametrize("entry", _fixtures(), ids=lambda entry: entry["name"])
def test_every_fixture_patched_is_accepted(apiserver, namespace, entry, settings_name):
    pod = copy.deepcopy(fixture_pods.load_pod(entry["name"]))
    pod["metadata"]["namespace"] = namespace
    assert dry_run(apiserver, namespace, pod)[0] in (200, 201), "the fixture itself must be a valid pod"
    mutated = patched(pod, namespace, settings_name)
    if mutated is None:
        TALLY["fixtures left alone"] += 1
        return
    status, message = dry_run(apiserver, namespace, mutated)
    assert status in (200, 201), message
    TALLY["fixtures patched and accepted"] += 1


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(pod=strategies.mangled_pods(), settings_name=st.sampled_from(sorted(SETTINGS)))
def test_every_generated_pod_patched_is_accepted(apiserver, namespace, pod, settings_name):
    TALLY["generated"] += 1
    if pod_shape_problem(pod) is not None:
        TALLY["generated: not a Pod (the webhook answers 400)"] += 1
        return
    pod["metadata"]["namespace"] = namespace
    mutated = patched(pod, namespace, settings_name)
    if mutated is None:
        TALLY["generated: left alone"] += 1
        return
    if dry_run(apiserver, namespace, pod)[0] not in (200, 201):
        TALLY["generated: refused before any patch"] += 1
        return
    status, message = dry_run(apiserver, namespace, mutated)
    assert status in (200, 201), message
    TALLY["generated: patched and accepted"] += 1


def test_zero_rejections_over_enough_patched_pods():
    print(f"\ndry-run tally: {dict(TALLY)}")
    assert TALLY["fixtures patched and accepted"] >= 30
    assert TALLY["generated: patched and accepted"] >= 100, dict(TALLY)
