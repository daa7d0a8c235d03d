"""Register a MutatingWebhookConfiguration against the local apiserver and wait until it takes effect.

The apiserver serves URL webhooks directly (`clientConfig.url`), so a webhook process listening on
127.0.0.1 needs no Service. A new configuration is picked up by the apiserver's informer after a short
delay, so tests poll with dry-run pod creates (webhooks with sideEffects None are called on dry-run)
until the webhook is seen, instead of sleeping.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.cluster import as_dict

WEBHOOK_PATH = "/mutate"
WAIT_DEADLINE_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.25


def webhook_url(port: int, path: str = WEBHOOK_PATH, host: str = "127.0.0.1") -> str:
    """The HTTPS URL the apiserver should call for a webhook listening on loopback."""
    return f"https://{host}:{port}{path}"


def mutating_webhook_configuration(
    name: str,
    url: str,
    ca_bundle: bytes,
    *,
    namespace_selector: dict[str, Any] | None = None,
    object_selector: dict[str, Any] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """A v1 MutatingWebhookConfiguration for pod CREATE calling `url`, trusting the PEM `ca_bundle`."""
    webhook: dict[str, Any] = {
        "name": f"{name}.e2e.wkw.local",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ],
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    if object_selector is not None:
        webhook["objectSelector"] = object_selector
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def point_at_local(rendered: dict[str, Any], base_url: str, ca_bundle: bytes) -> dict[str, Any]:
    """A copy of a rendered (e.g. Helm) configuration whose webhooks call `base_url` instead of a Service.

    Each webhook keeps its Service's path (default /mutate); `caBundle` is replaced with `ca_bundle`.
    """
    local = copy.deepcopy(rendered)
    for webhook in local.get("webhooks", []):
        client_config = webhook.get("clientConfig", {})
        path = client_config.get("service", {}).get("path") or WEBHOOK_PATH
        webhook["clientConfig"] = {
            "url": base_url.rstrip("/") + path,
            "caBundle": base64.b64encode(ca_bundle).decode(),
        }
    local.get("metadata", {}).pop("resourceVersion", None)
    return local


def register_mutating_webhook(api_client: k8s.ApiClient, configuration: dict[str, Any]) -> str:
    """Create (or replace) a MutatingWebhookConfiguration; return its name."""
    api = k8s.AdmissionregistrationV1Api(api_client)
    name = str(configuration["metadata"]["name"])
    try:
        api.create_mutating_webhook_configuration(k8s.V1MutatingWebhookConfiguration.model_validate(configuration))
    except ApiException as error:
        if error.status != 409:
            raise
        existing = api.read_mutating_webhook_configuration(name)
        replacement = copy.deepcopy(configuration)
        replacement["metadata"]["resourceVersion"] = as_dict(existing)["metadata"]["resourceVersion"]
        api.replace_mutating_webhook_configuration(name, k8s.V1MutatingWebhookConfiguration.model_validate(replacement))
    return name


def apply_rendered_webhook(api_client: k8s.ApiClient, rendered: dict[str, Any], base_url: str, ca_bundle: bytes) -> str:
    """Register a rendered configuration rewritten by `point_at_local`; return its name."""
    return register_mutating_webhook(api_client, point_at_local(rendered, base_url, ca_bundle))


def delete_mutating_webhook(api_client: k8s.ApiClient, name: str) -> None:
    """Delete a MutatingWebhookConfiguration if it exists."""
    try:
        k8s.AdmissionregistrationV1Api(api_client).delete_mutating_webhook_configuration(name)
    except ApiException as error:
        if error.status != 404:
            raise


@dataclass(frozen=True)
class ProbeResult:
    """What a dry-run pod create returned: the admitted pod (as a dict), or the apiserver's refusal."""

    pod: dict[str, Any] | None
    error_status: int | None = None
    error_body: str = ""


def probe_pod(namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A minimal pod for dry-run admission probes (never scheduled: there is no kubelet)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"webhook-probe-{uuid.uuid4().hex[:8]}",
            "namespace": namespace,
            "labels": labels or {},
        },
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}]},
    }


def dry_run_pod_create(api_client: k8s.ApiClient, namespace: str, pod: dict[str, Any]) -> ProbeResult:
    """Send `pod` through admission with dryRun=All; nothing is stored."""
    try:
        admitted = k8s.CoreV1Api(api_client).create_namespaced_pod(
            namespace, k8s.V1Pod.model_validate(pod), dry_run="All"
        )
    except ApiException as error:
        return ProbeResult(pod=None, error_status=error.status, error_body=str(error.body))
    return ProbeResult(pod=as_dict(admitted))


def annotation_seen(key: str, value: str | None = None) -> Callable[[ProbeResult], bool]:
    """A `wait_for_webhook` predicate: the admitted pod carries annotation `key` (with `value`, if given)."""

    def seen(result: ProbeResult) -> bool:
        if result.pod is None:
            return False
        annotations = result.pod.get("metadata", {}).get("annotations") or {}
        return key in annotations and (value is None or annotations[key] == value)

    return seen


def wait_for_webhook(
    api_client: k8s.ApiClient,
    namespace: str,
    seen: Callable[[ProbeResult], bool],
    *,
    labels: dict[str, str] | None = None,
    deadline_seconds: float = WAIT_DEADLINE_SECONDS,
) -> ProbeResult:
    """Dry-run probe pods until `seen(result)` and return that result; TimeoutError carries the last one."""
    deadline = time.monotonic() + deadline_seconds
    last = ProbeResult(pod=None, error_body="(no probe sent)")
    while time.monotonic() < deadline:
        last = dry_run_pod_create(api_client, namespace, probe_pod(namespace, labels))
        if seen(last):
            return last
        time.sleep(POLL_INTERVAL_SECONDS)
    annotations = (last.pod or {}).get("metadata", {}).get("annotations")
    raise TimeoutError(
        f"webhook not seen in namespace {namespace} after {deadline_seconds:.0f}s; last probe: "
        f"status={last.error_status} annotations={annotations} body={last.error_body[:500]}"
    )
