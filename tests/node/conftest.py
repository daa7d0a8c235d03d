"""Session fixtures of the node tier: one real single-node cluster, and Argo + MinIO on it.

Building binaries and images happens once after collection (outside pytest-timeout's per-test budget),
only when a node test was selected. Where the machine cannot run a node (not root, no network
namespaces, a missing package that cannot be installed, no Go), every node test is skipped with the
same one-line reason; WKW_NODE_REQUIRED=1 turns that into a failure so CI cannot pass by skipping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.binaries import BinariesUnavailable, ensure_helm
from tests.node import host
from tests.node import webhook as node_webhook
from tests.node.argo import Argo, install
from tests.node.binaries import NodeBinaries, ensure_node_binaries
from tests.node.cluster import NodeCluster
from tests.node.images import ImageUnavailable, ensure_images
from tests.node.webhook import Webhook, WebhookImages, ensure_webhook_images

_NODE_DIR = Path(__file__).parent
_RESTARTS_CLUSTER = "test_cluster_lifecycle.py"
_SUMMARY: dict[str, object] = {}
_READY_KEY = pytest.StashKey[tuple[NodeBinaries, dict[str, tuple[str, Path]]] | str]()
_WEBHOOK_IMAGES_KEY = pytest.StashKey[WebhookImages | str]()


def _prepare() -> tuple[NodeBinaries, dict[str, tuple[str, Path]]] | str:
    """Binaries and images, or the reason this machine cannot run the tier."""
    build = os.environ.get("WKW_E2E_BUILD", "1") != "0"
    try:
        if os.geteuid() == 0:
            host.ensure_packages()
        reason = host.unsupported_reason()
        if reason:
            return reason
        return ensure_node_binaries(build), ensure_images(build)
    except (BinariesUnavailable, ImageUnavailable) as error:
        return str(error)


def _prepare_webhook() -> WebhookImages | str:
    """helm, the webhook image and the component images, or why they cannot be had here."""
    build = os.environ.get("WKW_E2E_BUILD", "1") != "0"
    try:
        ensure_helm(build)
        return ensure_webhook_images()
    except (BinariesUnavailable, ImageUnavailable) as error:
        return str(error)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Build what the tier needs before its first test runs (only when one was selected).

    Where the machine cannot run the tier, its tests are deselected and the terminal summary says why
    in one line (a skip per test would print one line per test); WKW_NODE_REQUIRED=1 keeps them, and
    they fail with the reason.
    """
    ours = [item for item in items if _NODE_DIR in Path(str(item.path)).parents]
    if not ours:
        return
    # The lifecycle tests restart the session cluster, so they run before anything installs on it
    # (Argo, the chart), whatever the file names sort like.
    first = [item for item in ours if Path(str(item.path)).name == _RESTARTS_CLUSTER]
    slots = [index for index, item in enumerate(items) if item in ours]
    for index, item in zip(slots, [*first, *(item for item in ours if item not in first)], strict=True):
        items[index] = item
    ours = [items[index] for index in slots]
    ready = _prepare()
    config.stash[_READY_KEY] = ready
    if isinstance(ready, str) and os.environ.get("WKW_NODE_REQUIRED") != "1":
        _leave_out(config, items, ours, "not run", f"{len(ours)} tests not run: {ready}")
        return
    # The admin's journey (the chart, KFP pipelines) also needs helm and the images `make image` and the
    # container tier build; only the tests that use the `webhook` fixture are left out without them.
    journey = [item for item in ours if "webhook" in getattr(item, "fixturenames", ())]
    if journey and not isinstance(ready, str):
        images = _prepare_webhook()
        config.stash[_WEBHOOK_IMAGES_KEY] = images
        if isinstance(images, str) and os.environ.get("WKW_NODE_REQUIRED") != "1":
            _leave_out(config, items, journey, "journey not run", f"{len(journey)} webhook tests not run: {images}")


def _leave_out(config: pytest.Config, items: list[pytest.Item], gone: list[pytest.Item], key: str, why: str) -> None:
    """Deselect `gone` and say why in one summary line (a machine that cannot run them)."""
    _SUMMARY[key] = f"node tier: {why}"
    config.hook.pytest_deselected(items=gone)
    items[:] = [item for item in items if item not in gone]


@pytest.fixture(scope="session")
def node_ready(request: pytest.FixtureRequest) -> tuple[NodeBinaries, dict[str, tuple[str, Path]]]:
    """Binaries and images. Reached without them only under WKW_NODE_REQUIRED=1: then fail with the reason."""
    ready = request.config.stash.get(_READY_KEY, None) or _prepare()
    if isinstance(ready, str):
        pytest.fail(f"node tier cannot run here and WKW_NODE_REQUIRED=1: {ready}")
    return ready


@pytest.fixture(scope="session")
def node_cluster(node_ready: tuple[NodeBinaries, dict[str, tuple[str, Path]]]) -> Iterator[NodeCluster]:
    """One node cluster for the session; stopping it must leave nothing behind (teardown fails otherwise)."""
    binaries, images = node_ready
    cluster = NodeCluster(binaries, images)
    _SUMMARY["cluster"] = cluster
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def argo(node_cluster: NodeCluster) -> Argo:
    """Argo's controller and MinIO (with the `mlpipeline` bucket) installed in `kubeflow`."""
    installed = install(node_cluster)
    _SUMMARY["argo"] = installed.timings
    return installed


@pytest.fixture(scope="session")
def webhook_images(request: pytest.FixtureRequest) -> WebhookImages:
    images = request.config.stash.get(_WEBHOOK_IMAGES_KEY, None) or _prepare_webhook()
    if isinstance(images, str):
        pytest.fail(f"the node tier's webhook tests cannot run here and WKW_NODE_REQUIRED=1: {images}")
    return images


@pytest.fixture(scope="session")
def webhook(argo: Argo, webhook_images: WebhookImages) -> Webhook:
    """The chart installed as an admin would (tests/node/webhook.py), with the component images of
    every minor the pipelines name loaded under `python:3.X`; Deployment Ready, caBundle set."""
    started = time.monotonic()
    node_webhook.load_component_images(argo.cluster, webhook_images.components)
    loaded = time.monotonic() - started
    reference, archive = webhook_images.webhook
    installed = node_webhook.install(argo.cluster, argo, reference, archive)
    installed.timings["component images import"] = loaded
    _SUMMARY["webhook"] = installed.timings
    return installed


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Why the tier did not run, or the start-up and stop times of its cluster(s) (for docs, never asserted)."""
    if "not run" in _SUMMARY:
        terminalreporter.write_line(f"SKIPPED {_SUMMARY['not run']}", yellow=True)
        return
    if "journey not run" in _SUMMARY:
        terminalreporter.write_line(f"SKIPPED {_SUMMARY['journey not run']}", yellow=True)
    cluster = _SUMMARY.get("cluster")
    if not isinstance(cluster, NodeCluster) or not cluster.history:
        return
    terminalreporter.section("node tier timings (s)")
    for number, timings in enumerate(cluster.history, 1):
        steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in timings.items())
        terminalreporter.write_line(f"cluster start/stop {number}: {steps}")
    argo = _SUMMARY.get("argo")
    if isinstance(argo, dict):
        terminalreporter.write_line("argo install: " + ", ".join(f"{k} {v:.1f}" for k, v in argo.items()))
    installed = _SUMMARY.get("webhook")
    if isinstance(installed, dict):
        terminalreporter.write_line("webhook install: " + ", ".join(f"{k} {v:.1f}" for k, v in installed.items()))
    for key, value in node_webhook.TIER_SUMMARY.items():
        terminalreporter.write_line(f"{key}: {value}")
