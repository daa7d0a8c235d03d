"""The Helm chart, rendered by the real helm: lint, then what each values set must produce.

Values sets (tests/chart/values/*.yaml plus the chart defaults) and what each proves:
- default: selfManaged certificates, least-privilege RBAC, restricted pods, two webhooks (namespace OR pod).
- certmanager / certmanager-issuer: cert-manager objects and caBundle injection instead of the sidecar.
- provided: the admin's Secret and caBundle, no certificate RBAC at all.
- custom-selector: extra namespace gates, pipeline-pattern webhook, imageVolume and W&B settings.
- ha: replicas, digest pinning (also of the shim), spreading, priority, PDB, ServiceMonitor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.render import (
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    HelmFailed,
    Rendered,
    lint,
    template,
)
from webhook import cli
from webhook.admission.config import Settings, load_settings
from webhook.cli import certs as certs_cli

FULLNAME = f"{RELEASE}-wandb-kfp-webhook"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease"}
WEBHOOK_NAMESPACES = "namespaces.wandb-kfp-webhook.wandb.ai"
WEBHOOK_PODS = "pods.wandb-kfp-webhook.wandb.ai"
WEBHOOK_PIPELINES = "pipelines.wandb-kfp-webhook.wandb.ai"
ARGO = {"workflows.argoproj.io/workflow": "wf-1"}


@pytest.fixture(scope="module")
def rendered(helm: Path) -> dict[str, Rendered]:
    return {value_set: template(helm, value_set) for value_set in VALUE_SETS}


def pod_spec(r: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = r.one("Deployment")["spec"]["template"]["spec"]
    return spec


def all_containers(r: Rendered) -> list[dict[str, Any]]:
    spec = pod_spec(r)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(r: Rendered, name: str) -> dict[str, Any]:
    return next(c for c in all_containers(r) if c["name"] == name)


def webhooks(r: Rendered) -> dict[str, dict[str, Any]]:
    return {hook["name"]: hook for hook in r.one("MutatingWebhookConfiguration")["webhooks"]}


def settings_of(r: Rendered, tmp_path: Path) -> tuple[dict[str, Any], Settings]:
    text = r.one("ConfigMap", FULLNAME)["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return yaml.safe_load(text), load_settings(path)


# -- a label-selector evaluator, to check which webhooks the apiserver would call ------------------------


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (an absent selector matches everything)."""
    selector = selector or {}
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def called(r: Rendered, namespace: str, ns_labels: dict[str, str], pod_labels: dict[str, str]) -> list[str]:
    """The webhooks the apiserver would call for a pod CREATE (namespaces carry their name label)."""
    namespace_labels = {**ns_labels, "kubernetes.io/metadata.name": namespace}
    return [
        name
        for name, hook in webhooks(r).items()
        if selector_matches(hook.get("namespaceSelector"), namespace_labels)
        and selector_matches(hook.get("objectSelector"), pod_labels)
    ]


# -- lint and schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_passes(helm: Path, value_set: str) -> None:
    output = lint(helm, value_set)
    assert "1 chart(s) linted, 0 chart(s) failed" in output


@pytest.mark.parametrize(
    ("set_value", "complaint"),
    [
        ("webhook.timeoutSeconds=10", "timeoutSeconds"),
        ("certificates.mode=bogus", "mode"),
        ("injection.shim.delivery=copy", "delivery"),
        ("replicaCount=0", "replicaCount"),
        ("surprise=1", "surprise"),
    ],
)
def test_schema_refuses_bad_values(helm: Path, set_value: str, complaint: str) -> None:
    with pytest.raises(HelmFailed, match=complaint):
        template(helm, set_values=[set_value])


def test_provided_mode_without_a_secret_fails_with_the_reason(helm: Path) -> None:
    with pytest.raises(HelmFailed, match=r"certificates\.provided\.secretName is required"):
        template(helm, set_values=["certificates.mode=provided", "certificates.provided.caBundle=eA=="])


def test_no_webhook_at_all_is_refused(helm: Path) -> None:
    with pytest.raises(HelmFailed, match="at least one of"):
        template(helm, set_values=["webhook.namespaceOptIn.enabled=false", "webhook.podOptIn.enabled=false"])


# -- every values set -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_carries_the_helm_labels(rendered: dict[str, Rendered], value_set: str) -> None:
    for obj in rendered[value_set].objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "wandb-kfp-webhook", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "wandb-kfp-webhook-0.1.0"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_webhooks_never_block_and_only_see_pod_creates(rendered: dict[str, Rendered], value_set: str) -> None:
    service = rendered[value_set].one("Service")
    for hook in webhooks(rendered[value_set]).values():
        assert hook["failurePolicy"] == "Ignore"
        assert hook["sideEffects"] == "None"
        assert 1 <= hook["timeoutSeconds"] <= 5
        assert hook["reinvocationPolicy"] == "IfNeeded"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        assert hook["clientConfig"]["service"] == {
            "name": service["metadata"]["name"],
            "namespace": NAMESPACE,
            "path": "/mutate",
            "port": service["spec"]["ports"][0]["port"],
        }
        excluded = next(
            e["values"]
            for e in hook["namespaceSelector"]["matchExpressions"]
            if e["key"] == "kubernetes.io/metadata.name"
        )
        assert SYSTEM_NAMESPACES | {NAMESPACE} <= set(excluded)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_selectors_call_each_pod_at_most_once_and_opt_out_wins(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    opted_in = {"wandb.ai/inject": "enabled", "team": "ml", "kubeflow-profile": "x"}
    plain = {"team": "ml", "kubeflow-profile": "x"}
    for ns_labels in (opted_in, plain, {}):
        for pod_labels in ({}, {"wandb.ai/inject": "true"}, {"wandb.ai/inject": "false"}):
            for argo in ({}, ARGO):
                assert len(called(r, "team-a", ns_labels, {**pod_labels, **argo})) <= 1
            assert called(r, "team-a", ns_labels, {"wandb.ai/inject": "false", **ARGO}) == []
            for protected in (*SYSTEM_NAMESPACES, NAMESPACE):
                assert called(r, protected, ns_labels, {**pod_labels, **ARGO}) == []
    # The webhook's own pods opt out by label, so even outside its namespace they are never sent.
    own_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert own_labels["wandb.ai/inject"] == "false"
    assert called(r, "team-a", opted_in, own_labels) == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_are_restricted_and_read_only(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    pod_security = pod_spec(r)["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == 65532
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts_needed = {"/tmp", "/tls"}
    for c in all_containers(r):
        security = c["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, c["name"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert mounts_needed <= {m["mountPath"] for m in c["volumeMounts"]}, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    volumes = {v["name"]: v for v in pod_spec(r)["volumes"]}
    assert "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_server_container_probes_config_and_ports(
    rendered: dict[str, Rendered], value_set: str, tmp_path: Path
) -> None:
    r = rendered[value_set]
    server = container(r, "webhook")
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    raw, settings = settings_of(r, tmp_path)
    assert server["ports"] == [{"name": "https", "containerPort": settings.port, "protocol": "TCP"}]
    service = r.one("Service")["spec"]
    assert service["ports"][0]["targetPort"] == "https" and service["ports"][0]["port"] == 443
    assert service["selector"].items() <= r.one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    own_ns = next(e for e in server["env"] if e["name"] == "WANDB_KFP_WEBHOOK_OWN_NAMESPACE")
    assert own_ns["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # The server's command line is one the real CLI accepts, and points at the mounted files.
    assert server["command"] == ["wandb-kfp-webhook"]
    args = cli.build_parser().parse_args(server["args"])
    config_mount = next(m for m in server["volumeMounts"] if m["name"] == "config")
    assert str(args.config) == f"{config_mount['mountPath']}/config.yaml"
    assert str(args.tls_cert) == "/tls/tls.crt" and str(args.tls_key) == "/tls/tls.key"
    # Every ConfigMap key is a Settings field, and the shim image is the chart's image unless overridden.
    assert set(raw) <= set(Settings.model_fields)
    assert settings.shim_image == server["image"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_is_least_privilege(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    sa = r.one("ServiceAccount")["metadata"]["name"]
    assert pod_spec(r)["serviceAccountName"] == sa
    roles = {(obj["kind"], obj["metadata"]["name"]): obj for obj in r.of_kind("ClusterRole") + r.of_kind("Role")}
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "create" not in rule["verbs"]
    assert roles[("ClusterRole", f"{FULLNAME}-namespaces")]["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    ]
    for binding in r.of_kind("ClusterRoleBinding") + r.of_kind("RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles


def test_default_self_managed_certificates(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    assert r.kinds == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )
    secret = r.one("Secret")
    assert secret["type"] == "Opaque" and "data" not in secret and "stringData" not in secret
    secret_name = secret["metadata"]["name"]
    config_name = r.one("MutatingWebhookConfiguration")["metadata"]["name"]
    role = r.one("Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [secret_name],
            "verbs": ["get", "update", "patch"],
        }
    ]
    assert r.one("ClusterRole", f"{FULLNAME}-webhook-config")["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": [config_name],
            "verbs": ["get", "patch"],
        }
    ]
    # The init container and the sidecar run the real `certs sync` command line against these objects.
    init_args = certs_cli.build_sync_parser().parse_args(container(r, "certs-init")["args"][2:])
    sidecar_args = certs_cli.build_sync_parser().parse_args(container(r, "certs-sync")["args"][2:])
    assert container(r, "certs-init")["args"][:2] == ["certs", "sync"]
    assert init_args.once and not sidecar_args.once and sidecar_args.interval == 60
    for args in (init_args, sidecar_args):
        assert (args.namespace, args.secret, args.webhook_config) == (NAMESPACE, secret_name, config_name)
        assert args.service == r.one("Service")["metadata"]["name"]
        assert str(args.out) == "/tls"
        policy = certs_cli.policy_from_args(args)
        assert f"{FULLNAME}.{NAMESPACE}.svc" in policy.dns_names
        assert (policy.leaf_valid_days, policy.leaf_renew_before.days) == (90, 30)
    assert [c["name"] for c in pod_spec(r)["initContainers"]] == ["certs-init"]
    tls_volume = next(v for v in pod_spec(r)["volumes"] if v["name"] == "tls")
    assert tls_volume["emptyDir"]["medium"] == "Memory"
    # No caBundle rendered offline (lookup finds nothing): the sync fills it in.
    assert all("caBundle" not in hook["clientConfig"] for hook in webhooks(r).values())
    assert set(webhooks(r)) == {WEBHOOK_NAMESPACES, WEBHOOK_PODS}


def test_default_deployment_is_highly_available(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    deployment = r.one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spread = pod_spec(r)["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = r.one("PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"] == deployment["spec"]["selector"]


def test_default_opt_in_matrix(rendered: dict[str, Rendered]) -> None:
    r = rendered["default"]
    labelled = {"wandb.ai/inject": "enabled"}
    assert called(r, "team-a", labelled, ARGO) == [WEBHOOK_NAMESPACES]
    assert called(r, "team-a", labelled, {**ARGO, "wandb.ai/inject": "true"}) == [WEBHOOK_NAMESPACES]
    assert called(r, "team-a", {}, {**ARGO, "wandb.ai/inject": "true"}) == [WEBHOOK_PODS]
    assert called(r, "team-a", {}, ARGO) == []
    assert called(r, "team-a", labelled, {}) == []  # not an Argo pod: never sent
    assert called(r, "kube-system", labelled, ARGO) == []


@pytest.mark.parametrize("value_set", ["certmanager", "certmanager-issuer"])
def test_cert_manager_issues_and_injects(rendered: dict[str, Rendered], value_set: str) -> None:
    r = rendered[value_set]
    serving = r.one("Certificate", f"{FULLNAME}-serving")["spec"]
    tls_volume = next(v for v in pod_spec(r)["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == serving["secretName"]
    assert f"{FULLNAME}.{NAMESPACE}.svc" in serving["dnsNames"]
    annotations = r.one("MutatingWebhookConfiguration")["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{FULLNAME}-serving"
    assert "initContainers" not in pod_spec(r)
    assert [c["name"] for c in pod_spec(r)["containers"]] == ["webhook"]
    assert r.of_kind("Role") == [] and r.of_kind("Secret") == []
    assert {o["metadata"]["name"] for o in r.of_kind("ClusterRole")} == {f"{FULLNAME}-namespaces"}
    if value_set == "certmanager":
        assert serving["issuerRef"] == {"name": f"{FULLNAME}-ca", "kind": "Issuer", "group": "cert-manager.io"}
        assert r.one("Certificate", f"{FULLNAME}-ca")["spec"]["isCA"] is True
        assert len(r.of_kind("Issuer")) == 2
        monitor = r.one("ServiceMonitor")["spec"]["endpoints"][0]
        assert monitor["tlsConfig"]["ca"]["secret"] == {"name": serving["secretName"], "key": "ca.crt"}
    else:
        assert serving["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert r.of_kind("Issuer") == [] and len(r.of_kind("Certificate")) == 1


def test_provided_certificates(rendered: dict[str, Rendered]) -> None:
    r = rendered["provided"]
    given = yaml.safe_load(Path("tests/chart/values/provided.yaml").read_text())["certificates"]["provided"]
    assert all(hook["clientConfig"]["caBundle"] == given["caBundle"] for hook in webhooks(r).values())
    tls_volume = next(v for v in pod_spec(r)["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == given["secretName"]
    assert r.of_kind("Secret") == [] and r.of_kind("Role") == [] and r.of_kind("Certificate") == []
    assert "initContainers" not in pod_spec(r)


def test_custom_selectors_and_settings(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    r = rendered["custom-selector"]
    hooks = webhooks(r)
    assert set(hooks) == {WEBHOOK_NAMESPACES, WEBHOOK_PIPELINES}
    assert all(hook["timeoutSeconds"] == 3 for hook in hooks.values())
    team = {"wandb.ai/inject": "enabled", "team": "ml"}
    assert called(r, "team-a", team, {}) == [WEBHOOK_NAMESPACES]  # argoPodsOnly off: every pod is sent
    assert called(r, "team-a", {"wandb.ai/inject": "enabled", "team": "web"}, ARGO) == []
    assert called(r, "profile-a", {"kubeflow-profile": "a"}, ARGO) == [WEBHOOK_PIPELINES]
    assert called(r, "profile-a", {"kubeflow-profile": "a"}, {**ARGO, "wandb.ai/inject": "true"}) == []
    assert called(r, "kubeflow", {"kubeflow-profile": "a"}, ARGO) == []
    assert called(r, "other", {}, ARGO) == []
    _raw, settings = settings_of(r, tmp_path)
    assert settings.pipelines == ["train-*", "nightly-eval"]
    assert settings.shim_delivery == "imageVolume"
    assert settings.shim_image_layout_path == "/opt/wandb-kfp-webhook/shim"
    assert settings.offline_pvc == "wandb-offline"
    assert {"kube-system", "kube-public", "kube-node-lease", "kubeflow", "istio-system"} <= set(
        settings.excluded_namespaces
    )
    assert (settings.base_url, settings.project, settings.entity) == ("https://wandb.example.com", "kfp", "ml-platform")
    assert settings.tags == ["kfp", "prod"]
    assert (settings.api_key_secret_name, settings.api_key_secret_key) == ("team-wandb", "token")
    assert settings.kubeflow_url == "https://kubeflow.example.com/pipeline"


def test_pipeline_webhook_follows_patterns_unless_forced(helm: Path) -> None:
    assert WEBHOOK_PIPELINES in webhooks(template(helm, set_values=["injection.pipelines={train-*}"]))
    assert WEBHOOK_PIPELINES in webhooks(template(helm, set_values=["webhook.pipelineOptIn.enabled=true"]))
    forced_off = template(helm, set_values=["injection.pipelines={train-*}", "webhook.pipelineOptIn.enabled=false"])
    assert WEBHOOK_PIPELINES not in webhooks(forced_off)


def test_ha_values(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    r = rendered["ha"]
    digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    image = f"ghcr.io/wandb/wandb-kfp-webhook@{digest}"
    assert r.one("Deployment")["spec"]["replicas"] == 3
    assert {c["image"] for c in all_containers(r)} == {image}
    _raw, settings = settings_of(r, tmp_path)
    assert settings.shim_image == image and settings.workers == 4
    spread = pod_spec(r)["topologySpreadConstraints"]
    assert [s["topologyKey"] for s in spread] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    assert pod_spec(r)["priorityClassName"] == "system-cluster-critical"
    monitor = r.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    endpoint = monitor["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == ("https", "https", "/metrics")
    assert endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca-bundle.crt"


def test_config_checksum_rolls_pods_when_settings_change(helm: Path) -> None:
    before = template(helm).one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    after = template(helm, set_values=["wandb.project=changed"])
    changed = after.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert before != changed


def test_network_policy_is_off_by_default_and_admits_only_the_given_peers(rendered: dict[str, Rendered]) -> None:
    assert not rendered["default"].of_kind("NetworkPolicy")
    policy = rendered["locked"].one("NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == rendered["locked"].one("Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert rule["from"] == [
        {"ipBlock": {"cidr": "10.0.0.0/24"}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    ]


def test_locked_annotations_reach_the_settings_and_win_over_annotations(rendered: dict[str, Rendered]) -> None:
    from webhook.admission import config as cfg

    settings = Settings(**yaml.safe_load(rendered["locked"].one("ConfigMap")["data"]["config.yaml"]))
    assert settings.locked_annotations == ["base-url", "api-key-secret"]
    assert settings.request_timeout_seconds == 5 and settings.max_connections == 2000
    resolved = cfg.resolve(
        settings,
        {"wandb.ai/base-url": "https://elsewhere.example.com", "wandb.ai/project": "team"},
        {"wandb.ai/api-key-secret": "stolen/key", "wandb.ai/project": "mine"},
        "team-ns",
    )
    assert resolved.base_url == "https://wandb.internal.example.com"
    assert resolved.api_key_secret_name == "wandb-api-key"
    assert resolved.project == "team"  # a namespace may set it, its pods may not
    assert sum("locked by the server settings" in warning for warning in resolved.warnings) == 3
