"""The node cluster itself: what it runs, and that stopping it puts the machine back as it was.

This file sorts first in the tier on purpose: its restart test stops and starts the session cluster,
so it runs before anything (Argo) is installed on it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.e2e.cluster import process_exists
from tests.node.argo import unique
from tests.node.cluster import BRIDGE, NODE_NAME, NodeCluster, _mounts_under, leftover_rules
from tests.node.images import image_ref


def _node(cluster: NodeCluster) -> dict[str, object]:
    return cluster.get_json(f"/api/v1/nodes/{NODE_NAME}")


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


def test_stop_leaves_nothing_and_a_second_start_works(node_cluster: NodeCluster) -> None:
    namespace = unique("lifecycle")
    node_cluster.create_namespace(namespace)
    node_cluster.apply(
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
    node_cluster.wait_for(
        lambda: node_cluster.get_json(f"/api/v1/namespaces/{namespace}/pods/sleeper")["status"]["phase"] == "Running",
        "sleeper Running",
    )
    temp_dir = node_cluster.temp_dir
    before = json.loads((temp_dir / "state.json").read_text())["iptables_before"]
    host_pids = list(node_cluster.pids.values())
    container_pids = _container_pids(node_cluster)
    assert len(container_pids) >= 3  # pause, python, and at least one shim
    assert _mounts_under(temp_dir)  # the memory emptyDir, the projected token, rootfs overlays, netns
    assert Path(f"/sys/class/net/{BRIDGE}").exists()

    node_cluster.stop()

    assert [pid for pid in host_pids + container_pids if process_exists(pid)] == []
    assert not temp_dir.exists()
    assert _mounts_under(temp_dir) == []
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert leftover_rules(before) == []
    links = Path("/var/log/containers")
    if links.is_dir():
        assert [link for link in links.iterdir() if str(temp_dir) in os.readlink(link)] == []

    node_cluster.start()

    assert node_cluster.temp_dir != temp_dir
    conditions = _node(node_cluster)["status"]["conditions"]  # type: ignore[index]
    assert {"type": "Ready", "status": "True"}.items() <= next(c for c in conditions if c["type"] == "Ready").items()
    # The new cluster is empty (a fresh etcd), and runs pods again.
    assert node_cluster.get_json(f"/api/v1/namespaces/{namespace}") == {}
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
