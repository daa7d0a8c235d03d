"""Reading kind, run and step from pods: the emissary wrapper, launcher flags and every fixture's kind."""

from __future__ import annotations

import pytest

from tests.fixtures import pods as fixture_pods
from webhook import podfacts
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
