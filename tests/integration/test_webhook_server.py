"""The real `wandb-kfp-webhook serve` process over real TLS on loopback: the wire, workers, metrics, dev mode."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time

import jsonpatch
import pytest

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review
from tests.support.servers import NO_CLUSTER_ENV, REPO_ROOT, SERVE_COMMAND, client_context, find_free_port
from webhook.admission import config as cfg
from webhook.shim import contract

CLI = [sys.executable, "-m", "webhook.cli"]
SERVE = SERVE_COMMAND
NO_CLUSTER = NO_CLUSTER_ENV


def review_bytes(name, uid):
    pod = fixture_pods.load_pod(name)
    return pod, json.dumps(admission_review(pod, uid)).encode()


@pytest.fixture
def webhook_server(server_process, dev_certs):
    return server_process("webhook.server.app:create_app", dev_certs, NO_CLUSTER, command=SERVE, ready_path="/readyz")


def test_mutate_over_tls_returns_an_applicable_patch(webhook_server):
    name = fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR)[0]
    pod, body = review_bytes(name, "uid-tls")
    status, headers, payload = webhook_server.request("POST", "/mutate", body, {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    response = json.loads(payload)["response"]
    assert response["uid"] == "uid-tls" and response["allowed"] is True
    mutated = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(response["patch"])))
    assert mutated["metadata"]["annotations"][cfg.INJECTED_ANNOTATION] == contract.KIND_V2_EXECUTOR


def test_malformed_review_is_a_400_over_the_wire(webhook_server):
    status, _, payload = webhook_server.request("POST", "/mutate", b"{broken", {"Content-Type": "application/json"})
    assert status == 400 and "JSON" in json.loads(payload)["error"]


def test_keep_alive_serves_many_reviews_on_one_connection_and_metrics_sum_all_workers(webhook_server):
    names = [entry["name"] for entry in fixture_pods.load_index()]
    connection = webhook_server.connection()
    sent = 60
    outcomes = {"injected": 0, "skipped": 0}
    try:
        for number in range(sent):
            _pod, body = review_bytes(names[number % len(names)], f"uid-{number}")
            connection.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())["response"]
            assert response.status == 200 and answer["uid"] == f"uid-{number}"
            outcomes["injected" if "patch" in answer else "skipped"] += 1
        assert connection.sock is not None, "the server closed a keep-alive connection"
    finally:
        connection.close()
    # A fresh connection may land on either worker; each answers with every worker's counts.
    for _ in range(4):
        _, _, metrics = webhook_server.request("GET", "/metrics")
        text = metrics.decode()
        for outcome, count in outcomes.items():
            assert f'wandb_kfp_webhook_admission_requests_total{{outcome="{outcome}"}} {float(count)}' in text


def test_no_cluster_access_is_said_once_at_start(webhook_server, server_process, dev_certs):
    server = server_process(
        "webhook.server.app:create_app",
        dev_certs,
        {"WANDB_KFP_WEBHOOK_PIPELINES": "v2-*", "KUBECONFIG": "/nonexistent"},
        command=SERVE,
        ready_path="/readyz",
    )
    assert server.logs().count("no Kubernetes API access") == 1


def test_dev_mode_writes_certificates_and_serves_them(tmp_path):
    """`make run`: first start writes a CA and a localhost cert into ./certs and serves with them."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    port = find_free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "WANDB_KFP_WEBHOOK_WATCH_NAMESPACES": "false"}
    process = subprocess.Popen(
        [*CLI, "serve", "--dev", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ca_file = workdir / "certs" / "ca.crt"
        status = None
        deadline = time.monotonic() + 90  # bounds the wait on a shared machine; asserts nothing about speed
        while status is None and time.monotonic() < deadline and process.poll() is None:
            try:
                connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=client_context(ca_file))
                connection.request("GET", "/healthz")
                status = connection.getresponse().status
            except (OSError, ssl.SSLError):
                time.sleep(0.2)
        assert status == 200
        assert sorted(path.name for path in (workdir / "certs").iterdir()) == [
            "ca.crt",
            "ca.key",
            "tls.crt",
            "tls.key",
        ]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert f"https://127.0.0.1:{port}" in output and "curl --cacert certs/ca.crt" in output


@pytest.mark.timeout(300)
def test_certificate_swap_while_pods_are_reviewed_fails_no_review(server_process, dev_certs, tmp_path):
    """The webhook as `serve` runs it, rotated like a kubelet Secret volume while reviews keep coming."""
    import threading
    from dataclasses import replace

    from tests.support import x509_facts
    from tests.support.servers import SecretVolume, peer_serial
    from webhook.certificates import generate

    ca_pem, ca_key_pem = dev_certs.ca_file.read_bytes(), dev_certs.ca_key_file.read_bytes()
    pairs = [generate.generate_serving_cert(ca_pem, ca_key_pem, ["localhost"], ["127.0.0.1"]) for _ in range(3)]
    volume = SecretVolume(tmp_path / "secret-volume")
    volume.swap_symlink(*pairs[0])
    server = server_process(
        "webhook.server.app:create_app",
        replace(dev_certs, cert_file=volume.cert_file, key_file=volume.key_file),
        NO_CLUSTER,
        command=SERVE,
        ready_path="/readyz",
    )
    name = fixture_pods.fixtures_of_kind(contract.KIND_V2_EXECUTOR)[0]  # opted in by the v2-* pattern
    stop, lock = threading.Event(), threading.Lock()
    failures, serials, answered = [], set(), [0]

    def review_continuously():
        while not stop.is_set():
            connection = server.connection()
            try:
                connection.request(
                    "POST", "/mutate", body=review_bytes(name, "swap")[1], headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                answer = json.loads(response.read())["response"]
                assert response.status == 200 and "patch" in answer
                with lock:
                    answered[0] += 1
                    serials.add(peer_serial(connection))
            except Exception as problem:  # every failure is kept and reported
                with lock:
                    failures.append(repr(problem))
            finally:
                connection.close()

    threads = [threading.Thread(target=review_continuously, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for cert_pem, key_pem in pairs[1:]:
            volume.swap_symlink(cert_pem, key_pem)
            wanted = x509_facts.cert_serial(cert_pem)
            deadline = time.monotonic() + 60
            while wanted not in serials and time.monotonic() < deadline:
                time.sleep(0.1)
            assert wanted in serials, "the rotated certificate was never served"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert answered[0] >= 2 * len(pairs), "too few reviews to prove anything"
    assert serials == {x509_facts.cert_serial(cert_pem) for cert_pem, _ in pairs}
