"""Pinned kube-apiserver, etcd, kubectl and helm for the end-to-end tests, built from the Go module proxy.

Release downloads (dl.k8s.io, GitHub releases, setup-envtest) are unreachable here, but the Go module
proxy is not, so each binary is compiled once into `cache_root()/bin/<name>-<version>` and reused.
`KUBEBUILDER_ASSETS` (a folder holding kube-apiserver, etcd and kubectl, the envtest convention) wins
when set. Run `python -m tests.e2e.binaries` to build ahead of the tests (CI does it before pytest).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.support.venvs import cache_root

T = TypeVar("T")

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"

# Fixed so a build is reproducible and the cache key is the version alone.
BUILD_DATE = "2026-01-01T00:00:00Z"
GO_MODULE_GO_VERSION = "1.26.0"


class BinariesUnavailable(RuntimeError):
    """The binaries are not cached and cannot be built here (no Go, or the build failed)."""


class GoNotInstalled(BinariesUnavailable):
    """No Go toolchain: nothing can be built, which is expected on some machines (tests skip)."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the executables an end-to-end cluster needs."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path | None


def _log(message: str) -> None:
    print(f"[e2e-binaries] {message}", file=sys.stderr, flush=True)


def bin_dir() -> Path:
    """Where finished binaries live, one file per name and version."""
    path = cache_root() / "bin"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_path(name: str, version: str) -> Path:
    """The cache path of one pinned binary (it may not exist yet)."""
    return bin_dir() / f"{name}-{version}"


def _go_env() -> dict[str, str]:
    """Go settings that keep every build artefact under the cache root and off the network's toolchain."""
    go_root = cache_root() / "go"
    (go_root / "tmp").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "GOMODCACHE": str(go_root / "mod"),
            "GOCACHE": str(go_root / "build"),
            "GOPATH": str(go_root / "path"),
            "GOTMPDIR": str(go_root / "tmp"),
            "GOFLAGS": "-modcacherw -buildvcs=false -trimpath",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
        }
    )
    return env


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoNotInstalled(
            "Go is not installed, so kube-apiserver/etcd/kubectl/helm cannot be built "
            "(install Go >= 1.26 or set KUBEBUILDER_ASSETS)"
        )
    return go


def _run_go(args: list[str], cwd: Path, what: str, extra_env: dict[str, str] | None = None) -> None:
    """Run a go command niced, streaming its output; raise BinariesUnavailable when it fails."""
    command = ["nice", "-n", "10", _go(), *args]
    _log(f"{what}: go {args[0]} ... (in {cwd})")
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env={**_go_env(), **(extra_env or {})}, check=False)
    if result.returncode != 0:
        raise BinariesUnavailable(f"{what} failed (go exited {result.returncode}); see the output above")
    _log(f"{what}: done in {time.monotonic() - started:.0f}s")


@contextmanager
def _build_lock() -> Iterator[None]:
    """One builder at a time per cache, so parallel test runs do not compile the same thing twice."""
    lock_path = bin_dir() / ".build.lock"
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _install(built: Path, final: Path) -> None:
    """Move a finished binary into place atomically, so an interrupted build never leaves a half file."""
    temp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.copy2(built, temp)
    temp.chmod(0o755)
    os.replace(temp, final)


def _module_dir(name: str) -> Path:
    path = cache_root() / "go" / "wrappers" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_mod_file(module: str, version: str, cwd: Path) -> Path:
    """Fetch a module's go.mod from the proxy and return its local path."""
    result = subprocess.run(
        [_go(), "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BinariesUnavailable(f"go mod download {module}@{version} failed: {result.stderr.strip()[-500:]}")
    return Path(json.loads(result.stdout)["GoMod"])


def kubernetes_staging_replaces(kubernetes_go_mod: str, version: str) -> dict[str, str]:
    """The release's `k8s.io/<m> => ./staging/...` replaces, rewritten to the published `v0.<minor>.<patch>`.

    A dependent module ignores k8s.io/kubernetes' own replace directives, so the wrapper must repeat them.
    """
    staging_version = "v0." + version.removeprefix("v").split(".", 1)[1]
    modules = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", kubernetes_go_mod, flags=re.MULTILINE)
    if not modules:
        raise BinariesUnavailable(f"no staging replace directives found in k8s.io/kubernetes@{version} go.mod")
    return {module: staging_version for module in modules}


def _kubernetes_ldflags(version: str) -> str:
    """Stamp the version the way the release Makefile does, or /version answers v0.0.0-master."""
    major, minor = version.removeprefix("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": BUILD_DATE,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags.extend(f"-X {package}.{key}={value}" for key, value in values.items())
    return " ".join(flags)


def _build_kubernetes(names: list[str]) -> None:
    """Build kube-apiserver and/or kubectl from a wrapper module requiring k8s.io/kubernetes."""
    wrapper = _module_dir(f"kubernetes-{KUBERNETES_VERSION}")
    go_mod = _download_mod_file("k8s.io/kubernetes", KUBERNETES_VERSION, wrapper).read_text()
    replaces = kubernetes_staging_replaces(go_mod, KUBERNETES_VERSION)
    _log(f"k8s.io/kubernetes@{KUBERNETES_VERSION}: {len(replaces)} staging modules pinned by replace")
    lines = [
        "module wkw.local/kubernetes-build",
        "",
        f"go {GO_MODULE_GO_VERSION}",
        "",
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}",
        "",
        "replace (",
        *(f"\t{module} => {module} {pinned}" for module, pinned in sorted(replaces.items())),
        ")",
        "",
    ]
    (wrapper / "go.mod").write_text("\n".join(lines))
    # Importing the commands' dependencies from a blank file is not possible (they are main packages),
    # so let `go build -mod=mod` resolve the graph and write go.sum.
    out_dir = wrapper / f"out-{os.getpid()}"
    out_dir.mkdir(exist_ok=True)
    packages = [f"k8s.io/kubernetes/cmd/{name}" for name in names]
    try:
        _run_go(
            [
                "build",
                "-mod=mod",
                "-ldflags",
                _kubernetes_ldflags(KUBERNETES_VERSION),
                "-o",
                f"{out_dir}/",
                *packages,
            ],
            wrapper,
            f"build {', '.join(names)} {KUBERNETES_VERSION}",
        )
        for name in names:
            _install(out_dir / name, cached_path(name, KUBERNETES_VERSION))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def _build_etcd() -> None:
    """Build etcd from a wrapper module: its go.mod has local replaces, so `go install ...@v` refuses it."""
    wrapper = _module_dir(f"etcd-{ETCD_VERSION}")
    (wrapper / "go.mod").write_text(
        "\n".join(
            [
                "module wkw.local/etcd-build",
                "",
                f"go {GO_MODULE_GO_VERSION}",
                "",
                f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}",
                "",
            ]
        )
    )
    out_file = wrapper / f"etcd-{os.getpid()}"
    try:
        _run_go(
            ["build", "-mod=mod", "-ldflags", "-s -w", "-o", str(out_file), "go.etcd.io/etcd/server/v3"],
            wrapper,
            f"build etcd {ETCD_VERSION}",
        )
        _install(out_file, cached_path("etcd", ETCD_VERSION))
    finally:
        out_file.unlink(missing_ok=True)


def helm_kubernetes_version(helm_go_mod: str) -> tuple[str, str]:
    """(major, minor) of Kubernetes matching helm's client-go requirement: client-go v0.37.x is 1.37."""
    found = re.search(r"^\s*k8s\.io/client-go v(\d+)\.(\d+)\.", helm_go_mod, flags=re.MULTILINE)
    if found is None:
        raise BinariesUnavailable(f"helm {HELM_VERSION} go.mod does not require k8s.io/client-go")
    return str(int(found.group(1)) + 1), found.group(2)


def _build_helm() -> None:
    """`go install helm@version` works as is; stamp what helm's release Makefile stamps.

    That is its own version and, as the Kubernetes version `helm template` assumes, the one of the
    client-go it is built with (pass --kube-version to render for another).
    """
    gobin = _module_dir(f"helm-{HELM_VERSION}") / f"bin-{os.getpid()}"
    gobin.mkdir(parents=True, exist_ok=True)
    major, minor = helm_kubernetes_version(_download_mod_file("helm.sh/helm/v3", HELM_VERSION, gobin).read_text())
    ldflags = " ".join(
        [
            "-s -w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
        ]
    )
    try:
        _run_go(
            ["install", "-ldflags", ldflags, f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"],
            gobin,
            f"install helm {HELM_VERSION}",
            {"GOBIN": str(gobin)},
        )
        _install(gobin / "helm", cached_path("helm", HELM_VERSION))
    finally:
        shutil.rmtree(gobin, ignore_errors=True)


def _from_assets(assets: Path, build: bool, with_helm: bool) -> Binaries:
    """Binaries from a KUBEBUILDER_ASSETS folder; helm is taken from there too when present."""
    paths = {name: assets / name for name in ("kube-apiserver", "etcd", "kubectl")}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise BinariesUnavailable(f"KUBEBUILDER_ASSETS={assets} lacks executable {', '.join(missing)}")
    helm = assets / "helm"
    return Binaries(
        kube_apiserver=paths["kube-apiserver"],
        etcd=paths["etcd"],
        kubectl=paths["kubectl"],
        helm=helm if os.access(helm, os.X_OK) else (ensure_helm(build) if with_helm else None),
    )


def ensure_helm(build: bool = True) -> Path:
    """The pinned helm, built when missing (and `build` is true)."""
    path = cached_path("helm", HELM_VERSION)
    if not path.exists():
        if not build:
            raise BinariesUnavailable(f"{path} is not built (run python -m tests.e2e.binaries)")
        with _build_lock():
            if not path.exists():
                _build_helm()
    return path


def ensure_kubernetes(names: tuple[str, ...], build: bool = True) -> dict[str, Path]:
    """Paths of Kubernetes commands (`k8s.io/kubernetes/cmd/<name>`) at the pinned version, built when missing.

    Every missing name is compiled in one `go build`, so a cold machine compiles the shared packages once
    (the node tier asks for the e2e binaries and its own together). Cached binaries are never rebuilt.
    """
    wanted = {name: cached_path(name, KUBERNETES_VERSION) for name in names}
    missing = [name for name, path in wanted.items() if not path.exists()]
    if missing and not build:
        raise BinariesUnavailable(f"not built yet: {', '.join(missing)} (run python -m tests.node.prepare)")
    if missing:
        _go()
        with _build_lock():
            still_missing = [name for name in names if not wanted[name].exists()]
            if still_missing:
                _build_kubernetes(still_missing)
    return wanted


def ensure_binaries(build: bool = True, with_helm: bool = True) -> Binaries:
    """Return the pinned binaries, building the missing ones unless `build` is false.

    Raises BinariesUnavailable with the reason when they are missing and cannot be built.
    """
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        return _from_assets(Path(assets), build, with_helm)
    kubernetes_names = ("kube-apiserver", "kubectl")
    wanted = {name: cached_path(name, KUBERNETES_VERSION) for name in kubernetes_names}
    wanted["etcd"] = cached_path("etcd", ETCD_VERSION)
    missing = [name for name, path in wanted.items() if not path.exists()]
    if missing and not build:
        raise BinariesUnavailable(f"not built yet: {', '.join(missing)} (run python -m tests.e2e.binaries)")
    if missing:
        _go()
        with _build_lock():
            still_missing = [name for name in kubernetes_names if not wanted[name].exists()]
            if still_missing:
                _build_kubernetes(still_missing)
            if not wanted["etcd"].exists():
                _build_etcd()
    return Binaries(
        kube_apiserver=wanted["kube-apiserver"],
        etcd=wanted["etcd"],
        kubectl=wanted["kubectl"],
        helm=ensure_helm(build) if with_helm else None,
    )


def binary_versions(binaries: Binaries) -> dict[str, str]:
    """What each binary says its version is (from the binary itself, not from the pins)."""
    kubectl_client = json.loads(
        subprocess.run(
            [str(binaries.kubectl), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )["clientVersion"]["gitVersion"]
    etcd_line = first_line([str(binaries.etcd), "--version"])
    versions = {
        "kube-apiserver": first_line([str(binaries.kube_apiserver), "--version"]).removeprefix("Kubernetes "),
        "etcd": etcd_line.removeprefix("etcd Version: "),
        "kubectl": kubectl_client,
    }
    if binaries.helm is not None:
        versions["helm"] = first_line([str(binaries.helm), "version", "--short"])
    return versions


def first_line(command: list[str]) -> str:
    """The first line a binary prints (stdout, else stderr) for a version question."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else ""


def report_main(
    ensure: Callable[[], T],
    versions: Callable[[T], dict[str, str]],
    log: Callable[[str], None],
    skipped: str,
    paths: Callable[[T], list[str]] = lambda _binaries: [],
) -> int:
    """A tier's `main`: build (or find) its binaries, print what each says it is; exit 1 when unavailable."""
    started = time.monotonic()
    try:
        binaries = ensure()
    except GoNotInstalled as error:
        log(f"skipping: {error}; {skipped} will be skipped")
        return 0
    except BinariesUnavailable as error:
        log(f"unavailable: {error}")
        return 1
    for name, version in versions(binaries).items():
        log(f"{name}: {version}")
    for line in paths(binaries):
        log(line)
    log(f"ready in {time.monotonic() - started:.0f}s")
    return 0


def main() -> int:
    """Build (or find) every pinned binary and print where they are and what they say they are."""
    return report_main(
        ensure_binaries,
        binary_versions,
        _log,
        "the e2e tests",
        lambda b: [f"kube-apiserver={b.kube_apiserver} etcd={b.etcd} kubectl={b.kubectl}", f"helm={b.helm}"],
    )


if __name__ == "__main__":
    raise SystemExit(main())
