"""The webhook as deployed (tests/e2e/deployment.py), called by a real kube-apiserver over TLS;
assertions on the Pods the apiserver stored."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.deployment import (
    ARGO_LABEL,
    RELEASE_NAMESPACE,
    admin,
    create,
    first_of,
    fixture_pod,
    injected_kind,
    main_env,
    new_namespace,
    read,
)
from tests.e2e.webhooks import (
    annotation_seen,
    delete_mutating_webhook,
    dry_run_pod_create,
    mutating_webhook_configuration,
    register_mutating_webhook,
    wait_for_webhook,
)
from tests.support import x509_facts
from tests.support.servers import DevCerts, peer_serial
from webhook.admission import config as cfg
from webhook.certificates import generate
from webhook.shim import contract

# --- selection, as the apiserver applies it ------------------------------------------------------------


@pytest.mark.parametrize("kind", [contract.KIND_V1_COMPONENT, contract.KIND_V2_EXECUTOR])
def test_labelled_namespace_python_component_pods_are_mutated_and_stored(deployed, apiserver, kind):
    namespace = new_namespace(apiserver, enabled=True)
    pod = fixture_pod(first_of(kind), namespace)
    create(apiserver, pod)
    stored = read(apiserver, namespace, pod["metadata"]["name"])
    assert injected_kind(stored) == kind
    assert stored["spec"]["initContainers"][-1]["name"] == contract.INIT_CONTAINER_NAME
    assert (
        stored["spec"]["initContainers"][-1]["image"]
        == deployed.rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    ), "the init container runs the chart's own image"
    env = main_env(stored)
    assert env[contract.WANDB_API_KEY]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert env["PYTHONPATH"]["value"].startswith(contract.bootstrap_dir())
    assert env[contract.WANDB_RUN_GROUP]["value"] == stored["metadata"]["labels"]["pipeline/runid"]
    assert stored["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION] == env[contract.WANDB_RUN_ID]["value"]
    volume = next(v for v in stored["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME)
    assert volume["emptyDir"]["sizeLimit"]


def test_unlabelled_namespace_is_untouched(deployed, apiserver):
    namespace = new_namespace(apiserver)
    pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace)
    stored = create(apiserver, pod)
    assert injected_kind(stored) is None
    assert contract.WANDB_PROJECT not in main_env(stored)


def test_pod_label_opts_in_without_namespace_label(deployed, apiserver):
    namespace = new_namespace(apiserver)
    pod = fixture_pod(first_of(contract.KIND_V1_COMPONENT), namespace, {cfg.INJECT_LABEL: "true"})
    assert injected_kind(create(apiserver, pod)) == contract.KIND_V1_COMPONENT


def test_opt_out_label_wins_in_a_labelled_namespace(deployed, apiserver):
    namespace = new_namespace(apiserver, enabled=True)
    pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace, {cfg.INJECT_LABEL: "false"})
    assert injected_kind(create(apiserver, pod)) is None


@pytest.mark.parametrize("kind", [contract.KIND_V2_DRIVER, contract.KIND_CACHE_HIT])
def test_drivers_and_cache_hits_are_untouched(deployed, apiserver, kind):
    namespace = new_namespace(apiserver, enabled=True)
    pod = fixture_pod(first_of(kind), namespace)
    stored = create(apiserver, pod)
    assert injected_kind(stored) is None
    assert [c["name"] for c in stored["spec"].get("initContainers") or []] == [
        c["name"] for c in pod["spec"].get("initContainers") or []
    ]


def test_other_argo_pods_get_env_only(deployed, apiserver):
    namespace = new_namespace(apiserver, enabled=True)
    stored = create(apiserver, fixture_pod(first_of(contract.KIND_ARGO), namespace))
    assert injected_kind(stored) == contract.KIND_ARGO
    assert contract.WANDB_PROJECT in main_env(stored) and "PYTHONPATH" not in main_env(stored)


def test_release_namespace_is_never_injected(deployed, apiserver):
    pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), RELEASE_NAMESPACE, {cfg.INJECT_LABEL: "true"})
    with admin(apiserver) as api_client:
        for account in ("default-editor", "pipeline-runner"):
            try:
                k8s.CoreV1Api(api_client).create_namespaced_service_account(
                    RELEASE_NAMESPACE, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=account))
                )
            except ApiException as error:
                assert error.status == 409
    assert injected_kind(create(apiserver, pod, dry_run=True)) is None


# --- configuration from the namespace, live -------------------------------------------------------------


def test_namespace_annotations_set_project_and_entity_and_later_changes_apply(deployed, apiserver):
    namespace = new_namespace(
        apiserver, enabled=True, annotations={"wandb.ai/project": "team-proj", "wandb.ai/entity": "team-ent"}
    )
    env = main_env(create(apiserver, fixture_pod(first_of(contract.KIND_V1_COMPONENT), namespace)))
    assert (env[contract.WANDB_PROJECT]["value"], env[contract.WANDB_ENTITY]["value"]) == ("team-proj", "team-ent")

    apiserver.kubectl("annotate", "namespace", namespace, "--overwrite", "wandb.ai/project=renamed")
    deadline = time.monotonic() + 60  # the watch delivers the change; bound the wait, assert no speed
    project = None
    while time.monotonic() < deadline and project != "renamed":
        pod = fixture_pod(first_of(contract.KIND_V1_COMPONENT), namespace)
        project = main_env(create(apiserver, pod, dry_run=True))[contract.WANDB_PROJECT]["value"]
        time.sleep(0.2)
    assert project == "renamed"


def test_invalid_namespace_annotation_is_a_warning_and_the_pod_still_mutated(deployed, apiserver):
    namespace = new_namespace(apiserver, enabled=True, annotations={"wandb.ai/init-timeout": "forever"})
    pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace)
    result = apiserver.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", input_text=json.dumps(pod))
    assert "wandb.ai/init-timeout" in result.stderr, "kubectl shows the AdmissionResponse warning"
    assert injected_kind(json.loads(result.stdout)) == contract.KIND_V2_EXECUTOR


def test_server_side_dry_run_is_mutated_and_stores_nothing(deployed, apiserver):
    namespace = new_namespace(apiserver, enabled=True)
    pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace)
    assert injected_kind(create(apiserver, pod, dry_run=True)) == contract.KIND_V2_EXECUTOR
    with admin(apiserver) as api_client:
        assert k8s.CoreV1Api(api_client).list_namespaced_pod(namespace).items == []


def test_init_container_passes_pod_security_restricted(deployed, apiserver):
    """With the restricted profile in warn mode, the apiserver names every violating container."""
    namespace = new_namespace(apiserver, enabled=True, labels={"pod-security.kubernetes.io/warn": "restricted"})
    pod = fixture_pod(first_of(contract.KIND_V1_COMPONENT), namespace)
    result = apiserver.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", input_text=json.dumps(pod))
    assert injected_kind(json.loads(result.stdout)) == contract.KIND_V1_COMPONENT
    assert "restricted" in result.stderr, "the fixture's own containers are not restricted, so warnings must appear"
    assert contract.INIT_CONTAINER_NAME not in result.stderr


# --- reinvocation -------------------------------------------------------------------------------------------


class EnvAddingWebhook:
    """A second mutating webhook (reinvocationPolicy IfNeeded) that adds one env var to every container."""

    VARIABLE = "SECOND_WEBHOOK"

    def __init__(self, dev_certs: DevCerts) -> None:
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls += 1
                pod = review["request"]["object"]
                patch = []
                for index, container in enumerate(pod["spec"]["containers"]):
                    names = [var["name"] for var in container.get("env") or []]
                    if outer.VARIABLE in names:
                        continue
                    variable = {"name": outer.VARIABLE, "value": "1"}
                    if container.get("env") is None:
                        patch.append({"op": "add", "path": f"/spec/containers/{index}/env", "value": [variable]})
                    else:
                        patch.append({"op": "add", "path": f"/spec/containers/{index}/env/-", "value": variable})
                response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
                if patch:
                    response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
                body = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(dev_certs.cert_file, dev_certs.key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_reinvocation_with_a_second_mutating_webhook_stays_idempotent(deployed, apiserver, tmp_path):
    namespace = new_namespace(apiserver, enabled=True, labels={"second-webhook": "on"})
    second = EnvAddingWebhook(deployed.dev_certs)
    configuration = mutating_webhook_configuration(
        "second-mutator",
        f"https://127.0.0.1:{second.port}/mutate",
        deployed.dev_certs.ca_file.read_bytes(),
        namespace_selector={"matchLabels": {"second-webhook": "on"}},
        failure_policy="Fail",
    )
    configuration["webhooks"][0]["reinvocationPolicy"] = "IfNeeded"
    try:
        with admin(apiserver) as api_client:
            register_mutating_webhook(api_client, configuration)
            seen = wait_for_webhook(
                api_client,
                namespace,
                lambda result: (
                    bool(result.pod)
                    and any(
                        v["name"] == EnvAddingWebhook.VARIABLE
                        for v in result.pod["spec"]["containers"][0].get("env") or []
                    )
                    and injected_kind(result.pod) is not None
                ),
                labels={ARGO_LABEL: "probe"},
            )
            assert seen.pod is not None
        stored = create(apiserver, fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace))
        assert injected_kind(stored) == contract.KIND_V2_EXECUTOR
        names = [var["name"] for var in next(c for c in stored["spec"]["containers"] if c["name"] == "main")["env"]]
        assert len(names) == len(set(names)), "no variable twice after reinvocation"
        assert EnvAddingWebhook.VARIABLE in names and contract.WANDB_RUN_ID in names
        init = [c["name"] for c in stored["spec"]["initContainers"]]
        assert init.count(contract.INIT_CONTAINER_NAME) == 1
        volumes = [v["name"] for v in stored["spec"]["volumes"]]
        assert volumes.count(contract.VOLUME_NAME) == 1
    finally:
        with admin(apiserver) as api_client:
            delete_mutating_webhook(api_client, "second-mutator")
        second.close()


# --- the chart's identity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "allowed"),
    [
        ("list", "namespaces", None, True),
        ("watch", "namespaces", None, True),
        ("create", "pods", "default", False),
        ("get", "secrets", "default", False),
        ("list", "secrets", RELEASE_NAMESPACE, False),
        ("delete", "namespaces", None, False),
        ("patch", "mutatingwebhookconfigurations/some-other-webhook", None, False),
        ("create", "mutatingwebhookconfigurations", None, False),
    ],
)
def test_chart_service_account_can_do_what_it_needs_and_no_more(
    deployed, apiserver, verb, resource, namespace, allowed
):
    args = ["auth", "can-i", verb, resource]
    args += ["--namespace", namespace] if namespace else []
    result = apiserver.kubectl(*args, check=False, kubeconfig=deployed.kubeconfig)
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr


# --- failure and rotation ---------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_certificates_rotated_while_pods_are_created_fail_no_admission(deployed, apiserver):
    """Every pod created while the serving certificate is swapped (kubelet-style) is still mutated:
    with failurePolicy Ignore a failed call would show up as an unmutated pod."""
    namespace = new_namespace(apiserver, enabled=True)
    ca_pem, ca_key = deployed.dev_certs.ca_file.read_bytes(), deployed.dev_certs.ca_key_file.read_bytes()
    pairs = [generate.generate_serving_cert(ca_pem, ca_key, ["localhost"], ["127.0.0.1"]) for _ in range(3)]
    stop = threading.Event()
    results: list[str | None] = []
    failures: list[str] = []

    def create_continuously() -> None:
        while not stop.is_set():
            try:
                results.append(
                    injected_kind(create(apiserver, fixture_pod(first_of(contract.KIND_V1_COMPONENT), namespace)))
                )
            except Exception as problem:  # every failure is kept and reported
                failures.append(repr(problem))

    creators = [threading.Thread(target=create_continuously, daemon=True) for _ in range(2)]
    for thread in creators:
        thread.start()
    try:
        for cert_pem, key_pem in pairs:
            before = len(results)
            deployed.volume.swap_symlink(cert_pem, key_pem)
            deadline = time.monotonic() + 60
            while len(results) < before + 5 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        stop.set()
        for thread in creators:
            thread.join(timeout=120)
    assert failures == []
    assert len(results) >= 15
    assert set(results) == {contract.KIND_V1_COMPONENT}, "a pod was admitted without the webhook"
    assert deployed.server is not None
    served = None
    deadline = time.monotonic() + 60  # bounds the wait for the reload interval; asserts no speed
    while served != x509_facts.cert_serial(pairs[-1][0]) and time.monotonic() < deadline:
        connection = deployed.server.connection()
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        served = peer_serial(connection)
        connection.close()
    assert served == x509_facts.cert_serial(pairs[-1][0]), "new handshakes present the rotated certificate"


@pytest.mark.timeout(300)
def test_webhook_killed_pods_are_still_created_unmutated(deployed, apiserver):
    """failurePolicy Ignore: with the server gone, pod creation goes on (after the call fails fast)."""
    namespace = new_namespace(apiserver, enabled=True)
    deployed.stop()
    try:
        pod = fixture_pod(first_of(contract.KIND_V2_EXECUTOR), namespace)
        stored = create(apiserver, pod)
        assert stored["metadata"]["name"] == pod["metadata"]["name"]
        assert injected_kind(stored) is None
    finally:
        deployed.start()
    with admin(apiserver) as api_client:
        wait_for_webhook(api_client, namespace, annotation_seen(cfg.INJECTED_ANNOTATION), labels={ARGO_LABEL: "probe"})


def test_dry_run_probe_pods_show_env_only_for_plain_argo_pods(deployed, apiserver):
    namespace = new_namespace(apiserver, enabled=True)
    with admin(apiserver) as api_client:
        result = dry_run_pod_create(
            api_client,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "plain", "namespace": namespace, "labels": {ARGO_LABEL: "wf"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "busybox", "env": [{"name": "WANDB_PROJECT", "value": "mine"}]}
                    ]
                },
            },
        )
    assert result.pod is not None and injected_kind(result.pod) == contract.KIND_ARGO
    assert main_env(result.pod)[contract.WANDB_PROJECT]["value"] == "mine", "the user's value is kept"


def test_server_logs_say_what_was_injected_and_nothing_of_the_pods(deployed):
    assert deployed.server is not None
    logs = deployed.server.logs()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert len(entries) == len([line for line in logs.splitlines() if line.strip()]), "every line is one JSON object"
    injected = [entry for entry in entries if entry["message"] == "injected"]
    assert injected and all({"uid", "kind", "reason"} <= set(entry) for entry in injected)
    for leak in ("PRIVATE KEY", "secretKeyRef", "component_spec", "executor_input", "Traceback"):
        assert leak not in logs
