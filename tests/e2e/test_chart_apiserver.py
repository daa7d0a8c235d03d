"""The chart's rendered manifests, validated by a real kube-apiserver.

Every values set goes through `kubectl apply --dry-run=server` (schema, defaulting and admission,
nothing stored). The apiserver has no CRDs, so cert-manager's Issuer/Certificate and the Prometheus
Operator's ServiceMonitor cannot be validated here: those kinds, and only those, are skipped, and the
test checks that nothing else was. The default set is also applied for real, its pod template is
admitted under the `restricted` Pod Security Standard, and an upgrade render keeps the caBundle the
certificate sync wrote.
"""

from __future__ import annotations

import base64
import copy
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from tests.chart.render import CHART_DIR, VALUE_SETS, Rendered, run_helm, template
from tests.e2e.cluster import Cluster
from webhook.certificates import generate
from webhook.certificates.rotation import Material

#: Kinds whose CRDs a bare apiserver lacks (cert-manager, Prometheus Operator).
CRD_KINDS = ("Certificate", "Issuer", "ServiceMonitor")


@pytest.fixture(scope="module")
def helm_binary(e2e_binaries: Any) -> Path:
    if e2e_binaries.helm is None:
        pytest.skip("helm is not built")
    return Path(e2e_binaries.helm)


def _fresh_namespace(apiserver: Cluster, labels: dict[str, str] | None = None) -> str:
    namespace = f"wkw-chart-{uuid.uuid4().hex[:6]}"
    apiserver.create_namespace(namespace, labels=labels)
    return namespace


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_values_set_passes_server_side_dry_run(apiserver: Cluster, helm_binary: Path, value_set: str) -> None:
    namespace = _fresh_namespace(apiserver)
    release = f"d{uuid.uuid4().hex[:6]}"
    rendered = template(helm_binary, value_set, namespace=namespace, release=release)
    skipped = sorted({obj["kind"] for obj in rendered.objects if obj["kind"] in CRD_KINDS})
    validated = [obj for obj in rendered.objects if obj["kind"] not in CRD_KINDS]
    result = apiserver.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump_all(validated, sort_keys=False)
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(validated), result.stdout
    assert all(line.endswith("(server dry run)") for line in lines), result.stdout
    expected_skips = {
        "default": [],
        "certmanager": ["Certificate", "Issuer", "ServiceMonitor"],
        "certmanager-issuer": ["Certificate"],
        "provided": [],
        "custom-selector": [],
        "ha": ["ServiceMonitor"],
        "locked": [],
    }
    assert skipped == expected_skips[value_set], f"CRD kinds not validated here: {skipped}"


@pytest.fixture(scope="module")
def applied(apiserver: Cluster, helm_binary: Path) -> Iterator[tuple[str, str, Rendered]]:
    """The default values set applied for real, in a namespace enforcing the restricted standard."""
    namespace = _fresh_namespace(
        apiserver,
        labels={"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"},
    )
    release = f"a{uuid.uuid4().hex[:6]}"
    rendered = template(helm_binary, namespace=namespace, release=release)
    apiserver.kubectl("apply", "-f", "-", input_text=rendered.to_yaml())
    yield namespace, release, rendered
    apiserver.kubectl(
        "delete", "--ignore-not-found", "--wait=false", "-f", "-", input_text=rendered.to_yaml(), check=False
    )


def test_stored_webhook_configuration_keeps_the_chart_semantics(
    apiserver: Cluster, applied: tuple[str, str, Rendered]
) -> None:
    _namespace, _release, rendered = applied
    name = rendered.one("MutatingWebhookConfiguration")["metadata"]["name"]
    with apiserver.api_client() as admin:
        stored = k8s.AdmissionregistrationV1Api(admin).read_mutating_webhook_configuration(name)
    assert [hook.name for hook in stored.webhooks] == [
        hook["name"] for hook in rendered.one("MutatingWebhookConfiguration")["webhooks"]
    ]
    for hook in stored.webhooks:
        assert hook.failure_policy == "Ignore" and hook.side_effects == "None"
        assert hook.timeout_seconds <= 5 and hook.reinvocation_policy == "IfNeeded"
        assert [(rule.operations, rule.resources) for rule in hook.rules] == [(["CREATE"], ["pods"])]


def test_pod_template_is_admitted_under_the_restricted_pod_security_standard(
    apiserver: Cluster, applied: tuple[str, str, Rendered]
) -> None:
    namespace, _release, rendered = applied
    template_spec = rendered.one("Deployment")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restricted-probe", "namespace": namespace, "labels": template_spec["metadata"]["labels"]},
        "spec": template_spec["spec"],
    }
    result = apiserver.kubectl("apply", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump(pod))
    assert "restricted-probe" in result.stdout
    assert "would violate" not in result.stderr, result.stderr
    # Control: the same pod without the chart's container securityContext is refused, so the
    # standard really is enforced here.
    loose = copy.deepcopy(pod)
    for container in loose["spec"]["containers"]:
        container.pop("securityContext")
    refused = apiserver.kubectl("apply", "--dry-run=server", "-f", "-", input_text=yaml.safe_dump(loose), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr


def test_upgrade_render_keeps_the_ca_bundle_the_sync_wrote(
    apiserver: Cluster, helm_binary: Path, applied: tuple[str, str, Rendered]
) -> None:
    """`lookup` in the template: an upgrade (here `helm template --dry-run=server`) reads the Secret."""
    namespace, release, rendered = applied
    secret_name = rendered.one("Secret")["metadata"]["name"]
    ca_cert, ca_key = generate.generate_ca("upgrade test CA")
    leaf, leaf_key = generate.generate_serving_cert(ca_cert, ca_key, ["svc"])
    with apiserver.api_client() as admin:
        core = k8s.CoreV1Api(admin)
        secret = core.read_namespaced_secret(secret_name, namespace)
        secret.data = Material(ca_cert, ca_key, ca_cert, leaf, leaf_key).to_secret_data()
        core.replace_namespaced_secret(secret_name, namespace, secret)
    upgraded = template(
        helm_binary,
        namespace=namespace,
        release=release,
        extra_args=["--dry-run=server"],
        env={**os.environ, "KUBECONFIG": str(apiserver.kubeconfig)},
    )
    bundles = {
        hook["clientConfig"].get("caBundle") for hook in upgraded.one("MutatingWebhookConfiguration")["webhooks"]
    }
    assert bundles == {base64.b64encode(ca_cert).decode()}
    # The Secret in the upgrade has no data keys, so a three-way merge leaves the synced data alone.
    assert "data" not in upgraded.one("Secret")


def test_install_notes_tell_the_admin_how_to_opt_in(apiserver: Cluster, helm_binary: Path) -> None:
    """NOTES.txt renders only on install, which asks the cluster for its version: hence this tier."""
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig)}
    install = ["install", "notes", str(CHART_DIR), "--dry-run=client", "--namespace", "wandb-system"]
    notes = run_helm(helm_binary, *install, env=env).stdout.split("NOTES:", 1)[1]
    assert "kubectl label namespace <team-ns> wandb.ai/inject=enabled" in notes
    assert "create secret generic wandb-api-key" in notes and "--from-literal=api-key=" in notes
    assert "wandb.ai/pipelines" not in notes, "pattern opt-in is only mentioned when its webhook exists"
    with_patterns = run_helm(helm_binary, *install, "--set", "webhook.pipelineOptIn.enabled=true", env=env).stdout
    assert "wandb.ai/pipelines='train-*,nightly-*'" in with_patterns.split("NOTES:", 1)[1]
