"""When a pod on the node was created, and when each of its containers was created, started and finished.

The API's timestamps have whole-second resolution (`creationTimestamp`, `startedAt`, `finishedAt`), too
coarse for a difference of a second or two. So:

- *created* is when a watch on the apiserver first saw the pod (`PodWatch`, wall clock of this machine,
  milliseconds after the pod was stored);
- container times come from containerd's own record of each container (the CRI plugin's
  `<root>/io.containerd.grpc.v1.cri/containers/<id>/status`: `CreatedAt`, `StartedAt`, `FinishedAt` in
  nanoseconds of the same clock), found by the `containerID` the pod's status names. Where that file is
  gone the API's seconds are used and the result says so.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from tests.node.cluster import NodeCluster


def api_time(value: str | None) -> float | None:
    """An API timestamp (RFC 3339, whole seconds) as seconds since the epoch."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class ContainerTimes:
    created: float | None
    started: float | None
    finished: float | None
    precise: bool  # from containerd (nanoseconds), else the API (seconds)

    @property
    def ran(self) -> float | None:
        """Started to finished, seconds."""
        return None if self.started is None or self.finished is None else self.finished - self.started


@dataclass
class PodTimes:
    namespace: str
    name: str
    created: float  # seen by the watch, else creationTimestamp
    created_precise: bool
    containers: dict[str, ContainerTimes] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def until_started(self, container: str = "main") -> float | None:
        """Created to `container` started, seconds."""
        times = self.containers.get(container)
        return None if times is None or times.started is None else times.started - self.created


def _status_file(cluster: NodeCluster, container_id: str) -> Path:
    return (
        cluster.temp_dir / "containerd" / "root" / "io.containerd.grpc.v1.cri" / "containers" / container_id / "status"
    )


def container_times(cluster: NodeCluster, status: dict[str, Any]) -> ContainerTimes:
    """Times of one entry of a pod's (init)containerStatuses."""
    container_id = str(status.get("containerID", "")).partition("://")[2]
    path = _status_file(cluster, container_id) if container_id else None
    if path is not None and path.is_file():
        record = json.loads(path.read_text())

        def seconds(key: str) -> float | None:
            value = int(record.get(key) or 0)
            return value / 1e9 if value > 0 else None

        return ContainerTimes(seconds("CreatedAt"), seconds("StartedAt"), seconds("FinishedAt"), True)
    state = status.get("state", {})
    terminated, running = state.get("terminated", {}), state.get("running", {})
    started = api_time(terminated.get("startedAt") or running.get("startedAt"))
    return ContainerTimes(None, started, api_time(terminated.get("finishedAt")), False)


def pod_times(cluster: NodeCluster, pod: dict[str, Any], seen: dict[str, float]) -> PodTimes:
    """The times of one pod (as the API returns it); `seen` maps pod uid to when the watch saw it."""
    metadata, status = pod["metadata"], pod.get("status", {})
    uid = metadata["uid"]
    created = seen.get(uid)
    times = PodTimes(
        metadata["namespace"],
        metadata["name"],
        created if created is not None else float(api_time(metadata["creationTimestamp"]) or 0.0),
        created is not None,
        annotations=dict(metadata.get("annotations") or {}),
    )
    for entry in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
        times.containers[entry["name"]] = container_times(cluster, entry)
    return times


class PodWatch:
    """Records when the apiserver's watch first delivers each pod matching `label_selector`."""

    def __init__(self, cluster: NodeCluster, label_selector: str) -> None:
        self.cluster = cluster
        self.label_selector = label_selector
        self.seen: dict[str, float] = {}
        self.error: str | None = None  # why the watch ended early, if it did
        self._stopping = threading.Event()
        self._watch = watch.Watch()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    def _run(self) -> None:
        with self.cluster.api_client() as api_client:
            core = k8s.CoreV1Api(api_client)
            listing = core.list_pod_for_all_namespaces(label_selector=self.label_selector)
            self._ready.set()
            stream = self._watch.stream(
                core.list_pod_for_all_namespaces,
                label_selector=self.label_selector,
                resource_version=listing.metadata.resource_version,
                timeout_seconds=3600,
            )
            try:
                for event in stream:
                    now = time.time()
                    if event["type"] == "ADDED":
                        self.seen.setdefault(event["object"].metadata.uid, now)
            except Exception as error:  # the apiserver went away: fine once we are done, a gap otherwise
                if not self._stopping.is_set():
                    self.error = f"{type(error).__name__}: {error}"

    def __enter__(self) -> PodWatch:
        self._thread.start()
        self._ready.wait(timeout=60)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._watch.stop()  # the thread is a daemon: it ends with the next event or the process
