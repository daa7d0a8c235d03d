"""Pinned binaries of the node tier, built from the Go module proxy and cached by version.

The Kubernetes commands come from the e2e tier's wrapper module (one `go build` for all missing ones,
so the shared packages compile once). Argo Workflows and MinIO get wrapper builds of their own here:
release downloads are unreachable, the module proxy is not. `python -m tests.node.binaries` builds
ahead of the tests (and prints versions); `make e2e-node` and `make test` run it before pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import binaries as e2e
from tests.e2e.binaries import BinariesUnavailable, cached_path, first_line, report_main
from tests.support.venvs import cache_lock, cache_root

KUBERNETES_VERSION = e2e.KUBERNETES_VERSION
# The e2e tier's pair plus every node component, so a cold machine builds all six in one `go build`.
KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kubectl",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)
ARGO_MODULE = "github.com/argoproj/argo-workflows/v3"
# KFP 2.14 ships Argo 3.6; its module zips on the proxy lack one file (see _argo_source).
ARGO_VERSION = "v3.6.7"
ARGO_COMMIT = "8d7dae690e152d19fb40f7affbb68fb783b32172"
ARGO_COMMANDS = ("workflow-controller", "argoexec")
MINIO_MODULE = "github.com/minio/minio"
# MinIO publishes no module tags; this is the proxy's `latest` pseudo-version on 2026-12-01.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


@dataclass(frozen=True)
class NodeBinaries:
    """Paths of every executable the node tier starts on the host or copies into an image."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path
    workflow_controller: Path
    argoexec: Path
    argo_manifests: Path
    """`manifests/` of the same Argo module (CRDs, controller Deployment, RBAC)."""
    minio: Path


def _log(message: str) -> None:
    print(f"[node-binaries] {message}", file=sys.stderr, flush=True)


def _argo_source(wrapper: Path) -> Path:
    """A local copy of the Argo module with `signal_linux.go` restored.

    Upstream keeps `workflow/executor/os-specific/signal_linux.go` as a symlink to `signal_darwin.go`;
    module zips drop symlinks, so `argoexec` does not compile from the proxy's zip (undefined: Setpgid).
    The copy adds the same file back and the wrapper module `replace`s the module with it.
    """
    downloaded = subprocess.run(
        [e2e._go(), "mod", "download", "-json", f"{ARGO_MODULE}@{ARGO_VERSION}"],
        cwd=wrapper,
        env=e2e._go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if downloaded.returncode != 0:
        raise BinariesUnavailable(f"go mod download {ARGO_MODULE}@{ARGO_VERSION}: {downloaded.stderr.strip()[-500:]}")
    module_dir = Path(json.loads(downloaded.stdout)["Dir"])
    source = wrapper / f"argo-workflows-{ARGO_VERSION}"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(module_dir, source, ignore=shutil.ignore_patterns("ui", "docs", "sdks", "test", "examples"))
    os_specific = source / "workflow" / "executor" / "os-specific"
    linux = os_specific / "signal_linux.go"
    if not linux.exists():
        linux.write_text((os_specific / "signal_darwin.go").read_text())
    for path in source.rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    return source


def _build_argo(names: list[str]) -> None:
    """workflow-controller and argoexec in one `go build` of a wrapper module, stamped like Argo's Makefile."""
    wrapper = e2e._module_dir(f"argo-workflows-{ARGO_VERSION}")
    source = _argo_source(wrapper)
    (wrapper / "go.mod").write_text(
        "\n".join(
            [
                "module wkw.local/argo-build",
                "",
                f"go {e2e.GO_MODULE_GO_VERSION}",
                "",
                f"require {ARGO_MODULE} {ARGO_VERSION}",
                "",
                f"replace {ARGO_MODULE} => ./{source.name}",
                "",
            ]
        )
    )
    stamp = {
        "version": ARGO_VERSION,
        "gitTag": ARGO_VERSION,
        "gitCommit": ARGO_COMMIT,
        "gitTreeState": "clean",
        "buildDate": e2e.BUILD_DATE,
    }
    ldflags = " ".join(["-s -w", *(f"-X {ARGO_MODULE}.{key}={value}" for key, value in stamp.items())])
    out_dir = wrapper / f"out-{os.getpid()}"
    out_dir.mkdir(exist_ok=True)
    try:
        e2e._run_go(
            ["build", "-mod=mod", "-ldflags", ldflags, "-o", f"{out_dir}/", *(f"{ARGO_MODULE}/cmd/{n}" for n in names)],
            wrapper,
            f"build {', '.join(names)} {ARGO_VERSION}",
        )
        for name in names:
            e2e._install(out_dir / name, cached_path(name, ARGO_VERSION))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _build_minio() -> None:
    """MinIO has no replace directives, so `go install module@pseudo-version` works as is."""
    gobin = e2e._module_dir(f"minio-{MINIO_VERSION}") / f"bin-{os.getpid()}"
    gobin.mkdir(parents=True, exist_ok=True)
    commit = MINIO_VERSION.rsplit("-", 1)[1]
    ldflags = f"-s -w -X {MINIO_MODULE}/cmd.CommitID={commit} -X {MINIO_MODULE}/cmd.ShortCommitID={commit}"
    try:
        e2e._run_go(
            ["install", "-ldflags", ldflags, f"{MINIO_MODULE}@{MINIO_VERSION}"],
            gobin,
            f"install minio {MINIO_VERSION}",
            {"GOBIN": str(gobin)},
        )
        e2e._install(gobin / "minio", cached_path("minio", MINIO_VERSION))
    finally:
        shutil.rmtree(gobin, ignore_errors=True)


def argo_manifests_dir() -> Path:
    """Where Argo's `manifests/` of ARGO_VERSION are kept (beside the binaries, not in the Go caches)."""
    return cache_root() / "share" / f"argo-workflows-{ARGO_VERSION}" / "manifests"


def _ensure_argo_manifests() -> Path:
    target = argo_manifests_dir()
    if target.exists():
        return target
    with cache_lock(f"argo-manifests-{ARGO_VERSION}"):
        if not target.exists():
            source = _argo_source(e2e._module_dir(f"argo-workflows-{ARGO_VERSION}"))
            partial = target.with_name(f".manifests-{os.getpid()}")
            shutil.copytree(source / "manifests", partial)
            os.replace(partial, target)
    return target


def ensure_argo(build: bool = True) -> dict[str, Path]:
    """workflow-controller and argoexec at ARGO_VERSION, built once, plus the module's manifests."""
    wanted = {name: cached_path(name, ARGO_VERSION) for name in ARGO_COMMANDS}
    if all(path.exists() for path in wanted.values()):
        wanted["manifests"] = _ensure_argo_manifests()
        return wanted
    if not build:
        raise BinariesUnavailable(f"Argo {ARGO_VERSION} is not built yet (run python -m tests.node.binaries)")
    e2e._go()
    with cache_lock(f"argo-{ARGO_VERSION}"):
        missing = [name for name, path in wanted.items() if not path.exists()]
        if missing:
            _build_argo(missing)
    wanted["manifests"] = _ensure_argo_manifests()
    return wanted


def ensure_minio(build: bool = True) -> Path:
    """The MinIO server at MINIO_VERSION, built once."""
    path = cached_path("minio", MINIO_VERSION)
    if path.exists():
        return path
    if not build:
        raise BinariesUnavailable(f"MinIO {MINIO_VERSION} is not built yet (run python -m tests.node.binaries)")
    e2e._go()
    with cache_lock(f"minio-{MINIO_VERSION}"):
        if not path.exists():
            _build_minio()
    return path


def ensure_node_binaries(build: bool = True) -> NodeBinaries:
    """Every binary of the node tier, building the missing ones unless `build` is false.

    Raises BinariesUnavailable (GoNotInstalled when there is no Go) with the reason.
    """
    kubernetes = e2e.ensure_kubernetes(KUBERNETES_COMMANDS, build=build)
    etcd = cached_path("etcd", e2e.ETCD_VERSION)
    if not etcd.exists():
        etcd = e2e.ensure_binaries(build=build, with_helm=False).etcd
    argo = ensure_argo(build)
    return NodeBinaries(
        etcd=etcd,
        kube_apiserver=kubernetes["kube-apiserver"],
        kubectl=kubernetes["kubectl"],
        kube_controller_manager=kubernetes["kube-controller-manager"],
        kube_scheduler=kubernetes["kube-scheduler"],
        kubelet=kubernetes["kubelet"],
        kube_proxy=kubernetes["kube-proxy"],
        workflow_controller=argo["workflow-controller"],
        argoexec=argo["argoexec"],
        argo_manifests=argo["manifests"],
        minio=ensure_minio(build),
    )


def binary_versions(binaries: NodeBinaries) -> dict[str, str]:
    """What each binary says it is, from the binary itself."""
    versions = {
        name: first_line([str(getattr(binaries, name.replace("-", "_"))), "--version"])
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
    }
    versions["etcd"] = first_line([str(binaries.etcd), "--version"])
    versions["argoexec"] = first_line([str(binaries.argoexec), "version", "--short"])
    versions["workflow-controller"] = first_line([str(binaries.workflow_controller), "version", "--short"])
    versions["minio"] = first_line([str(binaries.minio), "--version"])
    return versions


def main() -> int:
    """Build (or find) every binary of the node tier and print what each says it is."""
    return report_main(ensure_node_binaries, binary_versions, _log, "the node tests")


if __name__ == "__main__":
    raise SystemExit(main())
