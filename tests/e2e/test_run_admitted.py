"""The test that proves the product: a pipeline step compiled by the real KFP SDK is admitted by the real
apiserver through the webhook, then run from the stored Pod (tests/e2e/podrunner.py), and the W&B run it
recorded is read back from its offline run file.

The namespace points W&B at a closed port on loopback (nothing leaves this machine), so the shim's
bounded online attempt fails and the run is kept offline, where the pod's own run id finds it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e import podrunner
from tests.e2e.deployment import admin, create, fixture_pod, new_namespace
from tests.fixtures import pods as fixture_pods
from tests.shim.support import payload_dir, shim_lines
from tests.shim.wandb_reader import RunFile, read_run
from tests.support.servers import find_free_port
from tests.support.venvs import ensure_venv
from webhook.admission import config as cfg
from webhook.shim import contract

KUBEFLOW_URL = "https://kubeflow.example.test/pipeline"
API_KEY = "0123456789abcdef" * 2 + "01234567"  # a well-formed key nobody can use
#: What this test machine's policy adds: no outside network, so no error reports to the internet.
MACHINE_ENV = {"WANDB_ERROR_REPORTING": "false"}


@pytest.fixture(scope="module")
def team_namespace(deployed: Any, apiserver: Any) -> str:
    """An opted-in namespace whose W&B server is a closed local port, with its API key Secret."""
    namespace = new_namespace(
        apiserver,
        enabled=True,
        annotations={
            "wandb.ai/base-url": f"http://127.0.0.1:{find_free_port()}",
            "wandb.ai/init-timeout": "10",
            "wandb.ai/kubeflow-url": KUBEFLOW_URL,
            "wandb.ai/tags": "e2e,kfp",
        },
    )
    with admin(apiserver) as api_client:
        k8s.CoreV1Api(api_client).create_namespaced_secret(
            namespace,
            k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="wandb-api-key"), string_data={"api-key": API_KEY}),
        )
    return namespace


def python_for(kind: str) -> Path:
    """Component images without wandb, so the shim records with its vendored copy for that Python. The
    Python is the one the fixture's image names (v1: python:3.7, v2: python:3.11): the webhook copies only
    that minor's vendored wandb into the pod."""
    try:
        if kind == contract.KIND_V2_EXECUTOR:
            return ensure_venv("e2e-kfp2", "3.11", ["kfp==2.17.3"])
        return ensure_venv("e2e-v1", "3.7", ["six==1.16.0"])
    except LookupError as error:
        pytest.skip(str(error))


def offline_run(run_id: str) -> RunFile:
    """The offline run the pod recorded, found by the run id the webhook gave the pod."""
    found = sorted(Path(contract.DEFAULT_RUN_DIR).glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(found) == 1, f"expected one offline run for {run_id}, found {found}"
    return read_run(found[0])


def admit_and_run(apiserver: Any, namespace: str, name: str, work: Path) -> tuple[dict[str, Any], podrunner.LocalRun]:
    stored = create(apiserver, fixture_pod(name, namespace))
    assert stored["metadata"]["annotations"][cfg.INJECTED_ANNOTATION] == fixture_pods.index_entry(name)["kind"]
    installed = podrunner.run_init_container(stored, work, payload_dir())
    assert installed.returncode == 0, installed.stderr
    podrunner.prepare_inputs(fixture_pods.index_entry(name), work)
    with admin(apiserver) as api_client:
        result = podrunner.run_main_container(
            stored,
            work,
            python_for(fixture_pods.index_entry(name)["kind"]),
            MACHINE_ENV,
            podrunner.cluster_secrets(api_client, namespace),
        )
    return stored, result


def assert_narrowed_to(stored: dict[str, Any], minor: str) -> None:
    """The init container was told to copy that minor's vendored wandb only (the image is python:<minor>)."""
    init = next(c for c in stored["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME)
    assert init["command"] == [*contract.INSTALL_COMMAND, contract.INSTALL_PYTHON_FLAG, minor]


@pytest.fixture
def forget_runs() -> Any:
    """Remove the offline runs a test made under the pod default directory."""
    run_ids: list[str] = []
    yield run_ids
    for run_id in run_ids:
        for run_dir in Path(contract.DEFAULT_RUN_DIR).glob(f"wandb/offline-run-*-{run_id}"):
            shutil.rmtree(run_dir, ignore_errors=True)


def assert_identity(run: RunFile, stored: dict[str, Any], namespace: str, entry: dict[str, Any]) -> None:
    env = {var["name"]: var.get("value") for var in fixture_pods.container(stored)["env"]}
    assert run.run_id == stored["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION]
    assert run.group == entry["run_id"] == stored["metadata"]["labels"]["pipeline/runid"]
    assert run.job_type == env[contract.WANDB_JOB_TYPE] == entry["component"]
    assert run.project == env[contract.WANDB_PROJECT]
    assert set(run.tags) >= {"e2e", "kfp"}
    link = f"{KUBEFLOW_URL}/#/runs/details/{entry['run_id']}"
    assert run.config["LINK_TO_KUBEFLOW_RUN"] == link
    assert run.exit_code == 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["v1-divide", "v1-count-lines"])
def test_v1_step_admitted_then_run_records_inputs_outputs_and_files(
    deployed, apiserver, team_namespace, tmp_path, forget_runs, name
):
    entry = fixture_pods.index_entry(name)
    stored, result = admit_and_run(apiserver, team_namespace, name, tmp_path)
    forget_runs.append(stored["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION])
    assert result.returncode == 0, result.stderr
    for output, spec in (entry.get("output_files") or {}).items():
        if "content" in spec:
            assert Path(podrunner.relocate(spec["path"], tmp_path)).read_text() == spec["content"], output
    lines = shim_lines(result.stderr)
    assert len(lines) == 1 and "wandb sync" in lines[0], result.stderr

    run = offline_run(forget_runs[-1])
    assert_identity(run, stored, team_namespace, entry)
    assert run.project == team_namespace, "v1 pods do not reveal the pipeline name: the namespace it is"
    assert_narrowed_to(stored, "3.7")
    assert run.python_version.startswith("3.7") and run.wandb_version == "0.18.7"
    assert run.artifact(entry["function"])["type"] == "kubeflow_component_file"
    function = entry["function"]
    for key, value in entry["inputs"].items():
        if not key.endswith(("_path", "_file")):
            assert run.config[key] == value
    for output, value in entry["outputs"].items():
        assert run.summary[f"{function}.{output}"] == value
    for input_name in entry.get("input_files") or {}:
        assert run.config[input_name]["artifact"] == "referenced"
    if name == "v1-count-lines":  # named after the Argo artifact the webhook read from the template
        assert run.artifact("count-lines-summary")["entries"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["v2-divide", "v2-evaluate", "v2-train"])
def test_v2_step_admitted_then_run_records_parameters_artifacts_and_metrics(
    deployed, apiserver, team_namespace, tmp_path, forget_runs, name
):
    entry = fixture_pods.index_entry(name)
    stored, result = admit_and_run(apiserver, team_namespace, name, tmp_path)
    forget_runs.append(stored["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION])
    assert result.returncode == 0, result.stderr
    lines = shim_lines(result.stderr)
    assert len(lines) == 1 and "wandb sync" in lines[0], result.stderr

    run = offline_run(forget_runs[-1])
    assert_identity(run, stored, team_namespace, entry)
    assert run.project == entry["pipeline"], "v2 pods name their pipeline: it is the project"
    assert run.python_version.startswith("3.11")
    assert_narrowed_to(stored, "3.11")
    assert run.artifact(entry["function"])["type"] == "kubeflow_component_file"  # spec passed by value
    written = podrunner.executor_output(tmp_path)
    for key, value in (entry.get("inputs") or {}).items():
        assert run.config[key] == value
    for key, value in (written.get("parameterValues") or {}).items():
        assert run.summary[f"{entry['function']}.{key}"] == value
    schemas = {
        output: spec["artifacts"][0]["type"]["schemaTitle"]
        for output, spec in fixture_pods.executor_input(stored)["outputs"].get("artifacts", {}).items()
    }
    for output in written.get("artifacts") or {}:
        if schemas[output] == "system.Metrics":  # metadata only: each metric is a summary key
            assert run.summary["accuracy"] == 0.75
        elif schemas[output] == "system.ClassificationMetrics":  # W&B charts
            assert run.summary[f"{output}.confusion_matrix_table"]["nrows"] == 4
        else:
            assert run.artifact(f"{entry['component']}.{output}")["type"] == schemas[output]  # <task>.<output>
