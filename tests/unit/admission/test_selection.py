"""Who gets injected: opt-in paths, the opt-out that always wins, protected namespaces, skipped kinds."""

from __future__ import annotations

import pytest

from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg
from webhook.admission.podfacts import read_facts
from webhook.admission.selection import decide
from webhook.shim import contract

SETTINGS = cfg.Settings()
ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
PLAIN = cfg.NamespaceInfo()


def first_of(kind):
    return fixture_pods.load_pod(fixture_pods.fixtures_of_kind(kind)[0])


def decision(pod, namespace="kubeflow-user", info=ENABLED, settings=SETTINGS):
    return decide(pod, read_facts(pod), namespace, info, settings)


@pytest.mark.parametrize("kind", [contract.KIND_V1_COMPONENT, contract.KIND_V2_EXECUTOR, contract.KIND_ARGO])
def test_namespace_label_opts_in(kind):
    assert decision(first_of(kind)).selected
    assert not decision(first_of(kind), info=PLAIN).selected


def test_pod_label_opts_in_without_namespace_label():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "true"
    result = decision(pod, info=PLAIN)
    assert result.selected and "pod label" in result.reason


def test_opt_out_label_wins_over_every_opt_in():
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "false"
    settings = cfg.Settings(pipelines=["*"])
    result = decision(pod, info=ENABLED, settings=settings)
    assert not result.selected and "opts it out" in result.reason


def test_unknown_pod_label_value_warns_and_does_not_opt_in():
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "yes"
    result = decision(pod, info=PLAIN)
    assert not result.selected
    assert any(cfg.INJECT_LABEL in warning for warning in result.warnings)


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "wandb-system"])
def test_protected_namespaces_are_never_touched(namespace):
    settings = cfg.Settings(own_namespace="wandb-system", pipelines=["*"])
    pod = first_of(contract.KIND_V2_EXECUTOR)
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "true"
    assert not decision(pod, namespace=namespace, settings=settings).selected


@pytest.mark.parametrize("kind", [contract.KIND_V2_DRIVER, contract.KIND_CACHE_HIT])
def test_drivers_and_cache_hits_are_left_alone(kind):
    result = decision(first_of(kind))
    assert not result.selected and "no user code" in result.reason


def test_non_argo_pods_are_ignored():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    del pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "true"
    result = decision(pod)
    assert not result.selected and "not an Argo workflow pod" in result.reason


def test_pipeline_pattern_from_settings_matches_the_v2_pipeline_name():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    name = read_facts(pod).pipeline_name
    assert name
    assert decision(pod, info=PLAIN, settings=cfg.Settings(pipelines=[name[:3] + "*"])).selected
    assert not decision(pod, info=PLAIN, settings=cfg.Settings(pipelines=["no-such-*"])).selected


def test_pipeline_pattern_from_namespace_annotation_matches_the_v1_workflow_name():
    pod = first_of(contract.KIND_V1_COMPONENT)
    workflow = read_facts(pod).workflow
    info = cfg.NamespaceInfo(annotations={cfg.PIPELINES_ANNOTATION: f"other, {workflow[:4]}*"})
    result = decision(pod, info=info)
    assert result.selected and "pipeline pattern" in result.reason


def test_already_injected_pod_is_not_selected_again():
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["metadata"]["annotations"][cfg.INJECTED_ANNOTATION] = contract.KIND_V1_COMPONENT
    assert decision(pod).reason == "already injected"
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["spec"].setdefault("initContainers", []).append({"name": contract.INIT_CONTAINER_NAME, "image": "x"})
    assert decision(pod).reason == "already injected"
