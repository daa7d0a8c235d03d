"""The CLI as a user runs it: preview's outputs and exit codes, certs generate, bad input in one line."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.fixtures import pods as fixture_pods
from tests.support.servers import REPO_ROOT
from tests.unit.cli.run import cli
from webhook.admission import config as cfg
from webhook.shim import contract

PODS = REPO_ROOT / "tests" / "fixtures" / "pods"
V2_POD = PODS / f"{fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR)[0]}.yaml"


def test_preview_shows_init_container_read_only_volume_and_secret_ref():
    result = cli("preview", str(V2_POD))
    assert result.returncode == 0, result.stderr
    pod = yaml.safe_load(result.stdout)
    assert pod["spec"]["initContainers"][-1]["name"] == contract.INIT_CONTAINER_NAME
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    assert {"name": contract.VOLUME_NAME, "mountPath": contract.SHIM_MOUNT_PATH, "readOnly": True} in main[
        "volumeMounts"
    ]
    key = next(v for v in main["env"] if v["name"] == contract.WANDB_API_KEY)
    assert key["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key"
    assert "assuming namespace" in result.stderr and "injected: kind=kfp-v2-executor" in result.stderr


def test_preview_review_prints_the_admission_response():
    result = cli("preview", str(V2_POD), "--review")
    assert result.returncode == 0
    response = json.loads(result.stdout)["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"]))


def test_preview_diff_is_a_unified_diff_of_additions_only():
    result = cli("preview", str(V2_POD), "--diff")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("--- pod") and lines[1].startswith("+++ pod (mutated)")
    assert any(line.startswith("+") and contract.INIT_CONTAINER_NAME in line for line in lines)
    assert not [line for line in lines[2:] if line.startswith("-")], "injection only adds"


def test_preview_reads_an_admission_review_from_stdin():
    pod = fixture_pods.load_pod(fixture_pods.fixtures_of_kind(contract.KIND_V1_COMPONENT)[0])
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-9", "namespace": "kubeflow-user", "object": pod},
    }
    result = cli("preview", "-", "--review", stdin=json.dumps(review))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["response"]["uid"] == "u-9"


def test_preview_not_selected_exits_3_and_says_why():
    result = cli("preview", str(V2_POD), "--no-namespace-labels")
    assert result.returncode == 3 and result.stdout == ""
    assert "not selected: not opted in" in result.stderr
    driver = PODS / f"{fixture_pods.fixtures_of_kind(contract.KIND_V2_DRIVER)[0]}.yaml"
    result = cli("preview", str(driver))
    assert result.returncode == 3 and "run no user code" in result.stderr


def test_preview_namespace_annotations_and_warnings():
    result = cli(
        "preview",
        str(V2_POD),
        "--namespace-label",
        f"{cfg.INJECT_LABEL}=enabled",
        "--namespace-annotation",
        "wandb.ai/project=team-x",
        "--namespace-annotation",
        "wandb.ai/tags=,,",
    )
    assert result.returncode == 0
    main = next(c for c in yaml.safe_load(result.stdout)["spec"]["containers"] if c["name"] == "main")
    assert {"name": contract.WANDB_PROJECT, "value": "team-x"} in main["env"]
    assert "warning: wandb-kfp-webhook: ignored annotation wandb.ai/tags" in result.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["preview", "/no/such/file.yaml"], None, "cannot read /no/such/file.yaml"),
        (["preview", "-"], "{unclosed", "neither YAML nor JSON"),
        (["preview", "-"], "- a\n- b\n", "must hold one Pod or AdmissionReview"),
        (["preview", "-"], "kind: Service\n", "expected kind Pod or AdmissionReview"),
        (["preview", "-", "--namespace-label", "novalue"], "kind: Pod\n", "KEY=VALUE"),
        (["certs", "generate", "--out", "/tmp/x"], None, "at least one --dns or --ip"),
        (
            ["preview", "-"],
            "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: main\n    env: {A: '1'}\n",
            "not a valid Pod: spec.containers[0].env must be a list, not an object",
        ),
        (["preview", "-"], "kind: Pod\nmetadata: x\nspec: {}\n", "not a valid Pod: metadata must be an object"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, stdin, message):
    result = cli(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_invalid_settings_file_is_one_line_and_exit_2(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("init_timeout_seconds: 0\nprojcet: x\n")
    result = cli("preview", str(V2_POD), "--config", str(settings))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "init_timeout_seconds" in result.stderr and "projcet" in result.stderr
