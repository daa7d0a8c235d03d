"""The node cluster itself: what it runs, and that stopping it puts the machine back as it was.

This file sorts first in the tier on purpose: its restart test stops and starts the session cluster,
so it runs before anything (Argo) is installed on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.cluster import process_exists
from tests.node.argo import unique
from tests.node.cluster import (
    BRIDGE,
    NODE_NAME,
    RULE_TAG,
    NodeCluster,
    _containerd_cgroups,
    _mounts_under,
    leftover_rules,
)
from tests.node.images import image_ref


def test_node_runs_the_pinned_versions_on_containerd(node_cluster: NodeCluster) -> None:
    info = node_cluster.get_json(f"/api/v1/nodes/{NODE_NAME}")["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert re.match(r"containerd://1\.6\.", info["containerRuntimeVersion"])
    assert node_cluster.get_json("/version")["gitVersion"] == "v1.36.3"
    for name in (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
    ):
        assert process_exists(node_cluster.pids[name]), name
    # Only the bridge forwards, and the guard drops anything forwarded between it and another interface.
    assert Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").read_text().strip() == "1"
    mangle = subprocess.run(["iptables-save", "-t", "mangle"], capture_output=True, text=True, check=True).stdout
    assert f"-A FORWARD -i {BRIDGE} ! -o {BRIDGE} -m comment --comment {RULE_TAG} -j DROP" in mangle
    assert f"-A FORWARD ! -i {BRIDGE} -o {BRIDGE} -m comment --comment {RULE_TAG} -j DROP" in mangle
    # The images were imported, not pulled: containerd holds them under their localhost names.
    refs = node_cluster.image_refs()
    for name in ("pause", "python", "argoexec", "workflow-controller", "minio"):
        assert image_ref(name) in refs


def _container_pids(cluster: NodeCluster) -> list[int]:
    """Pids of every container process (pause included) and of containerd's shims."""
    tasks = cluster.ctr("tasks", "list").stdout.splitlines()[1:]
    pids = [int(line.split()[1]) for line in tasks if line.split()]
    shims = [
        int(path.parent.name)
        for path in Path("/proc").glob("[0-9]*/cmdline")
        if str(cluster.containerd_socket) in path.read_bytes().decode(errors="replace")
        and b"containerd-shim" in path.read_bytes()
    ]
    return pids + shims


def start_sleeper(cluster: NodeCluster, namespace: str) -> dict[str, Any]:
    """Run a pod that never ends (with a memory emptyDir) and return what stopping must remove."""
    cluster.create_namespace(namespace)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": namespace},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": image_ref("python"),
                        "command": ["python3", "-c", "import time; time.sleep(3600)"],
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    }
                ],
                "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
            },
        }
    )
    cluster.wait_for(
        lambda: cluster.get_json(f"/api/v1/namespaces/{namespace}/pods/sleeper")["status"]["phase"] == "Running",
        "sleeper Running",
    )
    state = json.loads((cluster.temp_dir / "state.json").read_text())
    return {
        "temp_dir": str(cluster.temp_dir),
        "iptables_before": state["iptables_before"],
        "cgroups_existed": state["cgroups_existed"],
        "pids": list(cluster.pids.values()) + _container_pids(cluster),
    }


def assert_run_gone(snapshot: dict[str, Any]) -> None:
    """No process, mount, file or log link of the cluster described by `snapshot` is left."""
    temp_dir = Path(snapshot["temp_dir"])
    assert [pid for pid in snapshot["pids"] if process_exists(pid)] == []
    assert not temp_dir.exists()
    assert _mounts_under(temp_dir) == []
    links = Path("/var/log/containers")
    if links.is_dir():
        assert [link for link in links.iterdir() if str(temp_dir) in os.readlink(link)] == []


def assert_machine_clean(snapshot: dict[str, Any]) -> None:
    """...and no node cluster at all is left: bridge, iptables rules and chains, cgroups."""
    assert_run_gone(snapshot)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert leftover_rules(snapshot["iptables_before"]) == []
    assert [c for c in _containerd_cgroups() if c.exists() and str(c) not in snapshot["cgroups_existed"]] == []


# A test runner that is SIGKILLed: its servers die with it (PDEATHSIG), but containerd's shims and the
# containers, their mounts, the bridge and kube-proxy's rules stay until the next start cleans them.
_KILLED_RUNNER = """
import json, sys
from tests.node.binaries import ensure_node_binaries
from tests.node.cluster import NodeCluster
from tests.node.images import ensure_image
from tests.node.test_cluster_lifecycle import start_sleeper
images = {name: ensure_image(name, build=False) for name in ("pause", "python")}
cluster = NodeCluster(ensure_node_binaries(build=False), images).start()
print(json.dumps(start_sleeper(cluster, "killed")), flush=True)
sys.stdin.read()
"""


def test_stop_leaves_nothing_and_a_second_start_works(node_cluster: NodeCluster) -> None:
    snapshot = start_sleeper(node_cluster, unique("lifecycle"))
    assert len(snapshot["pids"]) >= 7 + 3  # host processes; pause, python and at least one shim
    assert _mounts_under(Path(snapshot["temp_dir"]))  # memory emptyDir, projected token, rootfs, netns
    assert Path(f"/sys/class/net/{BRIDGE}").exists()

    node_cluster.stop()

    assert_machine_clean(snapshot)

    runner = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUNNER],
        cwd=Path(__file__).parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        killed = json.loads(runner.stdout.readline())
    finally:
        runner.kill()
        runner.wait()
    # What the kill left behind: the pod's processes, its mounts, the bridge.
    assert any(process_exists(pid) for pid in killed["pids"])
    assert _mounts_under(Path(killed["temp_dir"]))
    assert Path(f"/sys/class/net/{BRIDGE}").exists()

    node_cluster.start()

    assert_run_gone(killed)
    assert node_cluster.temp_dir != Path(snapshot["temp_dir"])
    ready = next(
        c for c in node_cluster.get_json(f"/api/v1/nodes/{NODE_NAME}")["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["status"] == "True"
    # The new cluster is empty (a fresh etcd), and runs pods again.
    again = unique("again")
    node_cluster.create_namespace(again)
    node_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "once", "namespace": again},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": image_ref("python"), "command": ["python3", "-c", "pass"]}],
            },
        }
    )
    assert node_cluster.wait_pod_done(again, "once")["status"]["phase"] == "Succeeded"
