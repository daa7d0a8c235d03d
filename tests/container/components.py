"""A fixture component's pod, mutated by `wandb-kfp-webhook preview`, run in real containers.

    case = ComponentPod("v2-train", image, config, tmp_path)
    baseline = case.run(inject=False)    # the pod as KFP made it: main only
    shimmed = case.run(inject=True)      # preview's pod: the init container (webhook image), then main

Both runs use the component image given, with exactly the env, volume mounts, user and working directory
of their pod (tests/container/pods.py plays the kubelet). Argo's emissary and the KFP v2 launcher are not
in these images, so main runs the command they would run: the emissary's command (v1), or the component
command with `{{$}}` filled in by the executor input, as the launcher does (v2). The inputs Argo or the
launcher would have put in place (v1 input file, v2 input artifact) are written into the pod's volumes.

What the component's user sees is compared between the two: exit code, stdout, stderr without the
`wandb-kfp-shim:` lines, and every file in the container's /tmp and in the pod's volumes (outputs,
artifacts), after masking what differs between any two runs (mktemp names, .pyc timestamps). The W&B run
directory (/tmp/wandb-kfp, the shim's default) is taken out of the files and read back separately.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.container.pods import ContainerResult, PodSandbox
from tests.fixtures.pods import index_entry, load_pod, main_command, resolved_component_command
from tests.shim.conftest import normalise, without_shim_lines
from tests.shim.support import shim_lines

CLI = Path(sys.executable).parent / "wandb-kfp-webhook"
SHIM_INIT_CONTAINER = "wandb-shim-install"
SHIM_VOLUME = "wandb-shim"
#: The shim's offline run directory when WANDB_DIR is not set (webhook.shim.contract.DEFAULT_RUN_DIR).
RUN_DIR = "/tmp/wandb-kfp"
#: Scratch volumes KFP v2 mounts as HOME-like caches (/.local, /.cache, /.config): not component outputs.
SCRATCH_HOME_VOLUMES = ("dot-local-scratch", "dot-cache-scratch", "dot-config-scratch")
KFP_PIN = re.compile(r"'kfp==[^']+'")
_MKTEMP_NAME = re.compile(r"^tmp\.[A-Za-z0-9]+$")
_MKTEMP_BYTES = re.compile(rb"/tmp/tmp\.[A-Za-z0-9]+")


def preview(pod: dict[str, Any], config: Path, work: Path) -> dict[str, Any]:
    """The pod as the webhook would admit it: `wandb-kfp-webhook preview POD --config CONFIG`."""
    work.mkdir(parents=True, exist_ok=True)
    source = work / "pod.yaml"
    source.write_text(yaml.safe_dump(pod, sort_keys=False))
    result = subprocess.run(
        [str(CLI), "preview", str(source), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"preview exited {result.returncode}: {result.stderr}")
    mutated: dict[str, Any] = yaml.safe_load(result.stdout)
    (work / "pod-mutated.yaml").write_text(result.stdout)
    return mutated


def _masked_name(name: str) -> str:
    return "tmp.X" if _MKTEMP_NAME.match(name) else name


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under root by relative path, with mktemp names masked in paths and contents (compiled
    code records the program's path) and .pyc source timestamps zeroed."""
    files: dict[str, bytes] = {}
    if not root.is_dir():
        return files
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(str(relative) == prefix or str(relative).startswith(prefix + "/") for prefix in skip):
            continue
        if path.is_symlink():
            files["/".join(_masked_name(part) for part in relative.parts)] = b"-> " + str(path.readlink()).encode()
        elif path.is_file():
            data = _MKTEMP_BYTES.sub(b"/tmp/tmp.X", path.read_bytes())
            if path.suffix == ".pyc" and len(data) >= 16:
                data = data[:8] + bytes(8) + data[16:]  # source mtime and size: differ between any two runs
            files["/".join(_masked_name(part) for part in relative.parts)] = data
    return files


@dataclass
class PodRun:
    """One run of the pod: the init container (when injected), main, and what main left behind."""

    inject: bool
    main: ContainerResult
    init: ContainerResult | None
    files: dict[str, bytes]
    run_dir: Path
    sandbox: PodSandbox
    pod: dict[str, Any]

    @property
    def shim_lines(self) -> list[str]:
        return shim_lines(self.main.stderr)

    def outcome(self) -> tuple[int, str, str, dict[str, bytes]]:
        """Everything the component's user sees, minus the shim's own stderr lines."""
        return (
            self.main.returncode,
            normalise(self.main.stdout),
            normalise(without_shim_lines(self.main.stderr)),
            self.files,
        )

    def env(self) -> dict[str, str]:
        return self.sandbox.env(self.sandbox.container("main"))


@dataclass
class ComponentPod:
    """A fixture component pod with its main container's image replaced by a component image."""

    fixture: str
    image: str
    config: Path
    base: Path
    kfp: str | None = None
    run_as: tuple[int, int] | None = None
    entry: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.entry = index_entry(self.fixture)

    @property
    def v2(self) -> bool:
        return bool(self.entry["kind"].startswith("kfp-v2"))

    def pod(self) -> dict[str, Any]:
        """The fixture pod as KFP would make it for this image (kfp pin of the SDK that supports it)."""
        pod = load_pod(self.fixture)
        for container in pod["spec"]["containers"]:
            if container["name"] == "main":
                container["image"] = self.image
                container["imagePullPolicy"] = "Never"
                if self.kfp:
                    container["args"] = [KFP_PIN.sub(f"'kfp=={self.kfp}'", arg) for arg in container.get("args", [])]
        if self.run_as is not None:
            context = pod["spec"].setdefault("securityContext", {})
            context["runAsUser"], context["runAsGroup"] = self.run_as
        return pod

    def _argv(self, pod: dict[str, Any]) -> list[str]:
        return resolved_component_command(pod) if self.v2 else main_command(pod)

    def _prepare_inputs(self, sandbox: PodSandbox) -> None:
        """What Argo's init (v1 input files) or the launcher (v2 input artifacts) puts in place."""
        for name, holder in (self.entry.get("input_files") or {}).items():
            target = sandbox.volume_dir("input-artifacts") / name
            target.write_text(holder["content"])
            target.chmod(0o644)
        for holder in (self.entry.get("input_artifacts") or {}).values():
            relative = holder["local_path"].removeprefix("/minio/")
            target = sandbox.volume_dir("minio-scratch") / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            for directory in [target.parent, *target.parent.parents]:
                if directory == sandbox.volume_dir("minio-scratch"):
                    break
                directory.chmod(0o777)
            target.write_text(holder["content"])
            target.chmod(0o644)

    def run(self, inject: bool, label: str = "") -> PodRun:
        """Run the pod once (fresh volumes): without injection, or as preview admitted it."""
        work = self.base / (label or ("injected" if inject else "baseline"))
        shutil.rmtree(work, ignore_errors=True)
        pod = self.pod()
        if inject:
            pod = preview(pod, self.config, work)
        sandbox = PodSandbox(pod, work / "pod")
        self._prepare_inputs(sandbox)
        init = None
        if inject:
            init = sandbox.run(SHIM_INIT_CONTAINER)
            if init.returncode != 0:
                raise AssertionError(f"init container exited {init.returncode}: {init.stderr}")
        tmp = work / "container-tmp"
        main = sandbox.run("main", argv=self._argv(pod), copy_out={"/tmp": tmp})
        files = {f"tmp/{name}": data for name, data in snapshot(tmp, skip=(RUN_DIR.removeprefix("/tmp/"),)).items()}
        for volume in pod["spec"].get("volumes", []):
            if volume["name"] in (SHIM_VOLUME, *SCRATCH_HOME_VOLUMES):
                continue
            for name, data in snapshot(sandbox.volume_dir(volume["name"])).items():
                files[f"volume:{volume['name']}/{name}"] = data
        return PodRun(inject, main, init, files, tmp / RUN_DIR.removeprefix("/tmp/"), sandbox, pod)
