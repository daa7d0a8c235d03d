"""`make demo`: two real KFP components (v1 and v2) through the whole local chain, and what W&B recorded.

For each fixture pod (compiled by the real KFP SDK): the webhook's `preview` mutates it, the init
container's `shim install` lays the shim out in a temp dir (the emptyDir), the main container runs with
the env the webhook gave it (fieldRefs from the pod; no API key Secret here, so W&B records offline),
and the offline run file is read back and printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.e2e import podrunner
from tests.fixtures import pods as fixture_pods
from tests.shim.support import payload_dir, shim_lines
from tests.shim.wandb_reader import RunFile, read_run
from tests.support.venvs import ensure_venv
from webhook.admission import config as cfg
from webhook.shim import contract

REPO = Path(__file__).resolve().parents[1]
#: (fixture, the CPython its image names: python:3.7 for KFP v1, python:3.11 for KFP v2 2.17, packages).
COMPONENTS = (("v1-divide", "3.7", ["six==1.16.0"]), ("v2-evaluate", "3.11", ["kfp==2.17.3"]))
#: The local machine has no outside network: nothing may try to reach W&B or report errors.
LOCAL_ENV = {"WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}


def preview(name: str) -> dict[str, Any]:
    """The pod as the webhook would admit it, from the real CLI."""
    pod_file = REPO / "tests" / "fixtures" / "pods" / f"{name}.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook.cli",
            "preview",
            str(pod_file),
            "--namespace-label",
            "wandb.ai/inject=enabled",
            "--namespace-annotation",
            "wandb.ai/kubeflow-url=https://kubeflow.example.com/pipeline",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    print("  " + result.stderr.strip().replace("\n", "\n  "))
    pod: dict[str, Any] = yaml.safe_load(result.stdout)
    pod["metadata"]["uid"] = "00000000-0000-4000-8000-000000000001"  # the apiserver would assign one
    return pod


def table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"  {key.ljust(width)}  {json.dumps(value, default=str)[:90]}" for key, value in rows)


def describe(run: RunFile) -> str:
    rows: list[tuple[str, Any]] = [
        ("run id", run.run_id),
        ("project", run.project),
        ("group (KFP run)", run.group),
        ("job type (step)", run.job_type),
        ("exit code", run.exit_code),
        ("wandb / python", f"{run.wandb_version} / {run.python_version}"),
    ]
    rows += [(f"config.{key}", value) for key, value in run.user_config().items() if key != "kubeflow"]
    rows += [(f"summary.{key}", value) for key, value in run.summary.items() if not key.startswith("_")]
    rows += [(f"artifact {artifact['name']}", artifact.get("type")) for artifact in run.artifacts]
    return table(rows)


def run_component(name: str, minor: str, requirements: list[str], work: Path) -> RunFile:
    print(f"\n== {name} ({fixture_pods.index_entry(name)['kind']}, Python {minor} without wandb)")
    pod = preview(name)
    installed = podrunner.run_init_container(pod, work, payload_dir())
    if installed.returncode != 0:
        raise SystemExit(f"shim install failed:\n{installed.stderr}")
    print(f"  init container: {installed.stdout.strip().splitlines()[-1] if installed.stdout.strip() else 'ok'}")
    podrunner.prepare_inputs(fixture_pods.index_entry(name), work)
    python = ensure_venv(f"demo-{name.split('-')[0]}", minor, requirements)
    result = podrunner.run_main_container(pod, work, python, {**LOCAL_ENV, contract.WANDB_DIR: str(work / "wandb")})
    print(f"  component exit code {result.returncode}; stdout: {result.stdout.strip()[-80:]!r}")
    for line in shim_lines(result.stderr):
        print(f"  {line}")
    run_id = pod["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION]
    found = sorted((work / "wandb").glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    if len(found) != 1:
        raise SystemExit(f"no offline run for {run_id}:\n{result.stderr}")
    return read_run(found[0])


def main() -> int:
    for name, minor, requirements in COMPONENTS:
        with tempfile.TemporaryDirectory(prefix=f"demo-{name}-") as work:
            print(describe(run_component(name, minor, requirements, Path(work))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
