"""Reading kind, run and step from pods: the emissary wrapper, launcher flags and every fixture's kind."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import pods as fixture_pods
from webhook.admission import podfacts
from webhook.shim import contract


def test_unwrap_emissary_finds_first_double_dash_after_emissary():
    command = ["/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--", "sh", "-c", "echo -- x"]
    assert podfacts.unwrap_emissary(command) == ["sh", "-c", "echo -- x"]


def test_unwrap_emissary_leaves_unwrapped_commands_alone():
    assert podfacts.unwrap_emissary(["python3", "-m", "x", "--", "y"]) == ["python3", "-m", "x", "--", "y"]
    assert podfacts.unwrap_emissary(["argoexec", "emissary", "--loglevel"]) == [
        "argoexec",
        "emissary",
        "--loglevel",
    ]


def test_launcher_flags_stop_at_the_component_separator():
    argv = ["/kfp-launcher/launch", "--pipeline_name", "p", "--run_id", "r", "--", "sh", "--run_id", "other"]
    assert podfacts.launcher_flags(argv) == {"pipeline_name": "p", "run_id": "r"}


@pytest.mark.parametrize(
    ("node_name", "step"),
    [
        ("wf-abc.root.train.executor", "train"),
        ("wf-abc.add", "add"),
        ("wf-abc.loop(0:1).train(2)", "train"),
        ("wf-abc", ""),
        ("", ""),
    ],
)
def test_step_from_node_name(node_name, step):
    assert podfacts._step_from_node_name(node_name) == step


@pytest.mark.parametrize("entry", fixture_pods.load_index(), ids=lambda entry: entry["name"])
def test_every_fixture_is_classified_as_its_index_says(entry):
    pod = fixture_pods.load_pod(entry["name"])
    facts = podfacts.read_facts(pod)
    assert facts.kind == entry["kind"]
    if facts.kind in contract.SHIM_KINDS:
        assert facts.main_index is not None
        assert facts.workflow == pod["metadata"]["labels"][podfacts.ARGO_WORKFLOW_LABEL]
        assert facts.kfp_run_id, "KFP component pods carry their run id"
        assert facts.component_name, "a component pod names its step"
    if facts.kind == contract.KIND_V2_EXECUTOR:
        assert facts.pipeline_name == entry["pipeline"]


@pytest.mark.parametrize(
    ("flag", "name"),
    [("namespace/team/pipeline/train", "train"), ("train", "train"), ("a/b", "a/b"), ("", "")],
)
def test_pipeline_name_of_multi_user_launcher_flag(flag, name):
    assert podfacts.pipeline_name_of(flag) == name


# --- the Argo template's artifacts (lineage) -----------------------------------------------------
def _argo_template_env(pod):
    """(container, env entry) of the ARGO_TEMPLATE the fixture's Argo 3.6 put on its init containers."""
    for container in pod["spec"]["initContainers"]:
        for var in container.get("env", []):
            if var["name"] == podfacts.ARGO_TEMPLATE_ENV:
                return container, var
    raise AssertionError("no ARGO_TEMPLATE")


def _as_argo_3_5(pod):
    """Argo 3.2-3.5: the template on every container, main included."""
    _, var = _argo_template_env(pod)
    for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        container["env"] = [v for v in container.get("env", []) if v["name"] != podfacts.ARGO_TEMPLATE_ENV] + [var]
    return pod


def _as_argo_3_1(pod):
    """Argo <= 3.1: no env, the template in the pod annotation."""
    _, var = _argo_template_env(pod)
    for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
        container["env"] = [v for v in container.get("env", []) if v["name"] != podfacts.ARGO_TEMPLATE_ENV]
    pod["metadata"]["annotations"][podfacts.ARGO_TEMPLATE_ANNOTATION] = var["value"]
    return pod


COUNT_LINES_ARTIFACTS = {
    "inputs": {"/tmp/inputs/text/data": "text"},
    "outputs": {"/tmp/outputs/Output/data": "count-lines-Output", "/tmp/outputs/summary/data": "count-lines-summary"},
}


@pytest.mark.parametrize("shape", [lambda pod: pod, _as_argo_3_5, _as_argo_3_1], ids=["3.6", "3.2-3.5", "3.1"])
def test_v1_argo_artifacts_from_every_template_location(shape):
    pod = shape(fixture_pods.load_pod("v1-count-lines"))
    facts = podfacts.read_facts(pod)
    assert facts.kind == contract.KIND_V1_COMPONENT
    assert json.loads(facts.argo_artifacts) == COUNT_LINES_ARTIFACTS
    assert " " not in facts.argo_artifacts  # compact


def test_argo_artifacts_keep_only_names_and_paths():
    pod = fixture_pods.load_pod("v1-count-lines")
    _, var = _argo_template_env(pod)
    assert len(var["value"]) > 5 * len(podfacts.read_facts(pod).argo_artifacts)  # archive location, metadata...


def test_argo_artifacts_absent_without_template_or_artifacts_and_for_other_kinds():
    pod = _as_argo_3_1(fixture_pods.load_pod("v1-count-lines"))
    del pod["metadata"]["annotations"][podfacts.ARGO_TEMPLATE_ANNOTATION]
    assert podfacts.read_facts(pod).argo_artifacts == ""
    assert podfacts.argo_artifacts_of('{"name": "x", "inputs": {}, "outputs": {}}') == ""
    assert podfacts.argo_artifacts_of("not json") == ""
    assert podfacts.argo_artifacts_of('{"inputs": {"artifacts": [{"name": "a"}, "x", {"path": "/p"}]}}') == ""
    for name in fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR):
        assert podfacts.read_facts(fixture_pods.load_pod(name)).argo_artifacts == ""


def test_argo_artifacts_too_large_are_left_out():
    artifacts = [{"name": f"a{index}", "path": f"/tmp/inputs/{'x' * 200}{index}/data"} for index in range(400)]
    text = json.dumps({"inputs": {"artifacts": artifacts}})
    assert podfacts.argo_artifacts_of(text) == ""
    assert json.loads(podfacts.argo_artifacts_of(json.dumps({"inputs": {"artifacts": artifacts[:10]}})))["inputs"]
