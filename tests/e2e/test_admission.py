"""The webhook as deployed, called by a real kube-apiserver over TLS; assertions on the Pods it stored.

The MutatingWebhookConfiguration, ConfigMap, ServiceAccount and RBAC come from `helm template` of the
chart; only the webhooks' clientConfig is pointed at the server process on loopback. The server is started
with the Deployment's own command and arguments, and talks to the apiserver as the chart's ServiceAccount.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.chart import render
from tests.e2e.cluster import Cluster, as_dict
from tests.e2e.webhooks import (
    annotation_seen,
    apply_rendered_webhook,
    delete_mutating_webhook,
    dry_run_pod_create,
    mutating_webhook_configuration,
    register_mutating_webhook,
    wait_for_webhook,
)
from tests.fixtures import pods as fixture_pods
from tests.integration.test_tls_reload import SecretVolume, peer_serial
from tests.support.servers import DevCerts, RunningServer, find_free_port, make_dev_certs, start_server, stop_server
from webhook import certs
from webhook import config as cfg
from webhook.shim import contract

pytestmark = pytest.mark.e2e

RELEASE_NAMESPACE = render.NAMESPACE
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

    def start(self) -> RunningServer:
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "WANDB_KFP_WEBHOOK_OWN_NAMESPACE": RELEASE_NAMESPACE,
            "WANDB_KFP_WEBHOOK_HOST": "127.0.0.1",
            "WANDB_KFP_WEBHOOK_PORT": str(self.port),
        }
        self.server = start_server(
            self.work_dir,
            "webhook.app:create_app",
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


@pytest.fixture(scope="module")
def rendered(e2e_binaries: Any) -> render.Rendered:
    if e2e_binaries.helm is None:
        pytest.skip("helm is not available")
    return render.template(e2e_binaries.helm, "default")


@pytest.fixture(scope="module")
def deployed(
    apiserver: Cluster, rendered: render.Rendered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedWebhook]:
    work_dir = tmp_path_factory.mktemp("deployed-webhook")
    if RELEASE_NAMESPACE not in namespaces_of(apiserver):
        apiserver.create_namespace(RELEASE_NAMESPACE)
    manifests = [obj for obj in rendered.objects if obj["kind"] not in NOT_APPLIED]
    apiserver.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(manifests))
    token = apiserver.service_account_token(RELEASE_NAMESPACE, chart_service_account(rendered))
    kubeconfig = apiserver.kubeconfig_for_token(token, "wandb-kfp-webhook")
    config_file = work_dir / "config.yaml"
    config_file.write_text(rendered.one("ConfigMap")["data"]["config.yaml"])
    dev_certs = make_dev_certs(work_dir / "certs")
    volume = SecretVolume(work_dir / "tls")
    volume.swap_symlink(dev_certs.cert_file.read_bytes(), dev_certs.key_file.read_bytes())
    webhook = DeployedWebhook(apiserver, rendered, work_dir, dev_certs, volume, kubeconfig, config_file)
    webhook.start()
    with admin(apiserver) as api_client:
        webhook.webhook_config_name = apply_rendered_webhook(
            api_client,
            rendered.one("MutatingWebhookConfiguration"),
            f"https://127.0.0.1:{webhook.port}",
            dev_certs.ca_file.read_bytes(),
        )
        namespace = new_namespace(apiserver, enabled=True)
        wait_for_webhook(api_client, namespace, annotation_seen(cfg.INJECTED_ANNOTATION), labels={ARGO_LABEL: "probe"})
    try:
        yield webhook
    finally:
        webhook.stop()
        with admin(apiserver) as api_client:
            delete_mutating_webhook(api_client, webhook.webhook_config_name)


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
    all_labels = dict(labels or {})
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
    pairs = [certs.generate_serving_cert(ca_pem, ca_key, ["localhost"], ["127.0.0.1"]) for _ in range(3)]
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
    while served != certs.cert_serial(pairs[-1][0]) and time.monotonic() < deadline:
        connection = deployed.server.connection()
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        served = peer_serial(connection)
        connection.close()
    assert served == certs.cert_serial(pairs[-1][0]), "new handshakes present the rotated certificate"


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
    assert "injected uid=" in logs
    for leak in ("PRIVATE KEY", "secretKeyRef", "component_spec", "executor_input", "Traceback"):
        assert leak not in logs
