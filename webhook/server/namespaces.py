"""Namespace labels and annotations, from a watch-backed cache: no API call on the request path.

Each server worker lists namespaces once, then watches them (relisting when the watch expires), so an
annotation changed after start-up applies to the next pod. Without cluster access the server runs on its
own settings alone, and says so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from webhook import kube
from webhook.admission.config import NamespaceInfo

log = logging.getLogger(__name__)


class StaticNamespaces:
    """A fixed set of namespaces: for `preview`, for tests and for a server without cluster access."""

    def __init__(self, namespaces: Mapping[str, NamespaceInfo] | None = None) -> None:
        self._namespaces = dict(namespaces or {})

    def get(self, name: str) -> NamespaceInfo | None:
        return self._namespaces.get(name)

    def ready(self) -> bool:
        return True


def info_of(namespace: Any) -> NamespaceInfo:
    """Only what the webhook reads: labels and the wandb.ai/* annotations (never the whole object)."""
    metadata = namespace.metadata
    annotations = {k: v for k, v in (metadata.annotations or {}).items() if k.startswith("wandb.ai/")}
    return NamespaceInfo(labels=dict(metadata.labels or {}), annotations=annotations)


class NamespaceCache:
    """Namespaces kept current by a list-then-watch loop in a daemon thread."""

    def __init__(self, api_client: Any, resync_seconds: int = 300) -> None:
        self._api_client = api_client
        self._resync_seconds = resync_seconds
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, name: str) -> NamespaceInfo | None:
        with self._lock:
            return self._namespaces.get(name)

    def ready(self) -> bool:
        return self._synced.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="namespace-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        from kubernetes import client, watch  # imported here: only a server with cluster access needs it

        api: Any = client.CoreV1Api(self._api_client)
        watcher: Any = watch.Watch
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                listing = api.list_namespace()
                with self._lock:
                    self._namespaces = {ns.metadata.name: info_of(ns) for ns in listing.items}
                self._synced.set()
                backoff = 1.0
                stream = watcher().stream(
                    api.list_namespace,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=self._resync_seconds,
                )
                for event in stream:
                    if self._stopping.is_set():
                        return
                    self._apply(event["type"], event["object"])
            except Exception as problem:  # noqa: BLE001 - keep watching; the last good view stays served
                log.warning("namespace watch interrupted (%s); retrying in %.0fs", type(problem).__name__, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _apply(self, event_type: str, namespace: Any) -> None:
        name = namespace.metadata.name
        with self._lock:
            if event_type == "DELETED":
                self._namespaces.pop(name, None)
            elif event_type in ("ADDED", "MODIFIED"):
                self._namespaces[name] = info_of(namespace)


NO_CLUSTER_MESSAGE = (
    "no Kubernetes API access (in-cluster or kubeconfig): namespace labels and annotations are not read; "
    "pods opt in by pod label or pipeline pattern only, with the server settings"
)


def namespace_source(watch: bool) -> StaticNamespaces | NamespaceCache:
    """The cache this server uses; settings alone when watching is off or there is no cluster access.

    `serve` probes cluster access once in the master and turns watching off (saying so once) when there
    is none, so workers only get here with watch=True when a client can be built.
    """
    api_client = kube.api_client() if watch else None
    if api_client is None:
        if watch:
            log.warning(NO_CLUSTER_MESSAGE)
        return StaticNamespaces()
    cache = NamespaceCache(api_client)
    cache.start()  # /readyz answers 503 until the first list has landed
    return cache
