"""Run real KFP components (from the committed pod fixtures) with and without the installed shim.

A component's outcome is compared between a baseline run (no shim on PYTHONPATH) and a shim run in the
same work directory, so paths in outputs and logs are equal; the W&B run goes to a separate WANDB_DIR
and is read back from its .wandb file. Paths the pod would use (/tmp/inputs, /tmp/outputs, minio://,
/tmp/kfp_outputs) are rewritten into the work directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pytest

from tests.fixtures.pods import index_entry, load_pod, main_command, resolved_component_command
from tests.shim.support import install_shim, shim_lines
from tests.shim.wandb_reader import RunFile, read_only_run
from tests.support.venvs import ensure_venv
from webhook.admission.podfacts import read_facts
from webhook.shim import contract

#: The KFP v2 venv the tests record with: the image's own wandb (0.31.0) next to kfp 2.17.3.
KFP2_REQUIREMENTS = ["kfp==2.17.3", "wandb==0.31.0"]
#: A KFP v1 component image needs no kfp at run time: Python, wandb, and the fixtures' packages_to_install.
V1_RUNTIME_REQUIREMENTS = ["wandb==0.31.0", "six==1.16.0"]
KUBEFLOW_URL = "https://kubeflow.example.test/pipeline"

_KFP_EXECUTOR_TIMESTAMP = re.compile(r"\[KFP Executor \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
_MKTEMP_PATH = re.compile(r"/tmp/tmp\.[A-Za-z0-9]+")


def normalise(text: str) -> str:
    """Mask what differs between any two runs of a component, shim or not: executor log times, mktemp."""
    return _MKTEMP_PATH.sub("/tmp/tmp.X", _KFP_EXECUTOR_TIMESTAMP.sub("[KFP Executor <time> ", text))


def without_shim_lines(stderr: str) -> str:
    """stderr with the shim's own `wandb-kfp-shim:` lines removed."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("wandb-kfp-shim:"))


@dataclass
class ComponentRun:
    """What one component process did: exit code, output streams, files it left, where W&B wrote."""

    returncode: int
    stdout: str
    stderr: str
    files: dict[str, bytes]
    wandb_dir: Path
    shim: bool

    @property
    def shim_lines(self) -> list[str]:
        return shim_lines(self.stderr)

    def outcome(self) -> tuple[int, str, str, dict[str, bytes]]:
        """Everything the component's user sees, minus the shim's own lines."""
        return (self.returncode, normalise(self.stdout), normalise(without_shim_lines(self.stderr)), self.files)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root, by relative path."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


@dataclass
class ComponentCase:
    """A fixture pod's component, runnable with or without the shim."""

    name: str
    python: Path
    shim_dir: Path
    base: Path
    entry: dict[str, Any] = field(default_factory=dict)
    rewrite: Optional[Callable[[list[str]], list[str]]] = None

    @property
    def work(self) -> Path:
        return self.base / "work"

    def replacements(self) -> list[tuple[str, str]]:
        """Pod paths -> places in the work directory (argv and WANDB_KFP_ARGO_ARTIFACTS alike)."""
        work = str(self.work)
        return [
            ("minio://", work + "/minio/"),
            ("/tmp/kfp_outputs", work + "/kfp_outputs"),
            ("/tmp/kfp/outputs", work + "/kfp/outputs"),
            ("/tmp/inputs", work + "/inputs"),
            ("/tmp/outputs", work + "/outputs"),
        ]

    def _local(self, text: str) -> str:
        for old, new in self.replacements():
            text = text.replace(old, new)
        return text

    def argv(self) -> list[str]:
        pod = load_pod(self.name)
        if self.entry["kind"] == contract.KIND_V1_COMPONENT:
            argv = main_command(pod)
        else:
            argv = resolved_component_command(pod)
        rewritten = [self._local(arg) for arg in argv]
        return self.rewrite(rewritten) if self.rewrite else rewritten

    def pod_env(self) -> dict[str, str]:
        """What the webhook would inject from this pod (identity, spec, KFP UI URL)."""
        pod = load_pod(self.name)
        env = {
            contract.KFP_RUN_ID: self.entry.get("run_id", ""),
            contract.WORKFLOW_NAME: self.entry.get("workflow", ""),
            contract.POD_NAME: self.entry.get("pod_name", ""),
            contract.POD_NAMESPACE: self.entry.get("namespace", ""),
            contract.PIPELINE_NAME: self.entry.get("pipeline", ""),
            contract.WANDB_KUBEFLOW_URL: KUBEFLOW_URL,
        }
        spec = pod["metadata"].get("annotations", {}).get("pipelines.kubeflow.org/component_spec")
        spec = spec or read_facts(pod).v2_component_spec  # v2: the launcher's --component_spec, by value
        if spec:
            env[contract.COMPONENT_SPEC] = spec
        argo_artifacts = read_facts(pod).argo_artifacts  # paths rewritten in run(), as in argv
        if argo_artifacts:
            env[contract.ARGO_ARTIFACTS] = argo_artifacts
        return env

    def _prepare_inputs(self) -> None:
        for holder in (self.entry.get("input_files") or {}).values():
            path = Path(holder["path"].replace("/tmp/inputs", str(self.work / "inputs")))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(holder["content"])
        for holder in (self.entry.get("input_artifacts") or {}).values():
            path = Path(holder["uri"].replace("minio://", str(self.work) + "/minio/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(holder["content"])

    def compared(self) -> tuple[ComponentRun, ComponentRun]:
        """Run without, then with the shim: the component succeeds and its user sees the same outcome."""
        baseline = self.run(shim=False)
        recorded = self.run(shim=True)
        assert baseline.returncode == 0, baseline.stderr
        assert recorded.outcome() == baseline.outcome()
        return baseline, recorded

    def compared_failure(self, exception: str = "ZeroDivisionError") -> tuple[ComponentRun, RunFile]:
        """Run without, then with the shim, a component that raises: the same failure either way, and a run
        that records it (exit code 1, the exception's type)."""
        baseline = self.run(shim=False)
        recorded = self.run(shim=True)
        assert baseline.returncode == 1 and exception in baseline.stderr
        assert recorded.outcome() == baseline.outcome()
        run = read_only_run(recorded.wandb_dir)
        assert run.exit_code == 1 and run.summary["exception_type"] == exception
        return recorded, run

    def identified_run(self, recorded: ComponentRun) -> RunFile:
        """The recorded offline run, checked to be this step of this KFP run: exit 0, job type, group, link."""
        run = read_only_run(recorded.wandb_dir)
        assert run.exit_code == 0
        assert run.job_type == self.entry["function"]
        assert run.group == self.entry["run_id"]
        link = KUBEFLOW_URL + "/#/runs/details/" + self.entry["run_id"]
        assert run.config["LINK_TO_KUBEFLOW_RUN"] == link
        assert link in run.notes
        return run

    def run(self, shim: bool, extra_env: Optional[Mapping[str, str]] = None, label: str = "") -> ComponentRun:
        """Run the component once in a clean work dir; `shim` puts the installed bootstrap on PYTHONPATH."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self._prepare_inputs()
        wandb_dir = self.base / ("wandb-" + (label or ("shim" if shim else "baseline")))
        wandb_dir.mkdir(parents=True, exist_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("WANDB_", "PYTHON", "_KFP", "KFP_")) and key != "NETRC"
        }
        env["PATH"] = str(self.python.parent) + os.pathsep + env.get("PATH", "")
        env["HOME"] = str(self.base / "home")
        env["PIP_NO_INDEX"] = "1"  # the fixtures' pip steps must be satisfied from the venv, offline
        env.update(self.pod_env())
        if contract.ARGO_ARTIFACTS in env:
            env[contract.ARGO_ARTIFACTS] = self._local(env[contract.ARGO_ARTIFACTS])
        env[contract.WANDB_DIR] = str(wandb_dir)
        env[contract.WANDB_MODE] = "offline"
        if shim:
            env["PYTHONPATH"] = contract.bootstrap_dir(str(self.shim_dir))
        env.update(extra_env or {})
        for key in [key for key, value in env.items() if value is None]:
            del env[key]
        completed = subprocess.run(self.argv(), env=env, cwd=self.work, capture_output=True, text=True, timeout=300)
        return ComponentRun(
            completed.returncode, completed.stdout, completed.stderr, snapshot(self.work), wandb_dir, shim
        )


@pytest.fixture(scope="session")
def shim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim installed as the init container installs it (no vendored wandb: the images bring theirs)."""
    return install_shim(tmp_path_factory.mktemp("installed") / "wandb-shim", with_payload=False)


def _venv_or_skip(name: str, minor: str, requirements: list[str]) -> Path:
    try:
        return ensure_venv(name, minor, requirements)
    except LookupError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def kfp2_python() -> Path:
    """Python 3.11 with kfp 2.17.3 and wandb 0.31.0 (an image that ships its own wandb)."""
    return _venv_or_skip("s2-kfp2-wandb", "3.11", KFP2_REQUIREMENTS)


@pytest.fixture(scope="session")
def v1_python() -> Path:
    """Python 3.11 with wandb 0.31.0: what a KFP v1 component image needs to run the generated program."""
    return _venv_or_skip("s2-v1-runtime", "3.11", V1_RUNTIME_REQUIREMENTS)


@pytest.fixture
def component(tmp_path: Path, shim_dir: Path, request: pytest.FixtureRequest):
    """Factory: component("v2-train") -> ComponentCase for that fixture pod, in this test's tmp dir."""

    def make(name: str, rewrite: Optional[Callable[[list[str]], list[str]]] = None) -> ComponentCase:
        entry = index_entry(name)
        v1 = entry["kind"] == contract.KIND_V1_COMPONENT
        python = request.getfixturevalue("v1_python" if v1 else "kfp2_python")
        return ComponentCase(name, python, shim_dir, tmp_path / name, entry, rewrite)

    return make


def executor_parameter_rewrite(name: str, value: Any) -> Callable[[list[str]], list[str]]:
    """A rewrite that changes one input parameter in a v2 executor_input argument (e.g. divisor=0)."""

    def rewrite(argv: list[str]) -> list[str]:
        position = argv.index("--executor_input") + 1
        executor_input = json.loads(argv[position])
        executor_input["inputs"]["parameterValues"][name] = value
        return [*argv[:position], json.dumps(executor_input), *argv[position + 1 :]]

    return rewrite


def v1_argument_rewrite(option: str, value: str) -> Callable[[list[str]], list[str]]:
    """A rewrite that sets the value after `option` (e.g. `--divisor` 0) in a v1 program's arguments."""

    def rewrite(argv: list[str]) -> list[str]:
        position = argv.index(option)
        return [*argv[: position + 1], value, *argv[position + 2 :]]

    return rewrite
