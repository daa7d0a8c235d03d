"""The pinned binaries: what they report, how the Kubernetes wrapper module is derived, the envtest folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.binaries import (
    ETCD_VERSION,
    HELM_VERSION,
    KUBERNETES_VERSION,
    Binaries,
    BinariesUnavailable,
    binary_versions,
    ensure_binaries,
    kubernetes_staging_replaces,
)
from tests.support.venvs import cache_root

STAGING_GO_MOD = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tk8s.io/client-go v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tk8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
)
"""


def test_staging_replaces_map_every_staging_module_to_the_published_version() -> None:
    replaces = kubernetes_staging_replaces(STAGING_GO_MOD, "v1.36.3")

    assert replaces == {"k8s.io/api": "v0.36.3", "k8s.io/client-go": "v0.36.3", "k8s.io/cri-streaming": "v0.36.3"}


def test_a_go_mod_without_staging_replaces_is_refused() -> None:
    with pytest.raises(BinariesUnavailable, match="no staging replace"):
        kubernetes_staging_replaces("module k8s.io/kubernetes\n", "v1.36.3")


def test_the_wrapper_module_pins_every_staging_module_of_the_release(e2e_binaries: Binaries) -> None:
    wrapper_go_mod = cache_root() / "go" / "wrappers" / f"kubernetes-{KUBERNETES_VERSION}" / "go.mod"
    release_go_mod = (
        cache_root()
        / "go"
        / "mod"
        / "cache"
        / "download"
        / "k8s.io"
        / "kubernetes"
        / "@v"
        / f"{KUBERNETES_VERSION}.mod"
    )
    if os.environ.get("KUBEBUILDER_ASSETS") or not wrapper_go_mod.exists():
        pytest.skip("the binaries were not built here (KUBEBUILDER_ASSETS or a copied cache)")
    staging = kubernetes_staging_replaces(release_go_mod.read_text(), KUBERNETES_VERSION)
    wrapper = wrapper_go_mod.read_text()

    assert len(staging) > 30
    for module, version in staging.items():
        assert f"{module} => {module} {version}" in wrapper


def test_binaries_report_the_pinned_versions(e2e_binaries: Binaries) -> None:
    if os.environ.get("KUBEBUILDER_ASSETS"):
        pytest.skip("KUBEBUILDER_ASSETS binaries carry their own versions")
    versions = binary_versions(e2e_binaries)

    assert versions["kube-apiserver"] == KUBERNETES_VERSION
    assert versions["kubectl"] == KUBERNETES_VERSION
    assert versions["etcd"] == ETCD_VERSION.removeprefix("v")
    assert versions["helm"].startswith(HELM_VERSION)


def test_cached_binaries_are_reused_untouched(e2e_binaries: Binaries) -> None:
    paths = [e2e_binaries.kube_apiserver, e2e_binaries.etcd, e2e_binaries.kubectl]
    before = [path.stat().st_mtime_ns for path in paths]

    again = ensure_binaries(build=False)

    assert again == e2e_binaries
    assert [path.stat().st_mtime_ns for path in paths] == before


def test_kubebuilder_assets_folder_wins_and_must_be_complete(
    e2e_binaries: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kube-apiserver").symlink_to(e2e_binaries.kube_apiserver)
    (tmp_path / "etcd").symlink_to(e2e_binaries.etcd)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(tmp_path))

    with pytest.raises(BinariesUnavailable, match="lacks executable kubectl"):
        ensure_binaries(build=False)

    (tmp_path / "kubectl").symlink_to(e2e_binaries.kubectl)
    found = ensure_binaries(build=False)
    assert (found.kube_apiserver, found.etcd, found.kubectl) == (
        tmp_path / "kube-apiserver",
        tmp_path / "etcd",
        tmp_path / "kubectl",
    )
