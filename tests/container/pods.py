"""Run a Pod's containers with podman the way a kubelet would: env, volumes, user, working directory.

Given a Pod (a fixture, or what `wandb-kfp-webhook preview` made of it) this module turns one of its
containers into a `podman run`:

- env: `value` with `$(VAR)` expansion of earlier variables, `fieldRef` (metadata.name / namespace / uid /
  labels / annotations), `secretKeyRef` / `configMapKeyRef` from the objects given (an `optional` reference
  to a missing one leaves the variable unset, as the kubelet does); `$(VAR)` in command and args too;
- command overrides the image's entrypoint and args its cmd, as in a Pod;
- volumes: an emptyDir is a host directory (mode 0777) shared by every container of the pod; a secret or
  configMap volume is a host directory holding its items (defaultMode, group fsGroup); a projected
  service-account volume is an empty read-only directory (no apiserver); `subPath` and `readOnly` apply;
- securityContext (pod, then container): runAsUser/runAsGroup, fsGroup as a supplementary group,
  runAsNonRoot (refused for UID 0, as the kubelet refuses it), readOnlyRootFilesystem (no tmpfs added),
  allowPrivilegeEscalation false (no-new-privileges), capabilities, seccomp RuntimeDefault (podman's default);
- workingDir, and the pod name as hostname.

Not modelled: resources (this machine's cgroup v1 hierarchy exposes no memory controller to podman),
probes, networking (containers get `--network=none`; the tests reach a server through its network
namespace), Argo's emissary and the KFP launcher (callers run the command they would run).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.container.podman import GLOBAL_FLAGS, ULIMITS, podman, remove_container

EMPTY_DIR_MODE = 0o777
DEFAULT_SECRET_MODE = 0o644

_FIELD_LABEL = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`, the rest stays."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$" or index + 1 >= len(text):
            out.append(char)
            index += 1
            continue
        following = text[index + 1]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "(":
            closing = text.find(")", index + 2)
            if closing == -1:
                out.append("$(")
                index += 2
            else:
                name = text[index + 2 : closing]
                out.append(env[name] if name in env else f"$({name})")
                index = closing + 1
        else:
            out.append("$" + following)
            index += 2
    return "".join(out)


class PodSpecError(ValueError):
    """The kubelet would refuse to start this container (for example runAsNonRoot with UID 0)."""


@dataclass
class PodObjects:
    """The API objects a pod's env and volumes may reference, by name."""

    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class ContainerResult:
    """What one container did."""

    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    container_id: str


@dataclass
class PodSandbox:
    """One pod's volumes on the host (under `root`) and the identity the kubelet would give it."""

    pod: dict[str, Any]
    root: Path
    objects: PodObjects = field(default_factory=PodObjects)
    pod_uid: str = field(default_factory=lambda: str(uuid.UUID(int=0x5EED)))
    keep_containers: bool = False

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.pod.setdefault("metadata", {}).setdefault("uid", self.pod_uid)
        self._volumes: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes", []):
            self._volumes[volume["name"]] = self._make_volume(volume)

    # --- volumes -----------------------------------------------------------------------------------------
    @property
    def fs_group(self) -> int | None:
        value = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return int(value) if value is not None else None

    def volume_dir(self, name: str) -> Path:
        return self._volumes[name]

    def _make_volume(self, volume: dict[str, Any]) -> Path:
        path = self.root / "volumes" / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        group = self.fs_group
        if "emptyDir" in volume:
            path.chmod(EMPTY_DIR_MODE)
            if group is not None:
                os.chown(path, 0, group)
                path.chmod(EMPTY_DIR_MODE | 0o2000)
        elif "secret" in volume:
            source = volume["secret"]
            data = self.objects.secrets.get(source["secretName"])
            if data is None:
                if not source.get("optional"):
                    raise PodSpecError(f"secret {source['secretName']} not found")
                data = {}
            self._write_items(path, data, source.get("items"), source.get("defaultMode", DEFAULT_SECRET_MODE))
        elif "configMap" in volume:
            source = volume["configMap"]
            text = self.objects.config_maps.get(source["name"])
            if text is None:
                if not source.get("optional"):
                    raise PodSpecError(f"configMap {source['name']} not found")
                text = {}
            data = {key: value.encode() for key, value in text.items()}
            self._write_items(path, data, source.get("items"), source.get("defaultMode", DEFAULT_SECRET_MODE))
        else:
            path.chmod(0o755)  # projected service-account token and others: present, empty
        return path

    def _write_items(
        self, path: Path, data: Mapping[str, bytes], items: Sequence[dict[str, Any]] | None, mode: int
    ) -> None:
        chosen = [(item["key"], item["path"], item.get("mode", mode)) for item in items] if items else None
        for key, relative, file_mode in chosen or [(key, key, mode) for key in data]:
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            if self.fs_group is not None:
                os.chown(target, 0, self.fs_group)
            target.chmod(file_mode)
        path.chmod(0o755)

    # --- containers ----------------------------------------------------------------------------------------
    def container(self, name: str) -> dict[str, Any]:
        spec = self.pod["spec"]
        for candidate in [*spec.get("initContainers", []), *spec.get("containers", [])]:
            if candidate["name"] == name:
                return dict(candidate)
        raise KeyError(name)

    def _field(self, path: str) -> str:
        metadata = self.pod["metadata"]
        simple = {
            "metadata.name": metadata.get("name", ""),
            "metadata.namespace": metadata.get("namespace", "default"),
            "metadata.uid": metadata.get("uid", ""),
            "spec.nodeName": "node-0",
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", "default"),
            "status.podIP": "",
            "status.hostIP": "",
        }
        if path in simple:
            return str(simple[path])
        found = _FIELD_LABEL.match(path)
        if found:
            return str((metadata.get(found.group(1)) or {}).get(found.group(2), ""))
        raise PodSpecError(f"fieldRef {path} is not modelled")

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet resolves it (image env comes on top in podman)."""
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            name = entry["name"]
            if "valueFrom" not in entry:
                env[name] = expand(str(entry.get("value", "")), env)
                continue
            source = entry["valueFrom"]
            if "fieldRef" in source:
                env[name] = self._field(source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = self.objects.secrets.get(ref["name"], {}).get(ref["key"])
                if value is None and not ref.get("optional"):
                    raise PodSpecError(f"secret {ref['name']}/{ref['key']} not found")
                if value is not None:
                    env[name] = value.decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                text = self.objects.config_maps.get(ref["name"], {}).get(ref["key"])
                if text is None and not ref.get("optional"):
                    raise PodSpecError(f"configMap {ref['name']}/{ref['key']} not found")
                if text is not None:
                    env[name] = text
            else:
                raise PodSpecError(f"env {name}: {sorted(source)} is not modelled")
        return env

    def security(self, container: dict[str, Any], image_user: str = "") -> tuple[list[str], int]:
        """podman flags for the pod's and the container's securityContext, and the UID it runs as."""
        pod_context = self.pod["spec"].get("securityContext") or {}
        context = {**pod_context, **(container.get("securityContext") or {})}
        flags: list[str] = []
        user = context.get("runAsUser")
        group = context.get("runAsGroup")
        if user is None:
            user_text = image_user.split(":", 1)[0] if image_user else "0"
            uid = int(user_text) if user_text.isdigit() else -1
        else:
            uid = int(user)
        if user is not None or group is not None:
            spec = str(uid if user is not None else image_user.split(":", 1)[0] or 0)
            if group is not None:
                spec += f":{group}"
            flags += ["--user", spec]
        if context.get("runAsNonRoot") and uid == 0:
            raise PodSpecError("container has runAsNonRoot and image will run as root")
        if context.get("runAsNonRoot") and uid < 0:
            raise PodSpecError("container has runAsNonRoot and image has non-numeric user, cannot verify")
        for extra in [*(pod_context.get("supplementalGroups") or []), pod_context.get("fsGroup")]:
            if extra is not None:
                flags += ["--group-add", str(extra)]
        if context.get("readOnlyRootFilesystem"):
            flags += ["--read-only", "--read-only-tmpfs=false"]
        if context.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        capabilities = context.get("capabilities") or {}
        for name in capabilities.get("drop", []):
            flags += ["--cap-drop", name]
        for name in capabilities.get("add", []):
            flags += ["--cap-add", name]
        if context.get("privileged"):
            flags += ["--privileged"]
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            flags += ["--security-opt", "seccomp=unconfined"]
        return flags, uid

    def run_as_uid(self, name: str, image: str | None = None) -> int:
        """The UID container `name` runs as: its securityContext, else the image's user (-1: not numeric)."""
        container = self.container(name)
        image_user = podman("image", "inspect", "--format", "{{.Config.User}}", image or container["image"])
        return self.security(container, image_user.stdout.strip())[1]

    def mounts(self, container: dict[str, Any]) -> list[str]:
        flags: list[str] = []
        for mount in container.get("volumeMounts", []):
            source = self._volumes[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True, mode=EMPTY_DIR_MODE)
            options = "ro" if mount.get("readOnly") else "rw"
            flags += ["-v", f"{source}:{mount['mountPath']}:{options}"]
        return flags

    def run_args(
        self,
        name: str,
        image: str | None = None,
        argv: Sequence[str] | None = None,
        detach: bool = False,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """The `podman run` arguments (after `podman <global flags> run`) for container `name`.

        argv replaces command + args (for a command the emissary or the launcher would have run); image
        replaces the container's image.
        """
        container = self.container(name)
        image = image or container["image"]
        image_user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
        env = self.env(container)
        security, _uid = self.security(container, image_user)
        flags = ["--network=none", *ULIMITS, "--hostname", self.pod["metadata"].get("name", "pod")[:63]]
        flags += ["--detach"] if detach else []
        flags += security + self.mounts(container)
        for key, value in env.items():
            flags += ["--env", f"{key}={value}"]
        if container.get("workingDir"):
            flags += ["--workdir", container["workingDir"]]
        if argv is not None:
            command, args = list(argv[:1]), list(argv[1:])
        else:
            command = [expand(part, env) for part in container.get("command", [])]
            args = [expand(part, env) for part in container.get("args", [])]
        if command:
            flags += ["--entrypoint", command[0]]
            args = [*command[1:], *args]
        return [*flags, *extra, image, *args]

    def run(
        self,
        name: str,
        image: str | None = None,
        argv: Sequence[str] | None = None,
        copy_out: Mapping[str, Path] | None = None,
        timeout: float = 900,
    ) -> ContainerResult:
        """Run container `name` to completion: created, started attached, exit code read, removed.

        copy_out maps container paths to host paths filled (podman cp) after it exits; a path the
        container does not have is left out.
        """
        args = self.run_args(name, image, argv)
        started = time.monotonic()
        container_id = podman("create", *args).stdout.strip().splitlines()[-1]
        try:
            attached = subprocess.run(
                ["podman", *GLOBAL_FLAGS, "start", "--attach", container_id],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
            seconds = time.monotonic() - started
            code = podman("inspect", "--format", "{{.State.ExitCode}}", container_id).stdout.strip()
            for source, dest in (copy_out or {}).items():
                dest.parent.mkdir(parents=True, exist_ok=True)
                podman("cp", f"{container_id}:{source}", str(dest), check=False)
            return ContainerResult(name, int(code), attached.stdout, attached.stderr, seconds, container_id)
        finally:
            if not self.keep_containers:
                remove_container(container_id)
