"""Build the RFC 6902 JSONPatch that injects W&B into a selected pod: pod in, operations out.

Only the `main` container is touched. A variable the container already sets is never overwritten; the
operations are valid whether `env`, `volumes`, `volumeMounts`, `initContainers` and `annotations` exist
or not, and keys are JSON-pointer escaped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from webhook.admission import config as cfg
from webhook.admission import pythonimage
from webhook.admission.podfacts import KFP_COMPONENT_SPEC_ANNOTATION, PodFacts, main_argv, user_env_from
from webhook.shim import contract

Operation = dict[str, Any]
#: Largest KFP v2 component spec passed to the shim by value (v1's comes from an annotation by fieldRef).
V2_COMPONENT_SPEC_ENV_LIMIT = 32 * 1024

_PROJECT_UNSAFE = re.compile(r"[/\\#?%:\s]+")


@dataclass(frozen=True)
class Injection:
    """The patch, the kind recorded on the pod, the W&B run id it was given, and any warnings."""

    operations: list[Operation]
    kind: str
    run_id: str
    with_shim: bool
    warnings: tuple[str, ...]


def escape_pointer(token: str) -> str:
    """RFC 6901: `~` becomes `~0`, `/` becomes `~1`."""
    return token.replace("~", "~0").replace("/", "~1")


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


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def wanted_env(
    facts: PodFacts,
    config: cfg.InjectionConfig,
    settings: cfg.Settings,
    namespace: str,
    run_id: str,
    with_shim: bool,
    offline_dir: bool = True,
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
        _value(contract.WANDB_BASE_URL, config.base_url),
        _value(contract.WANDB_PROJECT, project_for(config, facts, namespace)),
    ]
    if config.entity:
        env.append(_value(contract.WANDB_ENTITY, config.entity))
    group = facts.kfp_run_id or facts.workflow
    if group:
        env.append(_value(contract.WANDB_RUN_GROUP, group))
    if facts.component_name:
        env.append(_value(contract.WANDB_JOB_TYPE, facts.component_name))
    if config.tags:
        env.append(_value(contract.WANDB_TAGS, ",".join(config.tags)))
    if config.kubeflow_url:
        env.append(_value(contract.WANDB_KUBEFLOW_URL, config.kubeflow_url))
    env.append(_value(contract.WANDB_RUN_ID, run_id))
    if settings.offline_pvc and offline_dir:
        env.append(_value(contract.WANDB_DIR, settings.offline_dir))
    env += [
        _value(contract.POD_KIND, facts.kind),
        _field(contract.POD_NAME, "metadata.name"),
        _field(contract.POD_NAMESPACE, "metadata.namespace"),
        _field(contract.POD_UID, "metadata.uid"),
    ]
    for name, fact in (
        (contract.KFP_RUN_ID, facts.kfp_run_id),
        (contract.PIPELINE_NAME, facts.pipeline_name),
        (contract.WORKFLOW_NAME, facts.workflow),
        (contract.NODE_NAME, facts.node_name),
    ):
        if fact:
            env.append(_value(name, fact))
    if facts.has_component_spec:
        env.append(_field(contract.COMPONENT_SPEC, f"metadata.annotations['{KFP_COMPONENT_SPEC_ANNOTATION}']"))
    elif with_shim and facts.v2_component_spec and len(facts.v2_component_spec) <= V2_COMPONENT_SPEC_ENV_LIMIT:
        env.append(_value(contract.COMPONENT_SPEC, facts.v2_component_spec))
    if with_shim:
        env += [
            _value(contract.INIT_TIMEOUT, str(config.init_timeout_seconds)),
            _value(contract.MAX_UPLOAD_BYTES, str(settings.max_upload_bytes)),
        ]
        if facts.argo_artifacts:
            env.append(_value(contract.ARGO_ARTIFACTS, facts.argo_artifacts))
        if not config.run_link:
            env.append(_value(contract.RUN_LINK, "off"))
    return env


def init_container(settings: cfg.Settings, narrowed: list[str] | None = None) -> dict[str, Any]:
    """Copies the shim (`narrowed`: `--python 3.X [--compat]`, one minor's vendored wandb) into the shared
    volume; small, and passes Pod Security "restricted"."""
    resources = settings.shim_resources
    narrowed = narrowed or []
    return {
        "name": contract.INIT_CONTAINER_NAME,
        "image": settings.shim_image,
        "imagePullPolicy": settings.shim_image_pull_policy,
        "command": [*contract.INSTALL_COMMAND, *narrowed],
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": contract.VOLUME_NAME, "mountPath": contract.SHIM_MOUNT_PATH}],
    }


def shim_bootstrap_dir(settings: cfg.Settings) -> str:
    """The bootstrap directory as the main container sees it, for either delivery."""
    if settings.shim_delivery == "imageVolume":
        return contract.bootstrap_dir(contract.SHIM_MOUNT_PATH + "/" + settings.shim_image_layout_path.strip("/"))
    return contract.bootstrap_dir()


def shim_volume(settings: cfg.Settings, python: str | None = None, compat: bool = True) -> dict[str, Any]:
    if settings.shim_delivery == "imageVolume":
        return {
            "name": contract.VOLUME_NAME,
            "image": {"reference": settings.shim_image, "pullPolicy": settings.shim_image_pull_policy},
        }
    return {
        "name": contract.VOLUME_NAME,
        "emptyDir": {"sizeLimit": pythonimage.size_limit(python, compat, settings.shim_size_limit)},
    }


def _shaped(value: Any, kind: type, where: str) -> Any:
    """The field, or None when absent; a wrong type (never sent by an apiserver) aborts the injection."""
    if value is None or isinstance(value, kind):
        return value
    raise ValueError(f"{where} is not a {kind.__name__}")


def _append_all(ops: list[Operation], path: str, existing: list[Any] | None, items: list[Any]) -> None:
    """Append items to the list at `path`, creating the list when the pod has none."""
    if not items:
        return
    if existing is None:
        ops.append({"op": "add", "path": path, "value": items})
    else:
        ops.extend({"op": "add", "path": f"{path}/-", "value": item} for item in items)


def _names(items: Any) -> set[str]:
    return {str(item.get("name")) for item in items or [] if isinstance(item, dict)}


def shim_collision(pod: dict[str, Any], main: dict[str, Any], settings: cfg.Settings) -> str | None:
    """Why the shim cannot be added without making the pod invalid (a name or mount path in use), or None."""
    spec = pod["spec"]
    if settings.shim_delivery == "initContainer" and contract.INIT_CONTAINER_NAME in _names(
        spec.get("containers")
    ) | _names(spec.get("initContainers")):
        return f"a container is already named {contract.INIT_CONTAINER_NAME}"
    mount_paths = {str(m.get("mountPath", "")).rstrip("/") for m in main.get("volumeMounts") or []}
    if contract.SHIM_MOUNT_PATH in mount_paths:
        return f"container main already mounts something at {contract.SHIM_MOUNT_PATH}"
    return None


def offline_collision(pod: dict[str, Any], main: dict[str, Any], settings: cfg.Settings) -> str | None:
    """Why the offline-runs volume cannot be added (its volume name or mount path in use), or None."""
    if contract.OFFLINE_VOLUME_NAME in _names(pod["spec"].get("volumes")):
        return f"a volume is already named {contract.OFFLINE_VOLUME_NAME}"
    mount_paths = {str(m.get("mountPath", "")).rstrip("/") for m in main.get("volumeMounts") or []}
    if settings.offline_dir.rstrip("/") in mount_paths:
        return f"container main already mounts something at {settings.offline_dir}"
    return None


def _as_defaults(env: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The standard WANDB_* variables renamed WANDB_KFP_DEFAULT_*: the shim sets each one only where the
    process environment (which includes the container's envFrom) lacks it."""
    renamed = []
    for var in env:
        if var["name"] in contract.STANDARD_WANDB_VARIABLES:
            var = {**var, "name": contract.DEFAULT_PREFIX + var["name"]}
        renamed.append(var)
    return renamed


def build(
    pod: dict[str, Any],
    facts: PodFacts,
    config: cfg.InjectionConfig,
    settings: cfg.Settings,
    namespace: str,
    request_uid: str,
) -> Injection:
    """The JSONPatch for a pod the selector chose (facts.main_index must be set)."""
    assert facts.main_index is not None, "build() needs a pod with a main container"
    index = facts.main_index
    spec = pod["spec"]
    main = spec["containers"][index]
    main_path = f"/spec/containers/{index}"
    warnings = list(config.warnings)
    existing_env: list[dict[str, Any]] | None = _shaped(main.get("env"), list, "main env")
    present = {str(var.get("name")): position for position, var in enumerate(existing_env or [])}
    has_env_from = bool(user_env_from(main))

    with_shim = facts.kind in contract.SHIM_KINDS and config.shim_enabled
    pythonpath_at = present.get("PYTHONPATH")
    if with_shim and pythonpath_at is not None and "valueFrom" in (existing_env or [])[pythonpath_at]:
        with_shim = False
        warnings.append(
            "wandb-kfp-webhook: container main sets PYTHONPATH with valueFrom; W&B env injected without the shim"
        )
    collision = shim_collision(pod, main, settings) if with_shim else None
    if collision is not None:
        with_shim = False
        warnings.append(f"wandb-kfp-webhook: {collision}; W&B env injected without the shim")

    run_id = run_id_for(pod, namespace, request_uid)
    if contract.WANDB_RUN_ID in present:
        run_id = str((existing_env or [])[present[contract.WANDB_RUN_ID]].get("value") or "")
    offline_problem = offline_collision(pod, main, settings) if settings.offline_pvc else None
    if offline_problem is not None:
        warnings.append(f"wandb-kfp-webhook: {offline_problem}; offline runs stay in the pod")
    ops: list[Operation] = []
    env = [
        var
        for var in wanted_env(facts, config, settings, namespace, run_id, with_shim, offline_problem is None)
        if var["name"] not in present
    ]
    if has_env_from:
        # envFrom is not visible at admission, and `env` would override what it sets (a self-hosted
        # WANDB_BASE_URL, a key): with the shim the values become defaults it applies only where missing;
        # without the shim nothing could apply them, so they are left out.
        if with_shim:
            env = _as_defaults(env)
        else:
            left_out = [var["name"] for var in env if var["name"] in contract.STANDARD_WANDB_VARIABLES]
            env = [var for var in env if var["name"] not in contract.STANDARD_WANDB_VARIABLES]
            if left_out:
                warnings.append(
                    "wandb-kfp-webhook: container main uses envFrom, which may set them; not injected: "
                    + ", ".join(left_out)
                )
    if with_shim:
        bootstrap = shim_bootstrap_dir(settings)
        if pythonpath_at is None:
            image_path = f":{config.image_pythonpath}" if config.image_pythonpath else ""
            # $(PYTHONPATH) is expanded by the kubelet from envFrom, which this webhook cannot see.
            from_env = ":$(PYTHONPATH)" if has_env_from else ""
            env.append(_value("PYTHONPATH", bootstrap + from_env + image_path))
        else:
            current = str((existing_env or [])[pythonpath_at].get("value") or "")
            joined = f"{bootstrap}:{current}" if current else bootstrap
            ops.append({"op": "replace", "path": f"{main_path}/env/{pythonpath_at}/value", "value": joined})
    _append_all(ops, f"{main_path}/env", existing_env, env)

    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if with_shim:
        python = pythonimage.python_minor(facts.image)
        compat = pythonimage.installs_packages(main_argv(main))
        volumes.append(shim_volume(settings, python, compat))
        mounts.append({"name": contract.VOLUME_NAME, "mountPath": contract.SHIM_MOUNT_PATH, "readOnly": True})
        if settings.shim_delivery == "initContainer":
            init_containers = _shaped(spec.get("initContainers"), list, "initContainers")
            init = init_container(settings, pythonimage.install_args(python, compat))
            _append_all(ops, "/spec/initContainers", init_containers, [init])
        if len(facts.v2_component_spec) > V2_COMPONENT_SPEC_ENV_LIMIT and not facts.has_component_spec:
            warnings.append(
                f"wandb-kfp-webhook: the component spec is over {V2_COMPONENT_SPEC_ENV_LIMIT} bytes; "
                "it is not saved in the W&B run"
            )
    if settings.offline_pvc and offline_problem is None:
        volumes.append(
            {
                "name": contract.OFFLINE_VOLUME_NAME,
                "persistentVolumeClaim": {"claimName": settings.offline_pvc},
            }
        )
        mounts.append({"name": contract.OFFLINE_VOLUME_NAME, "mountPath": settings.offline_dir})
    _append_all(ops, f"{main_path}/volumeMounts", _shaped(main.get("volumeMounts"), list, "volumeMounts"), mounts)
    _append_all(ops, "/spec/volumes", _shaped(spec.get("volumes"), list, "volumes"), volumes)

    status = {cfg.INJECTED_ANNOTATION: facts.kind}
    if run_id:  # empty when the user sets WANDB_RUN_ID through valueFrom: the pod cannot say it
        status[cfg.RUN_ID_ANNOTATION] = run_id
    if _shaped(pod["metadata"].get("annotations"), dict, "annotations") is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": status})
    else:
        ops.extend(
            {"op": "add", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value}
            for key, value in status.items()
        )
    return Injection(ops, facts.kind, run_id, with_shim, tuple(warnings))
