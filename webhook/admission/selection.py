"""Who gets injected: a pure decision from the pod, its facts, its namespace and the settings.

Order matters and mirrors Istio and Datadog: protected namespaces first, then "is this an Argo pod", then
the pod's opt-out label (it always wins), then the three opt-ins (namespace label, pod label, pipeline
pattern), then the kinds that are left alone, then "already injected".
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from webhook.admission import config as cfg
from webhook.admission.podfacts import ARGO_WORKFLOW_LABEL, PodFacts, annotations_of, labels_of
from webhook.shim import contract


@dataclass(frozen=True)
class Decision:
    selected: bool
    reason: str
    warnings: tuple[str, ...] = field(default=())


def already_injected(pod: dict[str, Any]) -> bool:
    """Our status annotation, init container or volume is there: a reinvocation or a re-submitted pod."""
    spec = pod.get("spec") or {}
    if cfg.INJECTED_ANNOTATION in annotations_of(pod):
        return True
    if any(c.get("name") == contract.INIT_CONTAINER_NAME for c in spec.get("initContainers") or []):
        return True
    return any(v.get("name") == contract.VOLUME_NAME for v in spec.get("volumes") or [])


def decide(
    pod: dict[str, Any],
    facts: PodFacts,
    namespace: str,
    namespace_info: cfg.NamespaceInfo,
    settings: cfg.Settings,
) -> Decision:
    """Whether to inject this pod, and why (the reason is what `preview` and the logs show)."""
    if namespace in settings.excluded_namespaces or namespace in cfg.SYSTEM_NAMESPACES:
        return Decision(False, f"namespace {namespace} is excluded")
    if settings.own_namespace and namespace == settings.own_namespace:
        return Decision(False, f"namespace {namespace} is the webhook's own")
    pod_labels = labels_of(pod)
    if ARGO_WORKFLOW_LABEL not in pod_labels:
        return Decision(False, f"not an Argo workflow pod (no {ARGO_WORKFLOW_LABEL} label)")
    warnings: list[str] = []
    pod_switch = pod_labels.get(cfg.INJECT_LABEL)
    if pod_switch == cfg.POD_OPT_OUT_VALUE:
        return Decision(False, f"pod label {cfg.INJECT_LABEL}={cfg.POD_OPT_OUT_VALUE} opts it out")
    if pod_switch not in (None, cfg.POD_INJECT_VALUE):
        warnings.append(
            f"wandb-kfp-webhook: ignored pod label {cfg.INJECT_LABEL}: use "
            f"{cfg.POD_INJECT_VALUE} or {cfg.POD_OPT_OUT_VALUE}"
        )
    patterns, pattern_warnings = cfg.pipeline_patterns(settings, namespace_info.annotations, namespace)
    warnings.extend(pattern_warnings)
    if namespace_info.labels.get(cfg.INJECT_LABEL) == cfg.NAMESPACE_INJECT_VALUE:
        opted_in_by = f"namespace label {cfg.INJECT_LABEL}={cfg.NAMESPACE_INJECT_VALUE}"
    elif pod_switch == cfg.POD_INJECT_VALUE:
        opted_in_by = f"pod label {cfg.INJECT_LABEL}={cfg.POD_INJECT_VALUE}"
    else:
        matched = matching_pattern(patterns, facts)
        if matched is None:
            return Decision(False, "not opted in (no namespace label, pod label or pipeline pattern)", tuple(warnings))
        opted_in_by = f"pipeline pattern {matched}"
    if facts.kind in (contract.KIND_V2_DRIVER, contract.KIND_CACHE_HIT):
        return Decision(False, f"{facts.kind} pods run no user code", tuple(warnings))
    if facts.main_index is None:
        return Decision(False, "the pod has no main container", tuple(warnings))
    if already_injected(pod):
        return Decision(False, "already injected", tuple(warnings))
    return Decision(True, f"opted in by {opted_in_by}", tuple(warnings))


def matching_pattern(patterns: list[str], facts: PodFacts) -> str | None:
    """The first pattern matching the pipeline name (v2) or, when the pod does not say it, the workflow."""
    subject = facts.pipeline_name or facts.workflow
    for pattern in patterns:
        if subject and fnmatch.fnmatchcase(subject, pattern):
            return pattern
    return None
