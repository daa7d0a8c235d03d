"""The admin's side of the node tier: the chart installed with the image `make image` builds, and team
namespaces opted in the way docs/install.md says.

- `load_component_images(cluster, minors)` imports the container tier's component image of each CPython
  minor and tags it `docker.io/library/python:3.X`, the reference `python:3.X` names. KFP v1 compiled
  pipelines name `python:3.X` base images, so they run unchanged (the kubelet finds the image, policy
  IfNotPresent, and no pull is ever tried), and the webhook narrows the shim copy to that minor because it
  reads the same reference.
- `install(cluster, archive, image)` loads the webhook image into containerd and runs `helm install` of
  charts/wandb-kfp-webhook: selfManaged certificates, offline runs on a PVC, a W&B base URL nothing
  listens on (there is no W&B server: every run falls back to offline, the "lose no data" path), the KFP
  UI URL for links back. It returns once the Deployment is Ready.
- `Webhook.team_namespace(name)` makes what a team namespace holds: the label, the API-key Secret, the
  offline PVC bound to a hostPath PV under the cluster's temp dir (read back by the tests), and what KFP
  puts in a pipeline namespace (`Argo.prepare_namespace`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.node.argo import Argo
from tests.node.cluster import NodeCluster
from tests.node.images import ImageUnavailable

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "wandb-kfp-webhook"
RELEASE = "wandb-kfp-webhook"
NAMESPACE = "wandb-system"
#: The chart's names for this release (fullname = the release name, which contains the chart name).
FULLNAME = RELEASE
WEBHOOK_NAMES = ("namespaces.wandb-kfp-webhook.wandb.ai", "pods.wandb-kfp-webhook.wandb.ai")
INJECT_LABEL = "wandb.ai/inject"
INJECTED_ANNOTATION = "wandb.ai/injected"
RUN_ID_ANNOTATION = "wandb.ai/run-id"
API_KEY_SECRET = "wandb-api-key"
OFFLINE_PVC = "wandb-offline"
OFFLINE_DIR = "/wandb-offline"
KUBEFLOW_URL = "https://kubeflow.example.com/pipeline"
#: Nothing listens there in a pod (its own loopback): wandb.init fails at once and the shim goes offline.
CLOSED_BASE_URL = "http://127.0.0.1:1"
INIT_TIMEOUT_SECONDS = 10
SHIM_INIT_CONTAINER = "wandb-shim-install"
PYTHON_IMAGE = "docker.io/library/python:{minor}"
#: The CPython minors of the component images the KFP v1 pipelines name (tests/node/pipelines/kfp_v1.py).
COMPONENT_MINORS = ("3.7", "3.11", "3.13")
#: What the tests report in the tier's terminal summary (tests/node/conftest.py prints it).
TIER_SUMMARY: dict[str, Any] = {}


@dataclass(frozen=True)
class WebhookImages:
    """(reference, OCI archive) of the webhook image and of each component image, by CPython minor."""

    webhook: tuple[str, Path]
    components: dict[str, tuple[str, Path]]


def ensure_webhook_images(minors: tuple[str, ...] = COMPONENT_MINORS) -> WebhookImages:
    """The image `make image` builds and the container tier's component images (built once, cached).

    Raises ImageUnavailable with the reason where podman cannot build them or a CPython is missing.
    """
    from tests.container.images import ensure_component_image, ensure_webhook_image
    from tests.container.podman import ContainersUnavailable

    try:
        webhook = ensure_webhook_image()
        components = {minor: ensure_component_image(minor) for minor in minors}
    except (ContainersUnavailable, LookupError) as error:
        raise ImageUnavailable(f"the webhook or a component image cannot be built here: {error}") from error
    return WebhookImages(
        (webhook.name, webhook.archive), {minor: (image.name, image.archive) for minor, image in components.items()}
    )


def values(image: str, **overrides: Any) -> dict[str, Any]:
    """The values an admin gives `helm install` here (everything else is the chart's default)."""
    repository, tag = image.rsplit(":", 1)
    chosen: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "certificates": {"mode": "selfManaged"},
        "wandb": {
            "baseUrl": CLOSED_BASE_URL,
            "kubeflowUrl": KUBEFLOW_URL,
            "initTimeoutSeconds": INIT_TIMEOUT_SECONDS,
            "apiKeySecret": {"name": API_KEY_SECRET, "key": "api-key"},
        },
        "injection": {"offline": {"pvc": OFFLINE_PVC, "dir": OFFLINE_DIR}},
    }
    for key, value in overrides.items():
        chosen[key] = value
    return chosen


def load_component_images(cluster: NodeCluster, archives: dict[str, tuple[str, Path]]) -> dict[str, str]:
    """Import each minor's component image and tag it as the official image; {minor: reference}."""
    refs = {}
    present = set(cluster.image_refs())
    for minor, (name, archive) in archives.items():
        ref = PYTHON_IMAGE.format(minor=minor)
        if name not in present:
            cluster.load_image(archive)
        if ref not in present:
            cluster.ctr("images", "tag", "--force", name, ref)
        refs[minor] = ref
    return refs


@dataclass
class TeamNamespace:
    """A namespace opted in (or not) as a team would have it; `offline_dir` is the PV's host directory."""

    name: str
    labelled: bool
    offline_dir: Path | None


@dataclass
class Webhook:
    """The installed release."""

    cluster: NodeCluster
    argo: Argo
    image: str
    values_file: Path
    timings: dict[str, float] = field(default_factory=dict)

    # -- the release -----------------------------------------------------------------------------

    def deployment(self) -> dict[str, Any]:
        return self.cluster.get_json(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{FULLNAME}")

    def rolled_out(self, replicas: int | None = None) -> bool:
        """Every replica of the newest template is updated, ready and available, and no old pod is left."""
        deployment = self.deployment()
        spec, status = deployment["spec"], deployment.get("status", {})
        wanted = spec["replicas"] if replicas is None else replicas
        return bool(
            status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == wanted
            and status.get("readyReplicas", 0) == wanted
            and status.get("availableReplicas", 0) == wanted
            and status.get("replicas", 0) == wanted
        )

    def wait_rolled_out(self, timeout: float = 300) -> None:
        self.cluster.wait_for(self.rolled_out, f"Deployment {NAMESPACE}/{FULLNAME} rolled out", timeout)

    def pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance%3D{RELEASE}"
        return list(self.cluster.get_json(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}")["items"])

    def configuration(self) -> dict[str, Any]:
        return self.cluster.get_json(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{FULLNAME}")

    def upgrade(self, **overrides: Any) -> None:
        """`helm upgrade` with the install's values plus `overrides` (top-level keys replaced)."""
        current = yaml.safe_load(self.values_file.read_text())
        current.update(overrides)
        self.values_file.write_text(yaml.safe_dump(current))
        self.cluster.helm("upgrade", RELEASE, str(CHART_DIR), "-n", NAMESPACE, "-f", str(self.values_file))

    def scale(self, replicas: int) -> None:
        self.cluster.kubectl("-n", NAMESPACE, "scale", "deployment", FULLNAME, f"--replicas={replicas}")

    # -- namespaces ------------------------------------------------------------------------------

    def team_namespace(self, prefix: str, labelled: bool = True, offline_pvc: bool = True) -> TeamNamespace:
        """A pipeline namespace: KFP's Secret/SA/RBAC, and for a team that opted in, the label, the API key
        Secret and the offline PVC (hostPath PV under the cluster's temp dir, mode 0777)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.cluster.create_namespace(name, labels={INJECT_LABEL: "enabled"} if labelled else {})
        self.argo.prepare_namespace(name)
        offline_dir = None
        if labelled:
            self.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": API_KEY_SECRET, "namespace": name},
                    # A key W&B would refuse; no W&B server is reachable anyway.
                    "stringData": {"api-key": "local-" + "0" * 34},
                }
            )
        if labelled and offline_pvc:
            offline_dir = self.cluster.temp_dir / "volumes" / name
            offline_dir.mkdir(parents=True)
            offline_dir.chmod(0o777)
            pv = f"{name}-offline"
            self.cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": pv},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": "",
                        "hostPath": {"path": str(offline_dir), "type": "Directory"},
                        "claimRef": {"namespace": name, "name": OFFLINE_PVC},
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": OFFLINE_PVC, "namespace": name},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "",
                        "volumeName": pv,
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            )
            path = f"/api/v1/namespaces/{name}/persistentvolumeclaims/{OFFLINE_PVC}"
            self.cluster.wait_for(
                lambda: self.cluster.get_json(path).get("status", {}).get("phase") == "Bound", f"PVC {name} Bound"
            )
        return TeamNamespace(name, labelled, offline_dir)

    # -- is it called? -----------------------------------------------------------------------------

    def probe(self, namespace: str) -> dict[str, Any]:
        """A dry-run create of an Argo-labelled pod in `namespace`; the pod as admission left it."""
        pod = probe_pod(namespace, f"probe-{uuid.uuid4().hex[:6]}")
        result = self.cluster.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(pod), check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"dry-run create failed: {result.stderr}")
        created: dict[str, Any] = json.loads(result.stdout)
        return created

    def wait_called(self, namespace: str, timeout: float = 120) -> None:
        """Until a dry-run pod create in `namespace` comes back injected (a new configuration, a new
        certificate or a namespace label takes effect after a short delay)."""

        def injected() -> bool:
            annotations = self.probe(namespace)["metadata"].get("annotations", {})
            return INJECTED_ANNOTATION in annotations

        self.cluster.wait_for(injected, f"webhook called for pods in {namespace}", timeout)


def probe_pod(namespace: str, name: str, **extra_labels: str) -> dict[str, Any]:
    """An Argo workflow pod as far as the webhook's selectors go (label `workflows.argoproj.io/workflow`);
    not a KFP component, so it gets the WANDB_* env and the status annotation, no shim."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"workflows.argoproj.io/workflow": "probe", **extra_labels},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": PYTHON_IMAGE.format(minor="3.11"), "command": ["true"]}],
        },
    }


def install(cluster: NodeCluster, argo: Argo, image: str, archive: Path, **overrides: Any) -> Webhook:
    """Load the webhook image, `helm install` the chart, wait for the Deployment Ready and caBundle set."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    if image not in cluster.image_refs():
        cluster.load_image(archive)
    timings["webhook image import"] = time.monotonic() - started
    values_file = cluster.temp_dir / "wandb-kfp-webhook-values.yaml"
    values_file.write_text(yaml.safe_dump(values(image, **overrides)))
    started = time.monotonic()
    cluster.helm("install", RELEASE, str(CHART_DIR), "-n", NAMESPACE, "--create-namespace", "-f", str(values_file))
    webhook = Webhook(cluster, argo, image, values_file, timings)
    webhook.wait_rolled_out()
    cluster.wait_for(lambda: all(ca_bundles(webhook.configuration())), "caBundle on every webhook")
    timings["helm install to Deployment Ready"] = time.monotonic() - started
    return webhook


def ca_bundles(configuration: dict[str, Any]) -> list[bytes]:
    """The decoded caBundle of each webhook in a MutatingWebhookConfiguration (b'' when unset)."""
    bundles = []
    for hook in configuration.get("webhooks", []):
        with contextlib.suppress(ValueError):
            bundles.append(base64.b64decode(hook.get("clientConfig", {}).get("caBundle", "")))
            continue
        bundles.append(b"")
    return bundles


def apiserver_metrics(cluster: NodeCluster) -> str:
    """The apiserver's /metrics text (Prometheus exposition), read as the admin."""
    response = requests.get(
        f"{cluster.url}/metrics",
        headers={"Authorization": f"Bearer {cluster.token}"},
        verify=str(cluster.ca_file),
        timeout=30,
    )
    response.raise_for_status()
    return response.text


def metric_samples(text: str, metric: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of `metric` whose labels include `labels`: (all its labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        head, _, value = line.rpartition(" ")
        found_metric, _, label_text = head.partition("{")
        if found_metric != metric:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', label_text))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            samples.append((found, float(value)))
    return samples


def metric_total(text: str, metric: str, **labels: str) -> float:
    """The sum of the matching samples (0 when there are none)."""
    return sum(value for _, value in metric_samples(text, metric, **labels))
