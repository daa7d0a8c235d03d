"""Read what an Argo / KFP pod reveals at admission time: its kind, run, step and pipeline.

Pure functions over the Pod dict. The facts come from labels and annotations the Argo controller and KFP
set, and from the main container's command (emissary-wrapped, with the KFP v2 launcher flags).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from webhook.shim import contract

ARGO_WORKFLOW_LABEL = "workflows.argoproj.io/workflow"
ARGO_NODE_NAME_ANNOTATION = "workflows.argoproj.io/node-name"
KFP_RUN_ID_LABEL = "pipeline/runid"
KFP_V2_LABEL = "pipelines.kubeflow.org/v2_component"
KFP_CACHE_HIT_LABEL = "pipelines.kubeflow.org/reused_from_cache"
KFP_COMPONENT_SPEC_ANNOTATION = "pipelines.kubeflow.org/component_spec"
#: Where Argo puts the pod's template: env on init containers (3.6+) or on all containers (3.2-3.5),
#: the pod annotation (<= 3.1).
ARGO_TEMPLATE_ENV = "ARGO_TEMPLATE"
ARGO_TEMPLATE_ANNOTATION = "workflows.argoproj.io/template"
MAIN_CONTAINER = "main"
#: envFrom sources KFP itself adds to every v2 executor (they hold METADATA_GRPC_SERVICE_HOST/PORT only).
KFP_SYSTEM_ENV_FROM = frozenset({"metadata-grpc-configmap"})

_V1_CALL = re.compile(contract.V1_CALL_PATTERN, re.MULTILINE)


@dataclass(frozen=True)
class PodFacts:
    """What the webhook knows about a pod; every field may be empty when the pod does not say."""

    kind: str
    main_index: int | None
    workflow: str
    node_name: str
    kfp_run_id: str
    pipeline_name: str
    component_name: str
    has_component_spec: bool
    #: KFP v1: compact JSON of the template's input/output artifacts (path -> Argo name); "" when none.
    argo_artifacts: str = ""
    #: The main container's image reference (e.g. `python:3.7`).
    image: str = ""
    #: KFP v2 executor: the component spec JSON the launcher carries (`--component_spec`); else empty.
    v2_component_spec: str = ""


def labels_of(pod: dict[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def annotations_of(pod: dict[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("annotations") or {})


def main_container_index(pod: dict[str, Any]) -> int | None:
    """Index of the container named `main` (the only one running user code in an Argo pod)."""
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        if isinstance(container, dict) and container.get("name") == MAIN_CONTAINER:
            return index
    return None


def user_env_from(container: dict[str, Any]) -> list[dict[str, Any]]:
    """The container's envFrom sources that may set variables the webhook cannot see (KFP's own excluded)."""
    sources = []
    for source in container.get("envFrom") or []:
        reference = source.get("configMapRef") or {}
        if isinstance(reference, dict) and reference.get("name") in KFP_SYSTEM_ENV_FROM and len(source) == 1:
            continue
        sources.append(source)
    return sources


def unwrap_emissary(command: list[str]) -> list[str]:
    """The original command under `argoexec emissary [flags] -- ...`; unchanged when not wrapped."""
    if len(command) >= 2 and command[0].endswith("argoexec") and "emissary" in command[1:]:
        start = command.index("emissary")
        if "--" in command[start:]:
            return command[command.index("--", start) + 1 :]
    return list(command)


def main_argv(container: dict[str, Any]) -> list[str]:
    """What the main container really runs: the unwrapped command followed by its args."""
    command = [str(part) for part in container.get("command") or []]
    args = [str(part) for part in container.get("args") or []]
    return unwrap_emissary(command) + args


def launcher_flags(argv: list[str]) -> dict[str, str]:
    """`--flag value` pairs of the KFP v2 launcher or driver, up to the `--` that starts the component."""
    flags: dict[str, str] = {}
    index = 1
    while index < len(argv) - 1:
        word = argv[index]
        if word == "--":
            break
        if word.startswith("--"):
            flags[word[2:]] = argv[index + 1]
            index += 2
        else:
            index += 1
    return flags


def classify(pod: dict[str, Any], argv: list[str]) -> str:
    """One of the contract's pod kinds; only meaningful for Argo workflow pods."""
    pod_labels = labels_of(pod)
    if pod_labels.get(KFP_CACHE_HIT_LABEL) == "true":
        return contract.KIND_CACHE_HIT
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    if pod_labels.get(KFP_V2_LABEL) == "true" or annotations_of(pod).get(KFP_V2_LABEL) == "true":
        if program == "driver":
            return contract.KIND_V2_DRIVER
        if program == "launch" and any(module in word for word in argv for module in contract.V2_EXECUTOR_MAIN_MODULES):
            return contract.KIND_V2_EXECUTOR
        return contract.KIND_ARGO
    if any(_V1_CALL.search(word) for word in argv):
        return contract.KIND_V1_COMPONENT
    return contract.KIND_ARGO


def _component_name(pod: dict[str, Any], kind: str, flags: dict[str, str], node_name: str) -> str:
    """The step as the KFP UI names it: the task (v2) or template (v1) name, else the component's name."""
    if kind == contract.KIND_V1_COMPONENT:
        spec = _json_object(annotations_of(pod).get(KFP_COMPONENT_SPEC_ANNOTATION))
        step = _step_from_node_name(node_name)
        if step or not isinstance(spec.get("name"), str):
            return step
        return str(spec["name"])
    if kind == contract.KIND_V2_EXECUTOR:
        for flag in ("task_name", "task"):
            if flags.get(flag):
                return flags[flag]
        label = _json_object(flags.get("component_spec")).get("executorLabel")
        if isinstance(label, str) and label:
            return label.removeprefix("exec-")
    return _step_from_node_name(node_name)


def _step_from_node_name(node_name: str) -> str:
    """`wf.root.train.executor` -> `train`: the last segment that is not an Argo/KFP plumbing name."""
    plumbing = {"executor", "driver", "root", "root-driver"}
    segments = [s for s in node_name.split(".")[1:] if s and s not in plumbing]
    return re.sub(r"\(\d+(:[^)]*)?\)$", "", segments[-1]) if segments else ""


def pipeline_name_of(flag: str) -> str:
    """KFP multi-user mode passes `namespace/<ns>/pipeline/<name>` to the launcher; keep `<name>`."""
    parts = flag.split("/")
    if len(parts) == 4 and parts[0] == "namespace" and parts[2] == "pipeline":
        return parts[3]
    return flag


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def argo_template_text(pod: dict[str, Any]) -> str:
    """The pod's Argo template JSON: ARGO_TEMPLATE of main, of an init container, of any container, or
    the template annotation; "" when the pod carries none."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    containers = [c for c in _list(spec.get("containers")) if isinstance(c, dict)]
    init_containers = [c for c in _list(spec.get("initContainers")) if isinstance(c, dict)]
    main = [c for c in containers if c.get("name") == MAIN_CONTAINER]
    others = [c for c in containers if c.get("name") != MAIN_CONTAINER]
    for container in (*main, *init_containers, *others):
        for var in _list(container.get("env")):
            if isinstance(var, dict) and var.get("name") == ARGO_TEMPLATE_ENV and isinstance(var.get("value"), str):
                return str(var["value"])
    annotation = annotations_of(pod).get(ARGO_TEMPLATE_ANNOTATION)
    return annotation if isinstance(annotation, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def argo_artifacts_of(template_text: str) -> str:
    """`{"inputs": {path: name}, "outputs": {path: name}}` of an Argo template, as compact JSON.

    Only names and paths are kept (the template itself can be tens of KB). "" when the template has no
    artifacts, cannot be read, or the result would exceed contract.ARGO_ARTIFACTS_MAX_CHARS.
    """
    template = _json_object(template_text)
    result: dict[str, dict[str, str]] = {}
    for side in ("inputs", "outputs"):
        holder = template.get(side)
        artifacts = holder.get("artifacts") if isinstance(holder, dict) else None
        paths = {
            artifact["path"]: artifact["name"]
            for artifact in _list(artifacts)
            if isinstance(artifact, dict)
            and isinstance(artifact.get("name"), str)
            and isinstance(artifact.get("path"), str)
            and artifact["name"]
            and artifact["path"]
        }
        if paths:
            result[side] = paths
    if not result:
        return ""
    text = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= contract.ARGO_ARTIFACTS_MAX_CHARS else ""


def read_facts(pod: dict[str, Any]) -> PodFacts:
    """Everything the selector and the patch builder need to know about the pod, read once."""
    pod_labels = labels_of(pod)
    pod_annotations = annotations_of(pod)
    index = main_container_index(pod)
    argv = main_argv(pod["spec"]["containers"][index]) if index is not None else []
    kind = classify(pod, argv)
    flags = launcher_flags(argv) if kind in (contract.KIND_V2_EXECUTOR, contract.KIND_V2_DRIVER) else {}
    node_name = pod_annotations.get(ARGO_NODE_NAME_ANNOTATION, "")
    return PodFacts(
        kind=kind,
        main_index=index,
        workflow=pod_labels.get(ARGO_WORKFLOW_LABEL, ""),
        node_name=node_name,
        kfp_run_id=pod_labels.get(KFP_RUN_ID_LABEL, "") or flags.get("run_id", ""),
        pipeline_name=pipeline_name_of(flags.get("pipeline_name", "")),
        component_name=_component_name(pod, kind, flags, node_name),
        has_component_spec=KFP_COMPONENT_SPEC_ANNOTATION in pod_annotations,
        argo_artifacts=argo_artifacts_of(argo_template_text(pod)) if kind == contract.KIND_V1_COMPONENT else "",
        image=str(pod["spec"]["containers"][index].get("image") or "") if index is not None else "",
        v2_component_spec=flags.get("component_spec", "") if kind == contract.KIND_V2_EXECUTOR else "",
    )
