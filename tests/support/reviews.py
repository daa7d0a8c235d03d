"""AdmissionReview requests as the kube-apiserver sends them, built around a Pod (tests and benchmarks)."""

from __future__ import annotations

from typing import Any


def admission_review(
    pod: dict[str, Any], uid: str = "uid-1", operation: str = "CREATE", namespace: str | None = None
) -> dict[str, Any]:
    """An admission.k8s.io/v1 review of a pod CREATE (or `operation`), namespace taken from the pod."""
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace or (metadata or {}).get("namespace", "kubeflow-user"),
            "operation": operation,
            "object": pod,
        },
    }
