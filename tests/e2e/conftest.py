"""Session fixtures for the end-to-end tier: the pinned binaries and one real apiserver for all tests.

Building the binaries can take many minutes on a cold machine, so it happens once after collection
(outside any per-test timeout) and only when an e2e test was selected. Without Go and without a
cache or KUBEBUILDER_ASSETS, the e2e tests are skipped with the reason (or fail, when
WKW_E2E_REQUIRED=1, so CI cannot pass by skipping them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart import render
from tests.e2e.binaries import Binaries, BinariesUnavailable, ensure_binaries
from tests.e2e.cluster import Cluster
from tests.e2e.deployment import DEPLOYED_LABEL, DeployedWebhook, deploy
from tests.e2e.webhooks import delete_mutating_webhook

_E2E_DIR = Path(__file__).parent
_BINARIES_KEY = pytest.StashKey[Binaries | BinariesUnavailable]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Make sure the binaries exist before the first e2e test runs (building them if needed)."""
    if not any(_E2E_DIR in Path(str(item.path)).parents for item in session.items):
        return
    build = os.environ.get("WKW_E2E_BUILD", "1") != "0"
    try:
        session.config.stash[_BINARIES_KEY] = ensure_binaries(build=build)
    except BinariesUnavailable as error:
        session.config.stash[_BINARIES_KEY] = error


@pytest.fixture(scope="session")
def e2e_binaries(request: pytest.FixtureRequest) -> Binaries:
    """The pinned kube-apiserver, etcd, kubectl and helm; skips the test when they cannot exist here."""
    found = request.config.stash.get(_BINARIES_KEY, None)
    if found is None:
        try:
            found = ensure_binaries(build=os.environ.get("WKW_E2E_BUILD", "1") != "0")
        except BinariesUnavailable as error:
            found = error
    if isinstance(found, BinariesUnavailable):
        if os.environ.get("WKW_E2E_REQUIRED") == "1":
            pytest.fail(f"e2e binaries unavailable and WKW_E2E_REQUIRED=1: {found}")
        pytest.skip(f"e2e binaries unavailable: {found}")
    return found


@pytest.fixture(scope="session")
def apiserver(e2e_binaries: Binaries) -> Iterator[Cluster]:
    """One etcd + kube-apiserver for the whole session, stopped (processes and temp dir) at the end."""
    cluster = Cluster(e2e_binaries).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def rendered(e2e_binaries: Binaries) -> render.Rendered:
    """The chart with its default values, for the Kubernetes version under test."""
    if e2e_binaries.helm is None:
        pytest.skip("helm is not available")
    # The chart's own knob for narrowing where it injects keeps this session-wide webhook out of
    # namespaces other tests make for webhooks of their own.
    only_ours = [
        f"webhook.{hook}.extraNamespaceMatchExpressions[0].{field}"
        for hook in ("namespaceOptIn", "podOptIn", "pipelineOptIn")
        for field in (f"key={DEPLOYED_LABEL}", "operator=In", "values[0]=yes")
    ]
    # Debug logging, so the tests can read what the server says about every pod (and check it leaks nothing).
    return render.template(e2e_binaries.helm, "default", set_values=[*only_ours, "server.logLevel=DEBUG"])


@pytest.fixture(scope="session")
def deployed(
    apiserver: Cluster, rendered: render.Rendered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DeployedWebhook]:
    """The webhook as the chart deploys it, called by the real apiserver (see tests/e2e/deployment.py)."""
    webhook = deploy(apiserver, rendered, tmp_path_factory.mktemp("deployed-webhook"))
    try:
        yield webhook
    finally:
        webhook.stop()
        with apiserver.api_client() as api_client:
            delete_mutating_webhook(api_client, webhook.webhook_config_name)
