"""The AdmissionReview wire contract: 400 for malformed reviews, allowed for everything else, never a 500."""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review
from webhook import admission
from webhook import config as cfg
from webhook.app import create_app
from webhook.namespaces import StaticNamespaces
from webhook.shim import contract

OPTED_IN = StaticNamespaces({"kubeflow-user": cfg.NamespaceInfo(labels={"wandb.ai/inject": "enabled"})})
SETTINGS = cfg.Settings(watch_namespaces=False)


def review_of(pod, uid="uid-1", operation="CREATE", namespace=None):
    return admission_review(pod, uid, operation, namespace)


def decoded_patch(body):
    return json.loads(base64.b64decode(body["response"]["patch"]))


@pytest.fixture(scope="module")
def client():
    return create_app(SETTINGS, OPTED_IN).test_client()


def shim_pod():
    return fixture_pods.load_pod(fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR)[0])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"kind": "Pod"}', "kind must be AdmissionReview"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "x"}}',
            "apiVersion must be admission.k8s.io/v1",
        ),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "request"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"operation": "CREATE"}}',
            "request.uid",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}',
            "request.uid",
        ),
    ],
)
def test_malformed_reviews_get_400_naming_the_problem(client, body, message):
    answer = client.post("/mutate", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert message in answer.get_json()["error"]


def test_selected_pod_gets_a_base64_jsonpatch_and_the_request_uid(client):
    pod = shim_pod()
    answer = client.post("/mutate", json=review_of(pod, uid="abc-123"))
    body = answer.get_json()
    assert answer.status_code == 200
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"]["uid"] == "abc-123"
    assert body["response"]["allowed"] is True
    assert body["response"]["patchType"] == "JSONPatch"
    mutated = jsonpatch.apply_patch(pod, decoded_patch(body))
    assert mutated["metadata"]["annotations"][cfg.INJECTED_ANNOTATION] == contract.KIND_V2_EXECUTOR


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_only_create_is_mutated(client, operation):
    body = client.post("/mutate", json=review_of(shim_pod(), operation=operation)).get_json()
    assert body["response"] == {"uid": "uid-1", "allowed": True}


def test_not_a_pod_is_allowed_untouched(client):
    review = review_of(shim_pod())
    review["request"]["kind"]["kind"] = "ConfigMap"
    review["request"]["resource"]["resource"] = "configmaps"
    assert client.post("/mutate", json=review).get_json()["response"] == {"uid": "uid-1", "allowed": True}


def test_unselected_pod_gets_no_patch_key(client):
    pod = shim_pod()
    pod["metadata"]["labels"]["wandb.ai/inject"] = "false"
    response = client.post("/mutate", json=review_of(pod)).get_json()["response"]
    assert "patch" not in response and "patchType" not in response
    assert response["allowed"] is True


def test_bad_annotation_becomes_a_warning_not_a_failure(client):
    pod = shim_pod()
    pod["metadata"]["annotations"]["wandb.ai/project"] = "bad/project"
    response = client.post("/mutate", json=review_of(pod)).get_json()["response"]
    assert response["patchType"] == "JSONPatch"
    assert any("wandb.ai/project" in warning for warning in response["warnings"])


def test_internal_error_admits_the_pod_with_a_warning(client):
    pod = shim_pod()
    pod["spec"]["containers"] = [{"name": "main", "command": 7}]  # a shape the apiserver would never send
    pod["metadata"]["labels"]["wandb.ai/inject"] = "true"
    response = client.post("/mutate", json=review_of(pod)).get_json()["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "internal error" in response["warnings"][0]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "wandb_kfp_webhook_internal_errors_total" in metrics


def test_health_readiness_and_metrics(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.post("/mutate", json=review_of(shim_pod()))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'wandb_kfp_webhook_admission_requests_total{outcome="injected"}' in metrics
    assert f'wandb_kfp_webhook_injections_total{{kind="{contract.KIND_V2_EXECUTOR}"}}' in metrics
    assert "wandb_kfp_webhook_admission_duration_seconds_bucket" in metrics


def test_wrong_method_and_path_are_json_errors(client):
    assert client.get("/mutate").status_code == 405
    assert client.get("/nope").get_json()["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), json_values.map(lambda value: json.dumps(value).encode())))
def test_any_body_gives_a_valid_answer_or_400_never_500(client, body):
    answer = client.post("/mutate", data=body, content_type="application/json")
    assert answer.status_code in (200, 400)
    if answer.status_code == 200:
        assert answer.get_json()["response"]["allowed"] is True


def mutate_pod(draw_value, pod):
    """Scatter arbitrary JSON into a realistic pod's optional fields."""
    for path, value in draw_value:
        target = pod
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = value
    return pod


pod_paths = st.sampled_from(
    [
        ("metadata", "labels"),
        ("metadata", "annotations"),
        ("metadata", "name"),
        ("metadata", "ownerReferences"),
        ("spec", "initContainers"),
        ("spec", "volumes"),
        ("spec", "containers"),
        ("metadata", "annotations", "wandb.ai/tags"),
        ("metadata", "annotations", "wandb.ai/project"),
        ("metadata", "labels", "wandb.ai/inject"),
        ("metadata", "annotations", "workflows.argoproj.io/template"),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(pod_paths, json_values), max_size=3), which=st.integers(min_value=0))
def test_mangled_pods_never_fail_and_patches_apply_and_settle(client, changes, which):
    names = [entry["name"] for entry in fixture_pods.load_index()]
    pod = mutate_pod(changes, fixture_pods.load_pod(names[which % len(names)]))
    answer = client.post("/mutate", json=review_of(pod, namespace="kubeflow-user"))
    assert answer.status_code == 200
    response = answer.get_json()["response"]
    assert response["allowed"] is True
    if "patch" in response:
        mutated = jsonpatch.apply_patch(copy.deepcopy(pod), decoded_patch(answer.get_json()))
        again = client.post("/mutate", json=review_of(mutated, uid="second")).get_json()["response"]
        assert "patch" not in again, "a second pass over an injected pod must change nothing"


def test_review_function_is_pure_for_the_same_input():
    pod = shim_pod()
    first = admission.review(json.dumps(review_of(pod)), OPTED_IN, SETTINGS)
    second = admission.review(json.dumps(review_of(pod)), OPTED_IN, SETTINGS)
    assert first.body == second.body


def test_oversized_body_is_refused_with_413(client):
    from webhook.app import MAX_BODY_BYTES

    answer = client.post("/mutate", data=b"x" * (MAX_BODY_BYTES + 1), content_type="application/json")
    assert answer.status_code == 413 and "bytes" in answer.get_json()["error"]
