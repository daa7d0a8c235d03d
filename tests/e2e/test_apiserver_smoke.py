"""Proves the e2e cluster fixture: real admission, real RBAC, matching kubectl, and clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.e2e.binaries import KUBERNETES_VERSION, Binaries
from tests.e2e.cluster import (
    Cluster,
    ClusterStartError,
    as_dict,
    process_exists,
    processes_in_group,
    remove_stale_temp_dirs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GONE_DEADLINE_SECONDS = 60.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_until_gone(pids: list[int]) -> list[int]:
    """Poll until none of `pids` is alive (reaping is asynchronous); return those still alive."""
    deadline = time.monotonic() + GONE_DEADLINE_SECONDS
    alive = [pid for pid in pids if process_exists(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if process_exists(pid)]
    return alive


def test_admin_creates_namespace_and_pod_and_reads_them_back(apiserver: Cluster) -> None:
    namespace = unique("smoke")
    apiserver.create_namespace(namespace, labels={"team": "ml"}, annotations={"note": "e2e"})
    pod: dict[str, Any] = {
        "metadata": {"name": "hello", "labels": {"app": "hello"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "1"]}]},
    }
    with apiserver.api_client() as api_client:
        core = k8s.CoreV1Api(api_client)
        core.create_namespaced_pod(namespace, k8s.V1Pod.model_validate(pod))
        stored = as_dict(core.read_namespaced_pod("hello", namespace))
        stored_namespace = as_dict(core.read_namespace(namespace))

    assert stored["metadata"]["labels"] == {"app": "hello"}
    assert stored["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert stored["status"]["phase"] == "Pending"  # no scheduler or kubelet: stored, never run
    # The ServiceAccount admission plugin ran against the account create_namespace made.
    assert stored["spec"]["serviceAccountName"] == "default"
    assert any(volume["name"].startswith("kube-api-access-") for volume in stored["spec"]["volumes"])
    assert stored_namespace["metadata"]["labels"]["team"] == "ml"
    assert stored_namespace["metadata"]["annotations"] == {"note": "e2e"}


def test_kubectl_version_matches_server(apiserver: Cluster) -> None:
    reported = json.loads(apiserver.kubectl("version", "-o", "json").stdout)

    client_version = reported["clientVersion"]["gitVersion"]
    server_version = reported["serverVersion"]["gitVersion"]
    assert client_version == server_version == apiserver.versions["server"]
    assert apiserver.versions["kube-apiserver"] == server_version
    if not os.environ.get("KUBEBUILDER_ASSETS"):
        assert server_version == KUBERNETES_VERSION


def test_service_account_is_denied_what_rbac_does_not_grant(apiserver: Cluster) -> None:
    namespace = unique("rbac")
    apiserver.create_namespace(namespace)
    token = apiserver.service_account_token(namespace)
    sa_kubeconfig = apiserver.kubeconfig_for_token(token, f"sa-{namespace}")
    identity = f"system:serviceaccount:{namespace}:default"

    whoami = json.loads(apiserver.kubectl("auth", "whoami", "-o", "json", kubeconfig=sa_kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == identity

    denied = apiserver.kubectl(
        "auth", "can-i", "create", "pods", "-n", namespace, kubeconfig=sa_kubeconfig, check=False
    )
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    with apiserver.api_client(token) as sa_client, pytest.raises(ApiException) as refused:
        k8s.CoreV1Api(sa_client).list_namespaced_secret(namespace)
    assert refused.value.status == 403
    assert identity in str(refused.value.body)

    # The same question asked by the admin impersonating the account agrees.
    impersonated = apiserver.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, f"--as={identity}", check=False
    )
    assert impersonated.stdout.strip() == "no"

    # Granting exactly that permission flips the answer, so the "no" above came from RBAC.
    apiserver.kubectl("create", "role", "pod-creator", "--verb=create", "--resource=pods", "-n", namespace)
    apiserver.kubectl(
        "create", "rolebinding", "pod-creator", "--role=pod-creator", f"--serviceaccount={namespace}:default",
        "-n", namespace,
    )  # fmt: skip
    allowed = apiserver.kubectl("auth", "can-i", "create", "pods", "-n", namespace, kubeconfig=sa_kubeconfig)
    assert allowed.stdout.strip() == "yes"
    still_denied = apiserver.kubectl(
        "auth", "can-i", "create", "pods", "-n", "default", kubeconfig=sa_kubeconfig, check=False
    )
    assert still_denied.stdout.strip() == "no"


def test_a_second_cluster_stops_without_leftovers(e2e_binaries: Binaries, apiserver: Cluster) -> None:
    second = Cluster(e2e_binaries).start()
    pids, temp_dir = second.pids, second.temp_dir
    try:
        assert second.url != apiserver.url
        assert len(pids) == 2 and all(process_exists(pid) for pid in pids)
        assert temp_dir.is_dir() and (temp_dir / "kube-apiserver.log").exists()
        second.create_namespace("only-in-second")
        namespaces = second.kubectl("get", "namespaces", "-o", "name").stdout.split()
        assert "namespace/only-in-second" in namespaces
        assert "namespace/only-in-second" not in apiserver.kubectl("get", "namespaces", "-o", "name").stdout.split()
    finally:
        second.stop()

    assert not any(process_exists(pid) for pid in pids)
    assert all(processes_in_group(pid) == [] for pid in pids)
    assert not temp_dir.exists()


def test_failed_start_shows_the_log_and_cleans_up(e2e_binaries: Binaries) -> None:
    broken = Cluster(e2e_binaries, extra_apiserver_args=("--no-such-flag-wkw",))
    with pytest.raises(ClusterStartError) as failure:
        broken.start()

    message = str(failure.value)
    assert "kube-apiserver exited" in message
    assert "no-such-flag-wkw" in message  # the apiserver's own complaint, from its log tail
    assert broken.pids == []
    assert not broken.temp_dir.exists()


def _spawn_owner(ending: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a cluster in a child Python that then ends abruptly; return it and what it reported."""
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        from tests.e2e.binaries import ensure_binaries
        from tests.e2e.cluster import Cluster
        cluster = Cluster(ensure_binaries(build=False, with_helm=False)).start()
        print(json.dumps({{"pids": cluster.pids, "temp_dir": str(cluster.temp_dir)}}), flush=True)
        {ending}
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert owner.stdout is not None
    first_line = owner.stdout.readline()
    if not first_line:
        owner.wait()
        pytest.fail(f"the owner process did not start a cluster: {owner.stderr.read() if owner.stderr else ''}")
    return owner, json.loads(first_line)


@pytest.mark.usefixtures("e2e_binaries")
def test_keyboard_interrupt_leaves_nothing_behind() -> None:
    owner, reported = _spawn_owner("raise KeyboardInterrupt")
    owner.communicate()
    pids = [int(pid) for pid in reported["pids"]]

    assert owner.returncode != 0
    assert wait_until_gone(pids) == []
    assert not Path(str(reported["temp_dir"])).exists()


@pytest.mark.usefixtures("e2e_binaries")
def test_killed_owner_takes_its_servers_and_temp_dir_is_reclaimed() -> None:
    owner, reported = _spawn_owner("signal.pause()")
    pids = [int(pid) for pid in reported["pids"]]
    owner.send_signal(signal.SIGKILL)  # no atexit, no finally: only PDEATHSIG and the stale sweep help
    owner.communicate()

    assert wait_until_gone(pids) == []
    temp_dir = Path(str(reported["temp_dir"]))
    assert temp_dir.exists()
    assert temp_dir in remove_stale_temp_dirs()
    assert not temp_dir.exists()
