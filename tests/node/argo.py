"""Argo Workflows and MinIO on the node cluster, laid out as a KFP v1 install lays them out.

KFP installs the workflow-controller and MinIO in `kubeflow`: MinIO as `minio-service:9000` with the
`mlpipeline` bucket, credentials in the `mlpipeline-minio-artifact` Secret (copied into every namespace
that runs pipelines), and the controller's ConfigMap naming MinIO as the default artifact repository
with KFP's key format. Here the controller runs in-cluster, as a Deployment, from Argo's own manifests
(`manifests/base` + `cluster-install` RBAC of the module we built, rendered by kubectl's kustomize):
that is what KFP does, and it makes the controller reach the apiserver through the `kubernetes` Service
and create pods through admission like any controller. MinIO's Service gets a fixed ClusterIP, which is
the endpoint Argo and the tests use (no cluster DNS here). The bucket is made with an S3 call from the
host, as KFP's API server makes it at start.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from tests.node.cluster import NodeCluster
from tests.node.s3 import S3

NAMESPACE = "kubeflow"
MINIO_SERVICE_IP = "10.214.0.90"
MINIO_ENDPOINT = f"{MINIO_SERVICE_IP}:9000"
BUCKET = "mlpipeline"
ARTIFACT_SECRET = "mlpipeline-minio-artifact"
ACCESS_KEY = "minio"
SECRET_KEY = "minio123"
# KFP v1's key format: artifacts/<workflow>/<yyyy>/<mm>/<dd>/<pod>.
KEY_FORMAT = (
    "artifacts/{{workflow.name}}/{{workflow.creationTimestamp.Y}}/{{workflow.creationTimestamp.m}}/"
    "{{workflow.creationTimestamp.d}}/{{pod.name}}"
)
EXECUTOR_ROLE = "wkw-node-executor"
DONE_PHASES = ("Succeeded", "Failed", "Error")


def render_controller(cluster: NodeCluster, workdir: Path, controller_image: str, executor_image: str) -> list[Any]:
    """Argo's CRDs, controller Deployment, ConfigMap and cluster RBAC, in NAMESPACE, with our images."""
    manifests = cluster.binaries.argo_manifests
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": NAMESPACE,
                # kustomize refuses absolute paths; a relative one may leave the kustomization's dir.
                "resources": [
                    os.path.relpath(manifests / part, workdir)
                    for part in ("base/crds", "base/workflow-controller", "cluster-install/workflow-controller-rbac")
                ],
            }
        )
    )
    objects = [obj for obj in yaml.safe_load_all(cluster.kubectl("kustomize", str(workdir)).stdout) if obj]
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "workflow-controller":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container["image"] = controller_image
            container["imagePullPolicy"] = "IfNotPresent"
            container["args"] = ["--executor-image", executor_image, "--executor-image-pull-policy", "IfNotPresent"]
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "workflow-controller-configmap":
            obj["data"] = {
                "executor": yaml.safe_dump({"imagePullPolicy": "IfNotPresent"}),
                "artifactRepository": yaml.safe_dump(
                    {
                        "archiveLogs": True,
                        "s3": {
                            "endpoint": MINIO_ENDPOINT,
                            "bucket": BUCKET,
                            "keyFormat": KEY_FORMAT,
                            "insecure": True,
                            "accessKeySecret": {"name": ARTIFACT_SECRET, "key": "accesskey"},
                            "secretKeySecret": {"name": ARTIFACT_SECRET, "key": "secretkey"},
                        },
                    }
                ),
            }
    return objects


def _minio_objects(image: str) -> list[dict[str, Any]]:
    labels = {"app": "minio"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "minio", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "strategy": {"type": "Recreate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "containers": [
                            {
                                "name": "minio",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["server", "/data"],
                                "env": [
                                    {"name": "MINIO_ROOT_USER", "value": ACCESS_KEY},
                                    {"name": "MINIO_ROOT_PASSWORD", "value": SECRET_KEY},
                                    {"name": "MINIO_BROWSER", "value": "off"},
                                    {"name": "MINIO_UPDATE", "value": "off"},
                                    {"name": "MINIO_CALLHOME_ENABLE", "value": "off"},
                                ],
                                "ports": [{"containerPort": 9000, "name": "api"}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/minio/health/ready", "port": 9000},
                                    "periodSeconds": 2,
                                },
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "minio-service", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "clusterIP": MINIO_SERVICE_IP,
                "selector": labels,
                "ports": [{"name": "api", "port": 9000, "targetPort": 9000}],
            },
        },
    ]


@dataclass
class Argo:
    """Argo + MinIO installed on a node cluster; helpers to prepare namespaces and run Workflows."""

    cluster: NodeCluster
    s3: S3
    timings: dict[str, float]

    def prepare_namespace(self, namespace: str) -> None:
        """What KFP puts in a namespace that runs pipelines: the MinIO Secret and the executor's RBAC.

        The emissary executor reports outputs through WorkflowTaskResults and reads/patches its pod;
        the Role is bound to `default` and to KFP v1's `pipeline-runner` ServiceAccount.
        """
        self.cluster.apply(*namespace_objects(namespace))

    def submit(self, namespace: str, workflow: dict[str, Any]) -> str:
        """Create a Workflow (a `generateName` gets a name from the apiserver); return its name."""
        with self.cluster.api_client() as api_client:
            created = k8s.CustomObjectsApi(api_client).create_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", workflow
            )
        return str(created["metadata"]["name"])

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The Workflow as stored now."""
        return self.cluster.get_json(f"/apis/argoproj.io/v1alpha1/namespaces/{namespace}/workflows/{name}")

    def wait(self, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until the Workflow is Succeeded, Failed or Error; return it."""
        self.cluster.wait_for(
            lambda: self.get(namespace, name).get("status", {}).get("phase") in DONE_PHASES,
            f"workflow {namespace}/{name}",
            timeout,
        )
        return self.get(namespace, name)

    def run(self, namespace: str, workflow: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        """Submit and wait."""
        return self.wait(namespace, self.submit(namespace, workflow), timeout)

    def artifact(self, artifact: dict[str, Any]) -> bytes:
        """An output artifact's bytes as stored in MinIO (unpacked when Argo stored it as .tgz)."""
        key = artifact["s3"]["key"]
        data = self.s3.get(BUCKET, key)
        if not key.endswith(".tgz"):
            return data
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [member for member in archive.getmembers() if member.isfile()]
            if len(members) != 1:
                raise AssertionError(f"{key} holds {len(members)} files, expected one")
            extracted = archive.extractfile(members[0])
            assert extracted is not None
            return extracted.read()


def namespace_objects(namespace: str) -> list[dict[str, Any]]:
    """Secret, ServiceAccount, Role and RoleBinding a pipeline namespace needs (see `prepare_namespace`)."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ARTIFACT_SECRET, "namespace": namespace},
            "stringData": {"accesskey": ACCESS_KEY, "secretkey": SECRET_KEY},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "pipeline-runner", "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": EXECUTOR_ROLE, "namespace": namespace},
            "rules": [
                {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": EXECUTOR_ROLE, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": EXECUTOR_ROLE},
            "subjects": [
                {"kind": "ServiceAccount", "name": "default", "namespace": namespace},
                {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": namespace},
            ],
        },
    ]


def _deployment_available(cluster: NodeCluster, namespace: str, name: str) -> bool:
    status = cluster.get_json(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}").get("status", {})
    return bool(status.get("availableReplicas", 0) >= 1)


def install(cluster: NodeCluster) -> Argo:
    """Install MinIO (with the bucket) and the Argo controller into NAMESPACE; return once both run."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    images = cluster.images
    cluster.create_namespace(NAMESPACE)
    cluster.apply(*namespace_objects(NAMESPACE), *_minio_objects(images["minio"][0]))
    objects = render_controller(
        cluster, cluster.temp_dir / "argo", images["workflow-controller"][0], images["argoexec"][0]
    )
    crds = [obj for obj in objects if obj["kind"] == "CustomResourceDefinition"]
    cluster.apply(*crds)
    for crd in crds:
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", f"crd/{crd['metadata']['name']}")
    cluster.apply(*(obj for obj in objects if obj["kind"] != "CustomResourceDefinition"))
    s3 = S3(MINIO_ENDPOINT, ACCESS_KEY, SECRET_KEY)
    cluster.wait_for(lambda: _deployment_available(cluster, NAMESPACE, "minio"), "MinIO Deployment available")

    def bucket_ready() -> bool:
        if not s3.bucket_exists(BUCKET):
            s3.create_bucket(BUCKET)
        return s3.bucket_exists(BUCKET)

    cluster.wait_for(bucket_ready, f"bucket {BUCKET} through the minio-service ClusterIP")
    timings["minio"] = time.monotonic() - started
    cluster.wait_for(
        lambda: _deployment_available(cluster, NAMESPACE, "workflow-controller"), "workflow-controller available"
    )
    timings["argo + minio"] = time.monotonic() - started
    return Argo(cluster, s3, timings)


def unique(prefix: str) -> str:
    """A DNS-label-safe name for a test's namespace or object."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
