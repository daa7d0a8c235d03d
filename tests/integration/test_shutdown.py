"""Stopping the real `wandb-kfp-webhook serve`: what a rollout or a node drain does to a replica.

Found by the node tier (tests/node/test_webhook_journey.py): during `helm upgrade` the apiserver's calls
failed in three ways while the old pods stopped (a closed port, a kept-alive connection closed under a
request, and a 500 once one worker had exited), and with failurePolicy Ignore each failure is a pod
created without W&B. These tests pin the two server changes that fixed it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review
from tests.support.servers import NO_CLUSTER_ENV as NO_CLUSTER
from tests.support.servers import SERVE_COMMAND as SERVE
from tests.support.servers import RunningServer

DRAIN_SECONDS = 6


def _review_body(uid: str) -> bytes:
    pod = fixture_pods.load_pod(fixture_pods.load_index()[0]["name"])
    return json.dumps(admission_review(pod, uid)).encode()


def _post(connection: http.client.HTTPConnection, uid: str) -> http.client.HTTPResponse:
    connection.request("POST", "/mutate", body=_review_body(uid), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response


def _children(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def _wait(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout  # bounds a wait on a shared machine; asserts nothing about speed
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_that_exits_leaves_the_other_workers_serving(server_process, dev_certs) -> None:  # type: ignore[no-untyped-def]
    """gunicorn forks workers inside `serve`, so a worker that exited used to unwind through the command's
    clean-up and delete the metrics directory every worker writes to: the others answered 500 from then on."""
    server: RunningServer = server_process(
        "webhook.server.app:create_app", dev_certs, NO_CLUSTER, command=SERVE, ready_path="/readyz"
    )
    master = server.process.pid
    _wait(lambda: len(_children(master)) == 2, "two workers")
    first = _children(master)
    os.kill(sorted(first)[0], signal.SIGTERM)  # a graceful exit; gunicorn boots a replacement
    _wait(lambda: len(_children(master)) == 2 and _children(master) != first, "a replacement worker")
    statuses = []
    for number in range(30):  # fresh connections reach both workers, the replacement included
        connection = server.connection()
        try:
            statuses.append(_post(connection, f"after-exit-{number}").status)
        finally:
            connection.close()
    status, _, metrics = server.request("GET", "/metrics")
    assert statuses == [200] * 30, server.logs()[-3000:]
    assert status == 200 and b"wandb_kfp_webhook_admission_requests_total" in metrics
    assert "request failed inside the app" not in server.logs()


@pytest.mark.timeout(120)
def test_sigterm_drains_kept_alive_and_new_connections_before_stopping(server_process, dev_certs) -> None:  # type: ignore[no-untyped-def]
    server: RunningServer = server_process(
        "webhook.server.app:create_app",
        dev_certs,
        {**NO_CLUSTER, "WANDB_KFP_WEBHOOK_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS)},
        command=SERVE,
        ready_path="/readyz",
    )
    kept = server.connection()
    first = _post(kept, "before")
    assert first.status == 200 and not first.will_close, "a kept-alive connection, as the apiserver holds"

    os.kill(server.process.pid, signal.SIGTERM)  # what the kubelet sends the container's PID 1
    _wait(lambda: server.logs().count("draining connections") == 2, "both workers draining")

    # The kept-alive connection is still answered, and told to go: the next call opens a new connection.
    answer = _post(kept, "kept-alive-while-draining")
    assert answer.status == 200 and answer.will_close and answer.getheader("Connection") == "close"
    kept.close()
    # A new connection (kube-proxy may still route one here) is accepted and answered the same way.
    fresh = server.connection()
    try:
        answer = _post(fresh, "new-while-draining")
        assert answer.status == 200 and answer.getheader("Connection") == "close"
    finally:
        fresh.close()
    assert server.process.poll() is None, "still serving during the drain"

    assert server.process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        refused = server.connection(timeout_s=5)
        refused.request("GET", "/healthz")
    assert "request failed inside the app" not in server.logs()
