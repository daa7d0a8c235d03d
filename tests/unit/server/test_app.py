"""POST /mutate as the server answers it: 400 for a malformed review, 405/413 for the wrong method or an
oversized body, allowed for everything else, never a 500; health, readiness and metrics."""

from __future__ import annotations

import base64
import copy
import json

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures import pods as fixture_pods
from tests.support import strategies
from tests.support.reviews import admission_review
from webhook.admission import config as cfg
from webhook.admission import review as admission
from webhook.server.app import create_app
from webhook.server.namespaces import StaticNamespaces
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


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda pod: pod["spec"].update(containers=[{"name": "main", "command": 7}]), "spec.containers[0].command"),
        (lambda pod: pod.update(metadata="x"), "metadata must be an object"),
        (lambda pod: pod["metadata"].update(labels={"a": 1}), "metadata.labels"),
        (lambda pod: pod["spec"]["containers"][0].update(env={"A": "1"}), "spec.containers[0].env"),
        (lambda pod: pod["spec"].update(volumes=[7]), "spec.volumes[0]"),
        (lambda pod: pod.pop("spec"), "spec must be an object, not missing"),
    ],
)
def test_a_pod_of_the_wrong_shape_is_a_400_naming_the_field(client, change, field):
    pod = shim_pod()
    pod["metadata"]["labels"]["wandb.ai/inject"] = "true"
    change(pod)
    review = review_of(pod)
    review["request"]["namespace"] = None
    answer = client.post("/mutate", json=review)
    assert answer.status_code == 400
    assert answer.get_json()["error"].startswith("request.object is not a Pod: ")
    assert field in answer.get_json()["error"]


def test_internal_error_admits_the_pod_with_a_warning_and_logs_no_message(client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret-looking detail")

    monkeypatch.setattr(admission, "evaluate", broken)
    before = client.get("/metrics").get_data(as_text=True)
    response = client.post("/mutate", json=review_of(shim_pod(), uid="u\nforged line")).get_json()["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "internal error (RuntimeError)" in response["warnings"][0]
    after = client.get("/metrics").get_data(as_text=True)
    assert (
        _counter(after, "wandb_kfp_webhook_internal_errors_total")
        == _counter(before, "wandb_kfp_webhook_internal_errors_total") + 1
    )
    assert "secret-looking detail" not in caplog.text


def _counter(exposition, name):
    return sum(float(line.split()[-1]) for line in exposition.splitlines() if line.startswith(name + " "))


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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), strategies.json_values.map(lambda value: json.dumps(value).encode())))
def test_any_body_gives_a_valid_answer_or_400_never_500(client, body):
    answer = client.post("/mutate", data=body, content_type="application/json")
    assert answer.status_code in (200, 400)
    if answer.status_code == 200:
        assert answer.get_json()["response"]["allowed"] is True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pod=strategies.mangled_pods())
def test_mangled_pods_never_fail_and_patches_apply_and_settle(client, pod):
    answer = client.post("/mutate", json=review_of(pod, namespace="kubeflow-user"))
    assert answer.status_code in (200, 400)
    if answer.status_code == 400:
        assert answer.get_json()["error"].startswith("request.object is not a Pod: ")
        return
    response = answer.get_json()["response"]
    assert response["allowed"] is True
    assert not any("internal error" in warning for warning in response.get("warnings") or [])
    if "patch" in response:
        mutated = jsonpatch.apply_patch(copy.deepcopy(pod), decoded_patch(answer.get_json()))
        again = client.post("/mutate", json=review_of(mutated, uid="second")).get_json()["response"]
        assert "patch" not in again, "a second pass over an injected pod must change nothing"
        for field, key in (("names", "name"), ("volumes", "name"), ("mounts", "mountPath")):
            before, after = _listed(pod, field, key), _listed(mutated, field, key)
            for value in set(after):
                assert after.count(value) <= max(1, before.count(value)), f"the patch duplicated {field} {value}"


def _listed(pod, field, key):
    """Container names, volume names or main's mount paths of a pod, as a list (duplicates kept)."""
    spec = pod["spec"]
    if field == "names":
        items = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    elif field == "volumes":
        items = spec.get("volumes") or []
    else:
        main = next((c for c in spec.get("containers") or [] if c.get("name") == "main"), {})
        items = main.get("volumeMounts") or []
    return [str(item.get(key, "")).rstrip("/") for item in items if isinstance(item, dict)]


def test_oversized_body_is_refused_with_413(client):
    from webhook.server.app import MAX_BODY_BYTES

    answer = client.post("/mutate", data=b"x" * (MAX_BODY_BYTES + 1), content_type="application/json")
    assert answer.status_code == 413 and "bytes" in answer.get_json()["error"]
