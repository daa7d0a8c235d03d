"""KFP v1 pipelines for the node tier: compiled by the real kfp 1.8.22, submitted as KFP's API server would.

`compile_v1(out_dir)` runs tests/node/pipelines/kfp_v1.py in the cached kfp==1.8.22 venv (the same venv
`make fixtures` uses) and returns each compiled Argo Workflow. The compiled YAML runs on this cluster
unchanged: its images (`python:3.X`) are the component images the tier tags under those names, its
ServiceAccount (`pipeline-runner`) and artifact Secret come from `Argo.prepare_namespace`, and its
artifacts go to the controller's default repository (MinIO, KFP's key format).

There is no KFP API server here, so `as_kfp_run` makes the changes KFP's API server makes to a compiled
v1 Workflow when it creates a run (backend/src/apiserver/template/argo.go `RunWorkflow`, KFP 1.8-2.x):
nothing else is rewritten.
"""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.support.venvs import ensure_venv

KFP_V1_VERSION = "1.8.22"
#: The fixtures' kfp 1.8 venv (tests.fixtures.generate.KFP_V1_VENV): one cached venv for both.
KFP_V1_VENV = ("kfp1", "3.10", ["kfp==" + KFP_V1_VERSION])
PIPELINES_SCRIPT = Path(__file__).parent / "pipelines" / "kfp_v1.py"
#: What KFP's API server puts on a run's Workflow and pods.
RUN_ID_LABEL = "pipeline/runid"
RUN_NAME_ANNOTATION = "pipelines.kubeflow.org/run_name"
CACHE_ENABLED_LABEL = "pipelines.kubeflow.org/cache_enabled"
ISTIO_ANNOTATION = "sidecar.istio.io/inject"


def compile_v1(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Compile every pipeline of tests/node/pipelines/kfp_v1.py; {pipeline name: Workflow}."""
    python = ensure_venv(*KFP_V1_VENV)
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(python), str(PIPELINES_SCRIPT), str(out_dir)], check=True, capture_output=True, text=True)
    return {path.stem: yaml.safe_load(path.read_text()) for path in sorted(out_dir.glob("*.yaml"))}


def as_kfp_run(workflow: dict[str, Any], run_name: str, run_id: str | None = None) -> dict[str, Any]:
    """The Workflow KFP's API server submits for a run of this compiled pipeline (a copy).

    In the order `RunWorkflow` applies them: the cache label on every template (the cache webhook's
    filter; no cache webhook runs here), the Istio opt-out annotation on every template that lacks it,
    the run id label on the Workflow, the run name annotation, `{{workflow.uid}}` replaced by the run id,
    and the run id label in `spec.podMetadata`, which Argo copies onto every pod (how a pod names its KFP
    run). The parameters keep the pipeline's defaults and the ServiceAccount is the compiled one.
    """
    run_id = run_id or str(uuid.uuid4())
    run = copy.deepcopy(workflow)
    for template in run["spec"]["templates"]:
        metadata = template.setdefault("metadata", {})
        metadata.setdefault("labels", {})[CACHE_ENABLED_LABEL] = "true"
        metadata.setdefault("annotations", {}).setdefault(ISTIO_ANNOTATION, "false")
    run["metadata"].setdefault("labels", {})[RUN_ID_LABEL] = run_id
    run["metadata"].setdefault("annotations", {})[RUN_NAME_ANNOTATION] = run_name
    run = json.loads(json.dumps(run).replace("{{workflow.uid}}", run_id))
    run["spec"].setdefault("podMetadata", {}).setdefault("labels", {})[RUN_ID_LABEL] = run_id
    return run


def run_id_of(workflow: dict[str, Any]) -> str:
    """The KFP run id `as_kfp_run` gave a Workflow."""
    return str(workflow["metadata"]["labels"][RUN_ID_LABEL])
