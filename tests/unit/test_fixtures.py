"""The committed pod fixtures are loadable, match their index, look like what Argo/KFP create, and
(for KFP v1) their main commands really run and produce the outputs the index promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import generate, pods
from tests.support.venvs import ensure_venv, find_python
from webhook.shim import contract

INDEX = pods.load_index()
NAMES = [entry["name"] for entry in INDEX]
BY_NAME = {entry["name"]: entry for entry in INDEX}
PYTHON_KINDS = (contract.KIND_V1_COMPONENT, contract.KIND_V2_EXECUTOR)


def test_index_lists_every_pod_file_once() -> None:
    files = sorted(path.name for path in pods.PODS_DIR.glob("*.yaml") if path.name != "index.yaml")
    assert sorted(entry["file"] for entry in INDEX) == files
    assert len(set(NAMES)) == len(NAMES)


def test_every_kind_is_a_contract_kind_and_all_are_covered() -> None:
    kinds = {entry["kind"] for entry in INDEX}
    assert kinds == set(contract.POD_KINDS)


@pytest.mark.parametrize("name", NAMES)
def test_pod_matches_its_index_entry(name: str) -> None:
    entry = BY_NAME[name]
    pod = pods.load_pod(name)
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    metadata = pod["metadata"]
    assert metadata["name"] == entry["pod_name"]
    assert metadata["namespace"] == entry["namespace"] == "kubeflow-user"
    assert metadata["labels"]["workflows.argoproj.io/workflow"] == entry["workflow"]
    assert metadata["labels"]["workflows.argoproj.io/completed"] == "false"
    assert metadata["annotations"]["workflows.argoproj.io/node-name"].startswith(entry["workflow"] + ".")
    assert metadata["annotations"]["workflows.argoproj.io/node-id"].startswith(entry["workflow"] + "-")
    (owner,) = metadata["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Workflow", entry["workflow"], True)
    assert owner["uid"]
    assert "uid" not in metadata, "the API server assigns the uid after mutating admission"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["serviceAccountName"]
    if entry["run_id"]:
        assert metadata["labels"]["pipeline/runid"] == entry["run_id"]
    else:
        assert not any(key.startswith("pipeline") for key in metadata["labels"])


@pytest.mark.parametrize("name", [n for n in NAMES if BY_NAME[n]["kind"] != contract.KIND_CACHE_HIT])
def test_argo_layout_init_then_wait_then_emissary_main(name: str) -> None:
    pod = pods.load_pod(name)
    spec = pod["spec"]
    assert spec["initContainers"][0]["name"] == "init"
    assert [c["name"] for c in spec["containers"]] == ["wait", "main"]
    main = pods.container(pod)
    assert main["command"][:2] == ["/var/run/argo/argoexec", "emissary"]
    assert pods.main_command(pod) != main["command"] + main.get("args", [])
    volumes = {volume["name"] for volume in spec["volumes"]}
    assert {"var-run-argo", "tmp-dir-argo"} <= volumes
    for init in spec["initContainers"]:
        env = {item["name"]: item.get("value") for item in init["env"]}
        template = json.loads(env["ARGO_TEMPLATE"])
        assert env["ARGO_CONTAINER_NAME"] == init["name"]
        assert template["name"] in pod["metadata"]["name"]
    for ctr in spec["containers"]:
        assert "ARGO_TEMPLATE" not in {item["name"] for item in ctr["env"]}, "Argo 3.6: init containers only"
    assert pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "main"


@pytest.mark.parametrize("name", pods.fixtures_of_kind(contract.KIND_V1_COMPONENT))
def test_v1_component_pod(name: str) -> None:
    entry = BY_NAME[name]
    pod = pods.load_pod(name)
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels["pipelines.kubeflow.org/kfp_sdk_version"] == entry["sdk_version"]
    assert labels["pipelines.kubeflow.org/pipeline-sdk-type"] == "kfp"
    assert labels["pipelines.kubeflow.org/cache_enabled"] == "true"
    assert annotations["sidecar.istio.io/inject"] == "false"
    spec = json.loads(annotations["pipelines.kubeflow.org/component_spec"])
    assert "container" in spec["implementation"]
    arguments = json.loads(annotations["pipelines.kubeflow.org/arguments.parameters"])
    assert "{{" not in json.dumps(arguments), "Argo resolves input placeholders before the pod exists"
    argv = pods.main_command(pod)
    program = next(arg for arg in argv if "_parsed_args = vars(_parser.parse_args())" in arg)
    assert "_outputs = {}(**_parsed_args)".format(entry["function"]) in program
    assert not any("{{" in arg for arg in argv)
    for key, value in arguments.items():
        assert value in argv, key


@pytest.mark.parametrize("name", pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR))
def test_v2_executor_pod(name: str) -> None:
    entry = BY_NAME[name]
    pod = pods.load_pod(name)
    metadata = pod["metadata"]
    assert metadata["labels"]["pipelines.kubeflow.org/v2_component"] == "true"
    assert metadata["annotations"]["pipelines.kubeflow.org/v2_component"] == "true"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init", "kfp-launcher"]
    launcher = pods.launcher_argv(pod)
    assert launcher[-1] == "--"
    assert launcher[launcher.index("--run_id") + 1] == entry["run_id"]
    argv = pods.main_command(pod)
    assert any("python3 -m kfp.dsl.executor_main" in arg for arg in argv)
    assert argv[argv.index("--function_to_execute") + 1] == entry["function"]
    executor_input = pods.executor_input(pod)
    assert executor_input["inputs"].get("parameterValues", {}) == entry["inputs"]
    for artifact_name, artifact in entry["input_artifacts"].items():
        (runtime,) = executor_input["inputs"]["artifacts"][artifact_name]["artifacts"]
        assert runtime["uri"] == artifact["uri"]
    outputs = executor_input["outputs"]
    assert outputs["outputFile"] == entry["output_metadata_file"]
    assert set(outputs.get("parameters", {})) == set(entry["outputs"]) == set(entry["output_parameter_files"])
    for artifact_name, artifact in entry["output_artifacts"].items():
        (runtime,) = outputs["artifacts"][artifact_name]["artifacts"]
        assert runtime["uri"] == artifact["uri"]
        assert runtime["uri"].startswith("minio://mlpipeline/v2/artifacts/")
    resolved = pods.resolved_component_command(pod)
    assert pods.EXECUTOR_INPUT_PLACEHOLDER not in resolved
    assert json.loads(resolved[resolved.index("--executor_input") + 1]) == executor_input


def test_v2_artifact_flows_from_producer_to_consumer() -> None:
    produced = BY_NAME["v2-make-dataset"]["output_artifacts"]["dataset"]
    consumed = BY_NAME["v2-train"]["input_artifacts"]["dataset"]
    assert consumed["uri"] == produced["uri"]
    assert consumed["local_path"] == "/minio/" + produced["uri"][len("minio://") :]


def test_v2_driver_pod_runs_no_user_code() -> None:
    (name,) = pods.fixtures_of_kind(contract.KIND_V2_DRIVER)
    pod = pods.load_pod(name)
    main = pods.container(pod)
    assert "kfp-driver" in main["image"]
    assert pods.main_command(pod)[0] == "driver"
    assert pod["metadata"]["labels"]["pipelines.kubeflow.org/v2_component"] == "true"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"]


def test_cache_hit_pod_is_a_busybox_echo() -> None:
    (name,) = pods.fixtures_of_kind(contract.KIND_CACHE_HIT)
    pod = pods.load_pod(name)
    assert pod["metadata"]["labels"]["pipelines.kubeflow.org/reused_from_cache"] == "true"
    (main,) = pod["spec"]["containers"]
    assert "busybox" in main["image"] and main["command"][0] == "echo"
    assert "initContainers" not in pod["spec"]


def test_plain_argo_pod_has_no_kfp_metadata() -> None:
    (name,) = pods.fixtures_of_kind(contract.KIND_ARGO)
    pod = pods.load_pod(name)
    keys = [*pod["metadata"]["labels"], *pod["metadata"]["annotations"]]
    assert not [key for key in keys if "kubeflow" in key or key.startswith("pipeline")]
    assert pods.main_command(pod) == ["python", "/argo/staging/script"]


def test_a_large_pod_exists_for_benchmarks() -> None:
    large = [entry["name"] for entry in INDEX if entry.get("large")]
    assert large
    size = len(json.dumps(pods.load_pod(large[0]), separators=(",", ":")))
    assert 60_000 <= size <= 100_000


def test_strip_emissary_finds_the_first_separator_after_emissary() -> None:
    wrapped = [
        "/var/run/argo/argoexec",
        "emissary",
        "--loglevel",
        "debug",
        "--gloglevel",
        "0",
        "--",
        "sh",
        "--",
        "x",
    ]
    assert pods.strip_emissary(wrapped) == ["sh", "--", "x"]
    assert pods.strip_emissary(["python", "--", "y"]) == ["python", "--", "y"]


def test_loaded_pods_are_independent_copies() -> None:
    first = pods.load_pod(NAMES[0])
    first["metadata"]["name"] = "changed"
    assert pods.load_pod(NAMES[0])["metadata"]["name"] != "changed"


# --- the v1 programs really run --------------------------------------------------------------------
def _without_pip_prefix(argv: list[str]) -> list[str]:
    """Drop the packages_to_install step (`sh -c "(pip install ...) && $0 $@"`): no network in unit tests."""
    if argv[:2] == ["sh", "-c"] and "pip install" in argv[2]:
        return argv[3:]
    return argv


def _env_with_python3(python: Path, work: Path) -> dict[str, str]:
    """An environment whose `python3` runs `python` (a wrapper script, so a venv's python keeps its venv)."""
    bin_dir = work / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": "{}:{}".format(bin_dir, os.environ.get("PATH", "/usr/bin:/bin")), "HOME": str(work)}


def _run_v1(name: str, python: Path, work: Path) -> dict[str, Any]:
    """Run the fixture's main command with /tmp/ paths moved under `work` and python3 -> `python`."""
    entry = BY_NAME[name]
    relocate = str(work) + "/"
    argv = [
        arg.replace("/tmp/", relocate) if arg.startswith("/tmp/") else arg
        for arg in pods.main_command(pods.load_pod(name))
    ]
    for spec in entry["input_files"].values():
        target = Path(spec["path"].replace("/tmp/", relocate))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec["content"])
    env = _env_with_python3(python, work)
    completed = subprocess.run(_without_pip_prefix(argv), env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    return {
        key: Path(spec["path"].replace("/tmp/", relocate)).read_text() for key, spec in entry["output_files"].items()
    }


PYTHONS = [minor for minor in ("3.7", "3.11") if find_python(minor) is not None]


@pytest.mark.parametrize("minor", PYTHONS)
@pytest.mark.parametrize("name", pods.fixtures_of_kind(contract.KIND_V1_COMPONENT))
def test_v1_main_command_runs_and_writes_the_indexed_outputs(name: str, minor: str, tmp_path: Path) -> None:
    python = find_python(minor)
    assert python is not None
    written = _run_v1(name, python, tmp_path)
    expected = {key: spec["content"] for key, spec in BY_NAME[name]["output_files"].items()}
    assert written == expected
    assert {key: str(value) for key, value in BY_NAME[name]["outputs"].items()} == {
        key: written[key] for key in BY_NAME[name]["outputs"]
    }


# --- regenerating is deterministic (builds the cached kfp 1.8.22 and 2.17.3 venvs on first use) -----------
def test_regenerating_gives_identical_bytes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tests.fixtures.generate", "--out", str(tmp_path)],
        cwd=generate.FIXTURES_DIR.parent.parent,
        check=True,
        capture_output=True,
    )
    for sub in ("pods", "compiled/v1", "compiled/v2"):
        committed = {p.name: p.read_bytes() for p in (generate.FIXTURES_DIR / sub).glob("*.yaml")}
        regenerated = {p.name: p.read_bytes() for p in (tmp_path / sub).glob("*.yaml")}
        assert committed.keys() == regenerated.keys()
        for file_name, text in committed.items():
            assert regenerated[file_name] == text, f"{sub}/{file_name} differs after regenerating"


# --- the v2 components really run through kfp.dsl.executor_main --------------------------------------
@pytest.fixture(scope="module")
def kfp_v2_python() -> Path:
    return ensure_venv(*generate.KFP_V2_VENV)


def _relocated(executor_input: dict[str, Any], work: Path) -> dict[str, Any]:
    """The executor input with every artifact URI and output file moved under `work`: plain paths,
    which kfp's Artifact.path uses as they are (minio:// would map to /minio/)."""
    moved: dict[str, Any] = json.loads(json.dumps(executor_input))
    for side in ("inputs", "outputs"):
        for artifact_list in moved[side].get("artifacts", {}).values():
            for artifact in artifact_list["artifacts"]:
                artifact["uri"] = str(work / "artifacts" / generate.local_path(artifact["uri"]).lstrip("/"))
    for spec in moved["outputs"].get("parameters", {}).values():
        spec["outputFile"] = str(work / spec["outputFile"].lstrip("/"))
    moved["outputs"]["outputFile"] = str(work / moved["outputs"]["outputFile"].lstrip("/"))
    return moved


@pytest.mark.parametrize("name", pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR))
def test_v2_component_runs_and_writes_the_indexed_outputs(name: str, tmp_path: Path, kfp_v2_python: Path) -> None:
    entry = BY_NAME[name]
    pod = pods.load_pod(name)
    moved = _relocated(pods.executor_input(pod), tmp_path)
    for artifact_name, spec in entry["input_artifacts"].items():
        target = Path(moved["inputs"]["artifacts"][artifact_name]["artifacts"][0]["uri"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec["content"])
    argv = [arg.replace(pods.EXECUTOR_INPUT_PLACEHOLDER, json.dumps(moved)) for arg in pods.main_command(pod)]
    env = _env_with_python3(kfp_v2_python, tmp_path)
    completed = subprocess.run(_without_pip_prefix(argv), env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    output = json.loads(Path(moved["outputs"]["outputFile"]).read_text())
    assert output.get("parameterValues", {}) == entry["outputs"]
    for artifact_name, spec in entry["output_artifacts"].items():
        (written,) = output["artifacts"][artifact_name]["artifacts"]
        assert spec["metadata"].items() <= written.get("metadata", {}).items()
        if "content" in spec:
            assert Path(written["uri"]).read_text() == spec["content"]
