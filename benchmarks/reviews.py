"""Real AdmissionReview bodies built from the committed fixture pods (tests/fixtures/pods).

The mix is mostly opted in by the pod label `wandb.ai/inject=true`, so the full decide + patch path runs
(no namespace cache is needed: the server runs without cluster access). Every fixture appears, including
the ~60 KB `v1-large` pod; the driver and cache-hit pods are opted in too but are skipped by kind, and two
pods are sent without the label (skipped early), as a namespace with mixed traffic would see.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg

#: Fixtures also sent without the opt-in label (the "not opted in" path).
NOT_OPTED_IN = ("v2-add", "v1-add")
#: The large pod is sent twice per cycle so it weighs as much as a busy pipeline's big steps.
EXTRA_WEIGHT = {"v1-large": 2}


@dataclass(frozen=True)
class ReviewBody:
    name: str
    opted_in: bool
    body: bytes

    @property
    def label(self) -> str:
        return self.name + ("" if self.opted_in else " (no label)")


def admission_review(pod: dict[str, Any], uid: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """An admission.k8s.io/v1 AdmissionReview for a pod CREATE, as the apiserver sends it."""
    namespace = namespace or pod.get("metadata", {}).get("namespace") or "kubeflow-user"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kubeflow:argo",
                "uid": "5b1c1a52-7d4e-4f5a-9a57-6a5d1cf1c0de",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kubeflow", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def opted_in(pod: dict[str, Any]) -> dict[str, Any]:
    pod.setdefault("metadata", {}).setdefault("labels", {})[cfg.INJECT_LABEL] = cfg.POD_INJECT_VALUE
    return pod


def fixture_names() -> list[str]:
    return [entry["name"] for entry in fixture_pods.load_index()]


def review_mix() -> list[ReviewBody]:
    """The request mix, in a fixed interleaved order (one cycle)."""
    bodies = []
    for name in fixture_names():
        for _ in range(EXTRA_WEIGHT.get(name, 1)):
            pod = opted_in(fixture_pods.load_pod(name))
            bodies.append(ReviewBody(name, True, json.dumps(admission_review(pod)).encode()))
    for name in NOT_OPTED_IN:
        pod = fixture_pods.load_pod(name)
        bodies.append(ReviewBody(name, False, json.dumps(admission_review(pod)).encode()))
    # Spread big and small bodies through the cycle instead of grouping them.
    bodies.sort(key=lambda item: len(item.body))
    spread: list[ReviewBody] = []
    while bodies:
        spread.append(bodies.pop())
        if bodies:
            spread.append(bodies.pop(0))
    return spread


def write_bodies(directory: Path, bodies: list[ReviewBody]) -> Path:
    """Write each body to a file and a manifest (one path per line) for the wrk script; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, item in enumerate(bodies):
        path = directory / f"{index:03d}-{item.name}{'' if item.opted_in else '-nolabel'}.json"
        path.write_bytes(item.body)
        paths.append(str(path))
    manifest = directory / "manifest.txt"
    manifest.write_text("\n".join(paths) + "\n")
    return manifest


def mix_summary(bodies: list[ReviewBody]) -> dict[str, Any]:
    sizes = sorted(len(item.body) for item in bodies)
    return {
        "requests_per_cycle": len(bodies),
        "opted_in": sum(item.opted_in for item in bodies),
        "body_bytes_min": sizes[0],
        "body_bytes_median": sizes[len(sizes) // 2],
        "body_bytes_max": sizes[-1],
        "body_bytes_mean": round(sum(sizes) / len(sizes)),
        "fixtures": [item.label for item in bodies],
    }
