"""The one way every process of the webhook gets a Kubernetes API client.

The server's namespace watch and the certificate sync use the pod's ServiceAccount in a cluster, a
kubeconfig elsewhere (development, tests), and nothing at all when neither exists: the caller decides
what that means (the server runs on its settings alone; the sync fails).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def api_client(kubeconfig: Path | None = None) -> Any | None:
    """An ApiClient from `kubeconfig` when given; else in-cluster credentials, else the default
    kubeconfig ($KUBECONFIG or ~/.kube/config); None when none of them can be loaded."""
    from kubernetes import client, config  # only processes that talk to a cluster import the client

    loader: Any = config
    if kubeconfig is not None:
        try:
            return loader.new_client_from_config(config_file=str(kubeconfig))
        except Exception:  # noqa: BLE001 - an unreadable or invalid kubeconfig: no client
            return None
    try:
        loader.load_incluster_config()
    except config.ConfigException:
        try:
            loader.load_kube_config()
        except Exception:  # noqa: BLE001 - no kubeconfig at all, or an unusable one
            return None
    return client.ApiClient()
