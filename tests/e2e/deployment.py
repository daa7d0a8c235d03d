"""The webhook as the chart deploys it, for end-to-end tests: its server process and the objects around it.

The MutatingWebhookConfiguration, ConfigMap, ServiceAccount and RBAC come from `helm template` of the
chart; only the webhooks' clientConfig is pointed at the server process on loopback. The server is started
with the Deployment's own command and arguments, and talks to the apiserver as the chart's ServiceAccount.
"""

from __future__ import annotations

import copy
import sys
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.chart import render
from tests.e2e.cluster import Cluster, as_dict
from tests.e2e.webhooks import annotation_seen, apply_rendered_webhook, wait_for_webhook
from tests.fixtures import pods as fixture_pods
from tests.support.servers import (
    DevCerts,
    RunningServer,
    SecretVolume,
    find_free_port,
    make_dev_certs,
    start_server,
    stop_server,
)
from webhook.admission import config as cfg

RELEASE_NAMESPACE = render.NAMESPACE
#: Namespaces made by new_namespace carry it; the deployed webhook's selectors require it.
DEPLOYED_LABEL = "e2e.wkw.local/deployed"
ARGO_LABEL = "workflows.argoproj.io/workflow"
#: Objects of the chart that need CRDs this apiserver does not have, or that we replace with a local copy.
NOT_APPLIED = ("MutatingWebhookConfiguration", "ServiceMonitor", "Certificate", "Issuer")
BIN = Path(sys.executable).parent


@dataclass
class DeployedWebhook:
    """The server process, the identity it runs as, and how to restart it (after a kill test)."""

    cluster: Cluster
    rendered: render.Rendered
    work_dir: Path
    dev_certs: DevCerts
    volume: SecretVolume
    kubeconfig: Path
    config_file: Path
    port: int = field(default_factory=find_free_port)
    server: RunningServer | None = None
    webhook_config_name: str = ""

    def deployment_argv(self) -> list[str]:
        """The webhook container's command line, with the in-pod paths swapped for local files."""
        deployment = self.rendered.one("Deployment")
        container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook")
        swaps = {
            "/etc/wandb-kfp-webhook/config.yaml": str(self.config_file),
            "/tls/tls.crt": str(self.volume.cert_file),
            "/tls/tls.key": str(self.volume.key_file),
        }
        command = [str(BIN / container["command"][0]), *container["command"][1:]]
        return command + [swaps.get(arg, arg) for arg in container.get("args", [])]

    def deployment_env(self) -> dict[str, str]:
        """The webhook container's env from the Deployment, the downward API resolved for its namespace."""
        deployment = self.rendered.one("Deployment")
        container = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook")
        env = {}
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = str(variable["value"])
            elif variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace":
                env[variable["name"]] = RELEASE_NAMESPACE
        return env

    def start(self) -> RunningServer:
        env = {
            **self.deployment_env(),
            "KUBECONFIG": str(self.kubeconfig),
            "WANDB_KFP_WEBHOOK_HOST": "127.0.0.1",
            "WANDB_KFP_WEBHOOK_PORT": str(self.port),
        }
        self.server = start_server(
            self.work_dir,
            "webhook.server.app:create_app",
            replace(self.dev_certs, cert_file=self.volume.cert_file, key_file=self.volume.key_file),
            env,
            command=self.deployment_argv(),
            port=self.port,
            ready_path="/readyz",
        )
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            stop_server(self.server)


def admin(cluster: Cluster) -> k8s.ApiClient:
    return cluster.api_client()


def chart_service_account(rendered: render.Rendered) -> str:
    return str(rendered.one("ServiceAccount")["metadata"]["name"])


def namespaces_of(cluster: Cluster) -> set[str]:
    with admin(cluster) as api_client:
        return {ns.metadata.name for ns in k8s.CoreV1Api(api_client).list_namespace().items}


def new_namespace(
    cluster: Cluster,
    *,
    enabled: bool = False,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A fresh namespace with the ServiceAccount the fixture pods run as."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    all_labels = {DEPLOYED_LABEL: "yes", **(labels or {})}
    if enabled:
        all_labels[cfg.INJECT_LABEL] = cfg.NAMESPACE_INJECT_VALUE
    cluster.create_namespace(name, all_labels, annotations)
    with admin(cluster) as api_client:
        for account in {
            fixture_pods.load_pod(entry["name"])["spec"].get("serviceAccountName", "default")
            for entry in fixture_pods.load_index()
        } - {"default"}:
            k8s.CoreV1Api(api_client).create_namespaced_service_account(
                name, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=account))
            )
    return name


def fixture_pod(name: str, namespace: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    pod = copy.deepcopy(fixture_pods.load_pod(name))
    pod["metadata"]["namespace"] = namespace
    pod["metadata"]["name"] = f"{pod['metadata']['name'][:40]}-{uuid.uuid4().hex[:6]}"
    pod["metadata"]["labels"].update(extra_labels or {})
    return pod


def create(cluster: Cluster, pod: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Create the pod through admission and return what the apiserver stored (or would store)."""
    with admin(cluster) as api_client:
        created = k8s.CoreV1Api(api_client).create_namespaced_pod(
            pod["metadata"]["namespace"], k8s.V1Pod.model_validate(pod), dry_run="All" if dry_run else None
        )
    return as_dict(created)


def read(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    with admin(cluster) as api_client:
        return as_dict(k8s.CoreV1Api(api_client).read_namespaced_pod(name, namespace))


def main_env(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    return {var["name"]: var for var in main.get("env") or []}


def injected_kind(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(cfg.INJECTED_ANNOTATION)


def first_of(kind: str) -> str:
    return fixture_pods.fixtures_of_kind(kind)[0]


def deploy(cluster: Cluster, rendered: render.Rendered, work_dir: Path) -> DeployedWebhook:
    """Apply the chart's objects, start the server as its ServiceAccount, register its webhooks, and wait
    until the apiserver calls them."""
    if RELEASE_NAMESPACE not in namespaces_of(cluster):
        cluster.create_namespace(RELEASE_NAMESPACE)
    # Inside the webhook's reach, so that its exclusion of its own namespace is what keeps pods there out.
    cluster.kubectl("label", "namespace", RELEASE_NAMESPACE, f"{DEPLOYED_LABEL}=yes", "--overwrite")
    manifests = [obj for obj in rendered.objects if obj["kind"] not in NOT_APPLIED]
    cluster.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(manifests))
    token = cluster.service_account_token(RELEASE_NAMESPACE, chart_service_account(rendered))
    kubeconfig = cluster.kubeconfig_for_token(token, "wandb-kfp-webhook")
    config_file = work_dir / "config.yaml"
    config_file.write_text(rendered.one("ConfigMap")["data"]["config.yaml"])
    dev_certs = make_dev_certs(work_dir / "certs")
    volume = SecretVolume(work_dir / "tls")
    volume.swap_symlink(dev_certs.cert_file.read_bytes(), dev_certs.key_file.read_bytes())
    webhook = DeployedWebhook(cluster, rendered, work_dir, dev_certs, volume, kubeconfig, config_file)
    webhook.start()
    with admin(cluster) as api_client:
        webhook.webhook_config_name = apply_rendered_webhook(
            api_client,
            rendered.one("MutatingWebhookConfiguration"),
            f"https://127.0.0.1:{webhook.port}",
            dev_certs.ca_file.read_bytes(),
        )
        namespace = new_namespace(cluster, enabled=True)
        wait_for_webhook(api_client, namespace, annotation_seen(cfg.INJECTED_ANNOTATION), labels={ARGO_LABEL: "probe"})
    return webhook
