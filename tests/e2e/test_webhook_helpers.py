"""Proves the webhook helpers end to end with a tiny TLS webhook served from inside the test.

The apiserver really calls it over HTTPS (trusting only the caBundle we register), and really applies
the JSONPatch it returns; the real webhook's scenarios live elsewhere and reuse these helpers.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client as k8s

from tests.e2e.certs import CertificateAuthority
from tests.e2e.cluster import Cluster, as_dict
from tests.e2e.webhooks import (
    ProbeResult,
    annotation_seen,
    apply_rendered_webhook,
    delete_mutating_webhook,
    dry_run_pod_create,
    mutating_webhook_configuration,
    point_at_local,
    probe_pod,
    register_mutating_webhook,
    wait_for_webhook,
    webhook_url,
)

ANNOTATION = "e2e.wkw.local/mutated-by"


@dataclass
class AnnotatingWebhook:
    """An HTTPS admission webhook on loopback that annotates every pod and records each review."""

    ca: CertificateAuthority
    port: int = 0
    reviews: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _handler_for(webhook: AnnotatingWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            path = urlsplit(self.path).path  # the apiserver appends ?timeout=<n>s
            webhook.reviews.append(review)
            webhook.paths.append(path)
            request = review["request"]
            has_annotations = bool(request["object"]["metadata"].get("annotations"))
            patch = (
                [
                    {
                        "op": "add",
                        "path": f"/metadata/annotations/{ANNOTATION.replace('/', '~1')}",
                        "value": path,
                    }
                ]
                if has_annotations
                else [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: path}}]
            )
            body = json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {
                        "uid": request["uid"],
                        "allowed": True,
                        "patchType": "JSONPatch",
                        "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # the default writes every request to stderr
            return

    return Handler


@pytest.fixture
def annotating_webhook(tmp_path: Path) -> Iterator[AnnotatingWebhook]:
    """Serve AnnotatingWebhook over TLS with a certificate from its own CA (not the apiserver's)."""
    webhook = AnnotatingWebhook(ca=CertificateAuthority("annotating-webhook-ca"))
    cert_file, key_file = webhook.ca.issue("annotating-webhook").write(tmp_path, "webhook")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(webhook))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    webhook.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="annotating-webhook", daemon=True)
    thread.start()
    try:
        yield webhook
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def webhook_namespace(apiserver: Cluster) -> str:
    """A fresh namespace labelled so that only this test's webhook configuration selects it."""
    name = f"hook-{uuid.uuid4().hex[:6]}"
    apiserver.create_namespace(name, labels={"e2e.wkw.local/webhook-test": name})
    return name


def test_registered_webhook_mutates_pods_over_tls(
    apiserver: Cluster, annotating_webhook: AnnotatingWebhook, webhook_namespace: str
) -> None:
    config = mutating_webhook_configuration(
        f"annotate-{webhook_namespace}",
        webhook_url(annotating_webhook.port),
        annotating_webhook.ca.cert_pem,
        namespace_selector={"matchLabels": {"e2e.wkw.local/webhook-test": webhook_namespace}},
    )
    other_namespace = f"{webhook_namespace}-other"
    apiserver.create_namespace(other_namespace)
    with apiserver.api_client() as api_client:
        name = register_mutating_webhook(api_client, config)
        try:
            wait_for_webhook(api_client, webhook_namespace, annotation_seen(ANNOTATION, "/mutate"))

            pod = probe_pod(webhook_namespace)
            pod["metadata"]["annotations"] = {"kept": "yes"}
            core = k8s.CoreV1Api(api_client)
            core.create_namespaced_pod(webhook_namespace, k8s.V1Pod.model_validate(pod))
            stored = as_dict(core.read_namespaced_pod(pod["metadata"]["name"], webhook_namespace))
            unselected = dry_run_pod_create(api_client, other_namespace, probe_pod(other_namespace))
        finally:
            delete_mutating_webhook(api_client, name)

    assert stored["metadata"]["annotations"] == {"kept": "yes", ANNOTATION: "/mutate"}
    stored_reviews = [
        review["request"]
        for review in annotating_webhook.reviews
        if review["request"]["name"] == pod["metadata"]["name"]
    ]
    assert len(stored_reviews) == 1
    assert stored_reviews[0]["operation"] == "CREATE"
    assert stored_reviews[0]["namespace"] == webhook_namespace
    assert stored_reviews[0]["dryRun"] is False
    assert stored_reviews[0]["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    # The namespaceSelector kept the webhook away from the other namespace.
    assert unselected.pod is not None
    assert ANNOTATION not in (unselected.pod["metadata"].get("annotations") or {})
    assert all(review["request"]["namespace"] != other_namespace for review in annotating_webhook.reviews)


def test_untrusted_ca_bundle_makes_the_apiserver_refuse_the_call(
    apiserver: Cluster, annotating_webhook: AnnotatingWebhook, webhook_namespace: str
) -> None:
    stranger_ca = CertificateAuthority("not-the-webhook-ca")
    config = mutating_webhook_configuration(
        f"untrusted-{webhook_namespace}",
        webhook_url(annotating_webhook.port),
        stranger_ca.cert_pem,
        namespace_selector={"matchLabels": {"e2e.wkw.local/webhook-test": webhook_namespace}},
        failure_policy="Fail",
    )

    def refused_over_tls(result: ProbeResult) -> bool:
        return result.pod is None and "x509" in result.error_body

    with apiserver.api_client() as api_client:
        name = register_mutating_webhook(api_client, config)
        try:
            refusal = wait_for_webhook(api_client, webhook_namespace, refused_over_tls)
        finally:
            delete_mutating_webhook(api_client, name)

    assert refusal.error_status == 500
    assert f"untrusted-{webhook_namespace}.e2e.wkw.local" in refusal.error_body
    assert annotating_webhook.reviews == []  # the TLS handshake failed before any review was sent


def rendered_chart_configuration(name: str, namespace_label: str) -> dict[str, Any]:
    """The shape a Helm chart renders: a Service-backed clientConfig with a placeholder caBundle."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "wandb-kfp-webhook"}},
        "webhooks": [
            {
                "name": "pods.wandb-kfp-webhook.wandb.ai",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 5,
                "clientConfig": {
                    "service": {
                        "name": "wandb-kfp-webhook",
                        "namespace": "wandb",
                        "path": "/chart-mutate",
                        "port": 443,
                    },
                    "caBundle": "",
                },
                "namespaceSelector": {"matchLabels": {"e2e.wkw.local/webhook-test": namespace_label}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }


def test_point_at_local_rewrites_only_the_client_config() -> None:
    rendered = rendered_chart_configuration("chart", "x")
    local = point_at_local(rendered, "https://127.0.0.1:8443/", b"PEM")

    assert local["webhooks"][0]["clientConfig"] == {
        "url": "https://127.0.0.1:8443/chart-mutate",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert {key: value for key, value in local["webhooks"][0].items() if key != "clientConfig"} == {
        key: value for key, value in rendered["webhooks"][0].items() if key != "clientConfig"
    }
    assert rendered["webhooks"][0]["clientConfig"]["service"]["path"] == "/chart-mutate"  # input untouched


def test_rendered_configuration_applied_with_local_client_config(
    apiserver: Cluster, annotating_webhook: AnnotatingWebhook, webhook_namespace: str
) -> None:
    rendered = rendered_chart_configuration(f"chart-{webhook_namespace}", webhook_namespace)
    base_url = f"https://127.0.0.1:{annotating_webhook.port}"
    with apiserver.api_client() as api_client:
        name = apply_rendered_webhook(api_client, rendered, base_url, annotating_webhook.ca.cert_pem)
        try:
            seen = wait_for_webhook(api_client, webhook_namespace, annotation_seen(ANNOTATION, "/chart-mutate"))
            registered = as_dict(k8s.AdmissionregistrationV1Api(api_client).read_mutating_webhook_configuration(name))
        finally:
            delete_mutating_webhook(api_client, name)

    assert seen.pod is not None and seen.pod["metadata"]["annotations"][ANNOTATION] == "/chart-mutate"
    assert registered["webhooks"][0]["clientConfig"]["url"] == f"{base_url}/chart-mutate"
    assert "service" not in registered["webhooks"][0]["clientConfig"]
    assert registered["webhooks"][0]["failurePolicy"] == "Ignore"
    assert annotating_webhook.paths and set(annotating_webhook.paths) == {"/chart-mutate"}
    assert all(review["request"]["dryRun"] is True for review in annotating_webhook.reviews)
