"""The variables a selected pod's `main` gets: W&B's own (key by reference, URL, project, group, job type,
tags, run id, directory), the identity the shim reads (WANDB_KFP_*), and the shim's switches. Pure.

Names come from the contract; where a value comes from (settings, annotations, pod facts) is
docs/contract.md's table.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from webhook.admission import config as cfg
from webhook.admission.podfacts import KFP_COMPONENT_SPEC_ANNOTATION, PodFacts
from webhook.shim import contract

#: Largest KFP v2 component spec passed to the shim by value (v1's comes from an annotation by fieldRef).
V2_COMPONENT_SPEC_ENV_LIMIT = 32 * 1024

_PROJECT_UNSAFE = re.compile(r"[/\\#?%:\s]+")


def run_id_for(pod: dict[str, Any], namespace: str, request_uid: str) -> str:
    """A W&B run id unique to this pod and stable across reinvocations of the webhook.

    Argo names pods before creating them, so namespace, name and the owning Workflow's uid identify the
    pod; the uid keeps a re-submitted workflow of the same name from reusing an old run.
    """
    metadata = pod.get("metadata") or {}
    owner_uids = ",".join(str(ref.get("uid", "")) for ref in metadata.get("ownerReferences") or [])
    identity = metadata.get("name") or f"{metadata.get('generateName', '')}{request_uid}"
    digest = hashlib.sha256(f"{namespace}/{identity}/{owner_uids}".encode()).hexdigest()
    return f"kfp-{digest[:16]}"


def project_for(config: cfg.InjectionConfig, facts: PodFacts, namespace: str) -> str:
    """Configured project, else the KFP pipeline name when the pod reveals it, else the namespace."""
    if config.project:
        return config.project
    if facts.pipeline_name:
        return _PROJECT_UNSAFE.sub("-", facts.pipeline_name).strip("-")[:128] or namespace
    return namespace


def value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def field_ref(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def wanted_env(
    facts: PodFacts,
    config: cfg.InjectionConfig,
    settings: cfg.Settings,
    namespace: str,
    run_id: str,
    with_shim: bool,
    offline_dir: bool = False,
) -> list[dict[str, Any]]:
    """Every variable the main container should have, in the order they are added."""
    env: list[dict[str, Any]] = [
        {
            "name": contract.WANDB_API_KEY,
            "valueFrom": {
                "secretKeyRef": {
                    "name": config.api_key_secret_name,
                    "key": config.api_key_secret_key,
                    "optional": True,
                }
            },
        },
        value(contract.WANDB_BASE_URL, config.base_url),
        value(contract.WANDB_PROJECT, project_for(config, facts, namespace)),
    ]
    if config.entity:
        env.append(value(contract.WANDB_ENTITY, config.entity))
    group = facts.kfp_run_id or facts.workflow
    if group:
        env.append(value(contract.WANDB_RUN_GROUP, group))
    if facts.component_name:
        env.append(value(contract.WANDB_JOB_TYPE, facts.component_name))
    if config.tags:
        env.append(value(contract.WANDB_TAGS, ",".join(config.tags)))
    if config.kubeflow_url:
        env.append(value(contract.WANDB_KUBEFLOW_URL, config.kubeflow_url))
    env.append(value(contract.WANDB_RUN_ID, run_id))
    if settings.offline_pvc and offline_dir:
        env.append(value(contract.WANDB_DIR, settings.offline_dir))
    env += [
        value(contract.POD_KIND, facts.kind),
        field_ref(contract.POD_NAME, "metadata.name"),
        field_ref(contract.POD_NAMESPACE, "metadata.namespace"),
        field_ref(contract.POD_UID, "metadata.uid"),
    ]
    for name, fact in (
        (contract.KFP_RUN_ID, facts.kfp_run_id),
        (contract.PIPELINE_NAME, facts.pipeline_name),
        (contract.WORKFLOW_NAME, facts.workflow),
        (contract.NODE_NAME, facts.node_name),
    ):
        if fact:
            env.append(value(name, fact))
    if facts.has_component_spec:
        env.append(field_ref(contract.COMPONENT_SPEC, f"metadata.annotations['{KFP_COMPONENT_SPEC_ANNOTATION}']"))
    elif with_shim and facts.v2_component_spec and len(facts.v2_component_spec) <= V2_COMPONENT_SPEC_ENV_LIMIT:
        env.append(value(contract.COMPONENT_SPEC, facts.v2_component_spec))
    if with_shim:
        env += [
            value(contract.INIT_TIMEOUT, str(config.init_timeout_seconds)),
            value(contract.MAX_UPLOAD_BYTES, str(settings.max_upload_bytes)),
        ]
        if facts.argo_artifacts:
            env.append(value(contract.ARGO_ARTIFACTS, facts.argo_artifacts))
        if not config.run_link:
            env.append(value(contract.RUN_LINK, "off"))
    return env


def as_defaults(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The standard WANDB_* variables renamed WANDB_KFP_DEFAULT_*: the shim sets each one only where the
    process environment (which includes the container's envFrom) lacks it."""
    renamed = []
    for var in env:
        if var["name"] in contract.STANDARD_WANDB_VARIABLES:
            var = {**var, "name": contract.DEFAULT_PREFIX + var["name"]}
        renamed.append(var)
    return renamed
