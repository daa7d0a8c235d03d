"""Turn an AdmissionReview body into an outcome: validate, decide, build the patch, never block.

`evaluate` is the pure core (pod in, decision and patch out) that both the server and `preview` use;
`review` adds the wire format and the failure rules: a malformed review is an `invalid` outcome naming
the problem (the server answers it with a 400), and any internal error admits the pod unchanged with a
warning. HTTP status codes are the server's business, not this module's.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError
from pydantic_core import to_json

from webhook.admission import config as cfg
from webhook.admission.models import (
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReviewRequest,
    AdmissionReviewResponse,
)
from webhook.admission.patch import Injection, build
from webhook.admission.podfacts import PodFacts, annotations_of, read_facts
from webhook.admission.podshape import pod_shape_problem
from webhook.admission.selection import Decision, decide
from webhook.logs import bounded

log = logging.getLogger(__name__)

OUTCOME_INJECTED = "injected"
OUTCOME_SKIPPED = "skipped"
OUTCOME_ERROR = "error"
OUTCOME_INVALID = "invalid"


class NamespaceLookup(Protocol):
    def get(self, name: str) -> cfg.NamespaceInfo | None: ...


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    facts: PodFacts | None
    injection: Injection | None

    @property
    def warnings(self) -> list[str]:
        found = list(self.decision.warnings) + list(self.injection.warnings if self.injection else ())
        return list(dict.fromkeys(found))


def evaluate(
    pod: dict[str, Any],
    namespace: str,
    namespace_info: cfg.NamespaceInfo | None,
    settings: cfg.Settings,
    request_uid: str = "",
) -> Evaluation:
    """Decide and, when selected, build the patch. Pure: the same pod and settings give the same result."""
    facts = read_facts(pod)
    info = namespace_info or cfg.NamespaceInfo()
    decision = decide(pod, facts, namespace, info, settings)
    if not decision.selected:
        return Evaluation(decision, facts, None)
    injection_config = cfg.resolve(settings, info.annotations, annotations_of(pod), namespace)
    return Evaluation(decision, facts, build(pod, facts, injection_config, settings, namespace, request_uid))


@dataclass
class Outcome:
    """What a review came to: `outcome` (injected, skipped, error or invalid), the AdmissionReview answer
    (None for an invalid review: `problem` says what is wrong with it), and what metrics and logs record."""

    outcome: str
    response: AdmissionReviewResponse | None
    problem: str = ""
    kind: str = ""
    reason: str = ""
    evaluation: Evaluation | None = field(default=None, repr=False)

    @property
    def uid(self) -> str:
        return self.response.response.uid if self.response else ""


def invalid(message: str) -> Outcome:
    return Outcome(OUTCOME_INVALID, None, problem=message, reason=message)


_WRONG_KIND = "kind must be AdmissionReview"
_WRONG_VERSION = "apiVersion must be admission.k8s.io/v1 (admissionReviewVersions: [v1])"


def parse_review(body: bytes | str) -> AdmissionReviewRequest | Outcome:
    """The validated AdmissionReview, or an invalid outcome that names the problem (never echoing the body).

    pydantic parses the JSON itself (in Rust), which is most of a review's cost on large pods.
    """
    try:
        return AdmissionReviewRequest.model_validate_json(body)
    except ValidationError as problem:
        errors = problem.errors(include_input=False, include_url=False)
    kinds = {error["type"] for error in errors}
    places = {error["loc"][:1] for error in errors}
    if "json_invalid" in kinds:
        return invalid("request body is not valid JSON")
    if ("model_type" in kinds or "model_attributes_type" in kinds) and () in places:
        return invalid("request body must be a JSON object (an AdmissionReview)")
    if ("kind",) in places:
        return invalid(_WRONG_KIND)
    if ("apiVersion",) in places:
        return invalid(_WRONG_VERSION)
    details = "; ".join(f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors)
    return invalid(f"invalid AdmissionReview: {details}")


def response_for(uid: str, evaluation: Evaluation | None, extra_warnings: list[str]) -> AdmissionReviewResponse:
    """The AdmissionReview answer: allowed, the patch when there is one, and every warning."""
    warnings = (evaluation.warnings if evaluation else []) + extra_warnings
    response = AdmissionResponse(uid=uid, allowed=True, warnings=warnings or None)
    if evaluation and evaluation.injection and evaluation.injection.operations:
        response.patch_type = "JSONPatch"
        response.patch = base64.b64encode(to_json(evaluation.injection.operations)).decode()
    return AdmissionReviewResponse(response=response)


def _is_pod_create(request: AdmissionRequest) -> bool:
    return (
        request.operation == "CREATE"
        and request.kind.kind == "Pod"
        and request.resource.resource in ("pods", "")
        and not request.sub_resource
        and isinstance(request.object, dict)
    )


def review(body: bytes | str, namespaces: NamespaceLookup, settings: cfg.Settings) -> Outcome:
    """Answer one AdmissionReview. Always `allowed: true`; only a malformed review is invalid."""
    parsed = parse_review(body)
    if isinstance(parsed, Outcome):
        return parsed
    request = parsed.request
    if not _is_pod_create(request):
        return Outcome(OUTCOME_SKIPPED, response_for(request.uid, None, []), reason="not a pod CREATE")
    pod: dict[str, Any] = request.object or {}
    shape_problem = pod_shape_problem(pod)
    if shape_problem is not None:
        return invalid(f"request.object is not a Pod: {shape_problem}")
    namespace = request.namespace or str(pod["metadata"].get("namespace") or "")
    try:
        evaluation = evaluate(pod, namespace, namespaces.get(namespace), settings, request.uid)
    except Exception as problem:  # noqa: BLE001 - a webhook must admit the pod whatever went wrong
        log.error(
            "internal error, pod admitted unchanged",
            extra={
                "uid": bounded(request.uid, 64),
                "namespace": bounded(namespace, 63),
                "error": type(problem).__name__,
            },
        )
        warning = f"wandb-kfp-webhook: internal error ({type(problem).__name__}); pod admitted without W&B"
        return Outcome(OUTCOME_ERROR, response_for(request.uid, None, [warning]), reason=warning)
    injected = evaluation.injection is not None
    kind = evaluation.facts.kind if evaluation.facts else ""
    return Outcome(
        OUTCOME_INJECTED if injected else OUTCOME_SKIPPED,
        response_for(request.uid, evaluation, []),
        kind=kind,
        reason=evaluation.decision.reason,
        evaluation=evaluation,
    )
