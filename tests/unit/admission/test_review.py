"""The review engine: a body in, an outcome out (injected, skipped, error, invalid), never an HTTP status."""

from __future__ import annotations

import json

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review
from webhook.admission import config as cfg
from webhook.admission import review
from webhook.server.namespaces import StaticNamespaces
from webhook.shim import contract

OPTED_IN = StaticNamespaces({"kubeflow-user": cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})})
SETTINGS = cfg.Settings(watch_namespaces=False)


def v2_pod():
    return fixture_pods.load_pod(fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR)[0])


def test_an_injected_pod_is_an_outcome_with_the_answer_and_no_status():
    outcome = review.review(json.dumps(admission_review(v2_pod(), "u-1")), OPTED_IN, SETTINGS)
    assert outcome.outcome == review.OUTCOME_INJECTED and outcome.kind == contract.KIND_V2_EXECUTOR
    assert outcome.response is not None and outcome.uid == "u-1"
    assert outcome.response.response.patch_type == "JSONPatch"
    assert not hasattr(outcome, "status")


def test_a_malformed_review_is_invalid_with_the_problem_and_no_answer():
    outcome = review.review(b"{broken", OPTED_IN, SETTINGS)
    assert outcome.outcome == review.OUTCOME_INVALID and outcome.response is None
    assert "not valid JSON" in outcome.problem


def test_a_non_create_is_skipped_with_an_allowing_answer():
    outcome = review.review(json.dumps(admission_review(v2_pod(), operation="DELETE")), OPTED_IN, SETTINGS)
    assert outcome.outcome == review.OUTCOME_SKIPPED
    assert outcome.response is not None and outcome.response.response.allowed is True


def test_the_review_is_pure_for_the_same_input():
    body = json.dumps(admission_review(v2_pod()))
    first, second = review.review(body, OPTED_IN, SETTINGS), review.review(body, OPTED_IN, SETTINGS)
    assert first.response is not None and second.response is not None
    assert first.response.to_wire() == second.response.to_wire()
