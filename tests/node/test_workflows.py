"""Argo Workflows on the real node: the in-cluster controller creates the pods, the emissary executor
runs the steps, and file artifacts travel through MinIO, as in a KFP v1 install."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.node.argo import BUCKET, Argo, unique
from tests.node.images import image_ref

PAYLOAD = bytes(range(256)) * 40
_PRODUCE = "import pathlib; pathlib.Path('/tmp/out.bin').write_bytes(bytes(range(256)) * 40)"
_CONSUME = (
    "import hashlib, pathlib; data = pathlib.Path('/tmp/in.bin').read_bytes(); "
    "pathlib.Path('/tmp/sha').write_text(hashlib.sha256(data).hexdigest())"
)


def _python_step(name: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "container": {"image": image_ref("python"), "command": ["python3", "-c"], "args": [code]},
        **extra,
    }


def _nodes_by_template(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["templateName"]: node for node in workflow["status"]["nodes"].values() if node.get("type") == "Pod"}


@pytest.fixture(scope="module")
def pipeline_namespace(argo: Argo) -> str:
    namespace = unique("pipelines")
    argo.cluster.create_namespace(namespace)
    argo.prepare_namespace(namespace)
    return namespace


def test_two_steps_pass_a_file_artifact_through_minio(argo: Argo, pipeline_namespace: str) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "artifact-passing-"},
        "spec": {
            "entrypoint": "main",
            "serviceAccountName": "pipeline-runner",
            "templates": [
                {
                    "name": "main",
                    "steps": [
                        [{"name": "produce", "template": "produce"}],
                        [
                            {
                                "name": "consume",
                                "template": "consume",
                                "arguments": {
                                    "artifacts": [{"name": "data", "from": "{{steps.produce.outputs.artifacts.data}}"}]
                                },
                            }
                        ],
                    ],
                },
                _python_step("produce", _PRODUCE, outputs={"artifacts": [{"name": "data", "path": "/tmp/out.bin"}]}),
                _python_step(
                    "consume",
                    _CONSUME,
                    inputs={"artifacts": [{"name": "data", "path": "/tmp/in.bin"}]},
                    outputs={"parameters": [{"name": "sha", "valueFrom": {"path": "/tmp/sha"}}]},
                ),
            ],
        },
    }
    done = argo.run(pipeline_namespace, workflow)

    assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
    nodes = _nodes_by_template(done)
    stored = nodes["produce"]["outputs"]["artifacts"]
    data = next(artifact for artifact in stored if artifact["name"] == "data")
    assert data["s3"]["key"].startswith(f"artifacts/{done['metadata']['name']}/")
    assert argo.artifact(data) == PAYLOAD
    assert data["s3"]["key"] in argo.s3.list(BUCKET, f"artifacts/{done['metadata']['name']}/")
    consumed = {p["name"]: p["value"] for p in nodes["consume"]["outputs"]["parameters"]}
    assert consumed["sha"] == hashlib.sha256(PAYLOAD).hexdigest()

    # The controller built emissary pods: `wait` beside `main`, main wrapped by /var/run/argo/argoexec.
    pod_name = nodes["consume"]["id"]
    pods = argo.cluster.get_json(
        f"/api/v1/namespaces/{pipeline_namespace}/pods?labelSelector=workflows.argoproj.io%2Fworkflow%3D"
        f"{done['metadata']['name']}"
    )["items"]
    consume_pod = next(
        pod for pod in pods if pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == pod_name
    )
    containers = {c["name"]: c for c in consume_pod["spec"]["containers"]}
    assert set(containers) == {"wait", "main"}
    assert containers["main"]["command"][:2] == ["/var/run/argo/argoexec", "emissary"]
    assert [c["name"] for c in consume_pod["spec"]["initContainers"]] == ["init"]


def test_a_failing_step_fails_the_workflow(argo: Argo, pipeline_namespace: str) -> None:
    workflow = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "failing-step-"},
        "spec": {
            "entrypoint": "main",
            "serviceAccountName": "pipeline-runner",
            "templates": [
                {
                    "name": "main",
                    "steps": [[{"name": "boom", "template": "boom"}], [{"name": "after", "template": "after"}]],
                },
                _python_step("boom", "import sys; print('failing on purpose'); sys.exit(3)"),
                _python_step("after", "print('must not run')"),
            ],
        },
    }
    done = argo.run(pipeline_namespace, workflow)

    assert done["status"]["phase"] == "Failed"
    nodes = _nodes_by_template(done)
    assert nodes["boom"]["phase"] == "Failed"
    assert "exit code 3" in nodes["boom"]["message"]
    assert "after" not in nodes
    # archiveLogs (KFP's setting): the wait container stored the failed step's log in MinIO too.
    logs = next(a for a in nodes["boom"]["outputs"]["artifacts"] if a["name"] == "main-logs")
    assert argo.artifact(logs).decode().strip() == "failing on purpose"
