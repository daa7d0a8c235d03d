"""Run a Pod as the apiserver stored it, on this machine, the way a kubelet would run its containers.

No kubelet here, so this stands in for one, and only for what the product depends on:
  * env: `value`, `secretKeyRef` (read from the real Secret through the API), `fieldRef` (from the Pod);
  * the shim's init container: its own command, with the shared emptyDir as a temp dir;
  * the main container: its command with the Argo emissary prefix stripped; for a KFP v2 executor pod
    the KFP launcher's job is done here (it runs the component command with `{{$}}` replaced by the
    executor input, and stores artifacts locally instead of in MinIO);
  * the container's paths KFP writes (/tmp/inputs, /tmp/outputs, /tmp/kfp_outputs, minio://) and every
    volume mount of the main container live under a work dir; `python3` is the interpreter asked for.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.fixtures.pods import container, executor_input_json, is_launcher, strip_emissary
from webhook.shim import contract

#: Container paths KFP reads and writes, and where they live under the work dir.
KFP_PATHS = (
    ("minio://", "minio/"),
    ("/tmp/kfp_outputs", "kfp_outputs"),
    ("/tmp/kfp/outputs", "kfp/outputs"),
    ("/tmp/inputs", "inputs"),
    ("/tmp/outputs", "outputs"),
)
_FIELD_PATH = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
_EXECUTOR_INPUT_PLACEHOLDER = "{{$}}"


def relocate(text: str, work: Path) -> str:
    """A container path (or a string holding some) rewritten under the work dir."""
    for old, new in KFP_PATHS:
        text = text.replace(old, f"{work}/{new}")
    return text


@dataclass
class LocalRun:
    returncode: int
    stdout: str
    stderr: str
    work: Path
    env: dict[str, str]


def field_value(pod: dict[str, Any], path: str) -> str:
    """The downward API: what `fieldRef.fieldPath` gives a container of this pod."""
    metadata = pod["metadata"]
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
    }
    if path in simple:
        return str(simple[path])
    match = _FIELD_PATH.match(path)
    if match is None:
        raise ValueError(f"unsupported fieldPath {path}")
    return str((metadata.get(match.group(1)) or {}).get(match.group(2), ""))


SecretReader = Callable[[str], "dict[str, str] | None"]


def cluster_secrets(api_client: k8s.ApiClient, namespace: str) -> SecretReader:
    """Read Secrets from the real apiserver, as the kubelet does: name -> decoded data, None when absent."""
    core = k8s.CoreV1Api(api_client)

    def read(name: str) -> dict[str, str] | None:
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}

    return read


def no_secrets(name: str) -> dict[str, str] | None:
    """A namespace without Secrets (the local demo): optional references resolve to nothing."""
    return None


def resolve_env(pod: dict[str, Any], spec: dict[str, Any], read_secret: SecretReader) -> dict[str, str]:
    """A container's env as the kubelet resolves it (an optional secret that is missing is left out)."""
    resolved: dict[str, str] = {}
    for variable in spec.get("env") or []:
        if "value" in variable:
            resolved[variable["name"]] = str(variable["value"])
            continue
        source = variable.get("valueFrom") or {}
        if "fieldRef" in source:
            resolved[variable["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = read_secret(ref["name"])
            if data is not None and ref["key"] in data:
                resolved[variable["name"]] = data[ref["key"]]
            elif not ref.get("optional"):
                raise KeyError(f"secret {ref['name']} or its key {ref['key']} is missing")
    return resolved


def mounts(spec: dict[str, Any], work: Path) -> dict[str, str]:
    """Each volume mount path of a container, mapped to a directory under the work dir."""
    mapped = {}
    for mount in spec.get("volumeMounts") or []:
        local = work / "volumes" / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        mapped[mount["mountPath"]] = str(local)
    return mapped


def in_mounts(text: str, mapped: dict[str, str]) -> str:
    for path in sorted(mapped, key=len, reverse=True):
        text = text.replace(path, mapped[path])
    return text


def run_init_container(pod: dict[str, Any], work: Path, payload: Path) -> subprocess.CompletedProcess[str]:
    """The shim's init container, as it runs in the pod: its command, into the shared volume."""
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME)
    mapped = mounts(init, work)
    executable = Path(sys.executable).parent / init["command"][0]
    argv = [str(executable), *(in_mounts(arg, mapped) for arg in init["command"][1:] + init.get("args", []))]
    env = {"PATH": os.environ["PATH"], contract.PAYLOAD_DIR_ENV: str(payload)}  # as the image's ENV sets it
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)


def component_argv(pod: dict[str, Any]) -> list[str]:
    """What the main container runs: emissary stripped, and for v2 the launcher's component command."""
    main = container(pod)
    command = strip_emissary(list(main.get("command") or []))
    args = list(main.get("args") or [])
    if is_launcher(command):
        executor_input = executor_input_json(pod)
        return [arg.replace(_EXECUTOR_INPUT_PLACEHOLDER, executor_input) for arg in args]
    return command + args


def run_main_container(
    pod: dict[str, Any], work: Path, python: Path, extra_env: dict[str, str], read_secret: SecretReader = no_secrets
) -> LocalRun:
    """The main container's process, with its resolved env, its mounts under `work` and `python3` = python."""
    main = container(pod)
    mapped = mounts(main, work)
    # values holding container paths (WANDB_KFP_ARGO_ARTIFACTS) move with the argv's paths
    resolved = resolve_env(pod, main, read_secret)
    env = {name: relocate(in_mounts(value, mapped), work) for name, value in resolved.items()}
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python3", "python"):
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(python)
    env["PATH"] = f"{bin_dir}:{python.parent}:/usr/local/bin:/usr/bin:/bin"
    env["HOME"] = str(work / "home")
    env.update(extra_env)
    argv = [relocate(arg, work) for arg in component_argv(pod)]
    completed = subprocess.run(argv, env=env, cwd=work, capture_output=True, text=True, timeout=600, check=False)
    return LocalRun(completed.returncode, completed.stdout, completed.stderr, work, env)


def prepare_inputs(entry: dict[str, Any], work: Path) -> None:
    """What earlier steps left for this one: input files (v1) and input artifacts (v2)."""
    for holder in (entry.get("input_files") or {}).values():
        path = Path(relocate(holder["path"], work))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(holder["content"])
    for holder in (entry.get("input_artifacts") or {}).values():
        path = Path(relocate(holder["uri"], work))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(holder["content"])


def executor_output(work: Path) -> dict[str, Any]:
    """The KFP v2 executor's output metadata file, as the launcher would read it."""
    path = Path(relocate("/tmp/kfp_outputs/output_metadata.json", work))
    return dict(json.loads(path.read_text()))
