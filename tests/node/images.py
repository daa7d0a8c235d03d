"""Container images for the node tier, assembled without a registry and cached as OCI archives.

No registry is reachable here, so every image is made from files on this machine: a static pause
binary compiled from a few lines of C, the Go binaries of `tests.node.binaries` in otherwise empty
images, and a Debian root filesystem from `mmdebstrap` for Python. `podman import` turns each tree
into an image and `podman save --format oci-archive` writes the archive that the cluster imports into
containerd (`ctr -n k8s.io images import`). Archives live under `cache_root()/images`, keyed by what
went into them, so a warm run only imports.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.binaries import cached_path
from tests.node import binaries as node_binaries
from tests.support.venvs import cache_lock, cache_root

PREFIX = "localhost/wkw-node-"
DEBIAN_SUITE = "bookworm"
PAUSE_SOURCE = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
/* The pod sandbox's only process: hold the namespaces, reap orphans, leave on SIGTERM/SIGINT. */
static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"""
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bumped when an image's recipe changes, so cached archives of the old recipe are not reused.
_RECIPE = "1"


class ImageUnavailable(RuntimeError):
    """An image cannot be built here (a tool is missing or a build step failed)."""


@dataclass(frozen=True)
class _Recipe:
    """How to make one image: its tag, what its cache key depends on, and the build function."""

    tag: str
    inputs: tuple[str, ...]
    build: Callable[[Path], tuple[Path, list[str]]]
    """Writes a root filesystem tar into the given dir; returns it and the `podman import --change` lines."""


def _log(message: str) -> None:
    print(f"[node-images] {message}", file=sys.stderr, flush=True)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def _base_tree(tar: tarfile.TarFile) -> None:
    """What distroless/static gives a Go binary: /tmp, users, name service order."""
    for directory in ("bin", "etc", "var", "var/run", "data"):
        _add_dir(tar, directory)
    _add_dir(tar, "tmp", 0o1777)
    _add_file(
        tar, "etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
    )
    _add_file(tar, "etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    _add_file(tar, "etc/nsswitch.conf", b"hosts: files dns\n")


def _binary_image(
    binary: Path, name: str, extra: Callable[[tarfile.TarFile], None] | None = None, user: str = ""
) -> Callable[[Path], tuple[Path, list[str]]]:
    """An image holding one static binary at /bin/<name> (as Argo's distroless images do)."""

    def build(work: Path) -> tuple[Path, list[str]]:
        rootfs = work / "rootfs.tar"
        with tarfile.open(rootfs, "w") as tar:
            _base_tree(tar)
            _add_file(tar, f"bin/{name}", binary.read_bytes(), 0o755)
            if extra is not None:
                extra(tar)
        changes = [f"ENV {_PATH}", f'ENTRYPOINT ["/bin/{name}"]']
        return rootfs, [*changes, f"USER {user}"] if user else changes

    return build


def _build_pause(work: Path) -> tuple[Path, list[str]]:
    source = work / "pause.c"
    source.write_text(PAUSE_SOURCE)
    binary = work / "pause"
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ImageUnavailable("no C compiler for the pause image (apt-get install gcc libc6-dev)")
    subprocess.run([compiler, "-static", "-Os", "-s", "-o", str(binary), str(source)], check=True)
    rootfs = work / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        _add_file(tar, "pause", binary.read_bytes(), 0o755)
    return rootfs, ['ENTRYPOINT ["/pause"]']


def _mime_types(tar: tarfile.TarFile) -> None:
    """Argo's image ships /etc/mime.types so the executor can label uploaded artifacts."""
    mime = Path("/etc/mime.types")
    if mime.exists():
        _add_file(tar, "etc/mime.types", mime.read_bytes())


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (mmdebstrap fetches the same packages)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split(None, 1)[1].strip()
    return "http://deb.debian.org/debian"


def _build_python(work: Path) -> tuple[Path, list[str]]:
    """Debian's python3 (3.11 in bookworm) in a minbase root filesystem."""
    if shutil.which("mmdebstrap") is None:
        raise ImageUnavailable("mmdebstrap is not installed (apt-get install mmdebstrap)")
    rootfs = work / "rootfs.tar"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=python3",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            DEBIAN_SUITE,
            str(rootfs),
            debian_mirror(),
        ],
        check=True,
    )
    return rootfs, [f"ENV {_PATH}", 'CMD ["python3"]']


def _recipes() -> dict[str, _Recipe]:
    argo = node_binaries.ARGO_VERSION
    minio = node_binaries.MINIO_VERSION
    return {
        "pause": _Recipe("3.10", (PAUSE_SOURCE,), _build_pause),
        "argoexec": _Recipe(
            argo,
            (argo,),
            _binary_image(cached_path("argoexec", argo), "argoexec", _mime_types),
        ),
        "workflow-controller": _Recipe(
            argo,
            (argo,),
            # Argo's own image runs the controller as 8737 (its Deployment says runAsNonRoot).
            _binary_image(cached_path("workflow-controller", argo), "workflow-controller", user="8737"),
        ),
        "minio": _Recipe(minio.rsplit("-", 2)[1], (minio,), _binary_image(cached_path("minio", minio), "minio")),
        "python": _Recipe("3.11", (DEBIAN_SUITE, "python3"), _build_python),
    }


IMAGE_NAMES = tuple(_recipes())


def image_ref(name: str) -> str:
    """The reference pods use for one of these images (`localhost/wkw-node-<name>:<tag>`)."""
    return f"{PREFIX}{name}:{_recipes()[name].tag}"


def _archive_path(name: str, recipe: _Recipe) -> Path:
    key = hashlib.sha256("\n".join([_RECIPE, name, recipe.tag, *recipe.inputs]).encode()).hexdigest()[:12]
    directory = cache_root() / "images"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"wkw-node-{name}-{recipe.tag}-{key}.oci.tar"


def _podman(*args: str) -> None:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageUnavailable(f"podman {args[0]} failed: {(result.stderr or result.stdout).strip()[-800:]}")


def ensure_image(name: str, build: bool = True) -> tuple[str, Path]:
    """(image reference, OCI archive path) of one node-tier image, building the archive once.

    The archive is written to a temp name and renamed into place, under a cache lock, so parallel
    sessions never see half an archive.
    """
    recipe = _recipes()[name]
    ref = f"{PREFIX}{name}:{recipe.tag}"
    archive = _archive_path(name, recipe)
    if archive.exists():
        return ref, archive
    if not build:
        raise ImageUnavailable(f"image {ref} is not built yet (run python -m tests.node.images)")
    if shutil.which("podman") is None:
        raise ImageUnavailable("podman is not installed (apt-get install podman)")
    with cache_lock(archive.name):
        if archive.exists():
            return ref, archive
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="wkw-node-image-", dir=cache_root() / "images") as work_dir:
            work = Path(work_dir)
            try:
                rootfs, changes = recipe.build(work)
            except subprocess.CalledProcessError as error:
                raise ImageUnavailable(f"building {ref}: {error}") from error
            change_args = [arg for change in changes for arg in ("--change", change)]
            _podman("import", *change_args, str(rootfs), ref)
            partial = work / "image.oci.tar"
            _podman("save", "--format", "oci-archive", "-o", str(partial), ref)
            os.replace(partial, archive)
            # The archive is what the cluster imports; podman's own copy would only take space.
            _podman("rmi", ref)
        _log(f"{ref}: built in {time.monotonic() - started:.0f}s ({archive.stat().st_size // 2**20} MiB)")
    return ref, archive


def ensure_images(build: bool = True) -> dict[str, tuple[str, Path]]:
    """Every node-tier image, by name."""
    return {name: ensure_image(name, build) for name in IMAGE_NAMES}


def main() -> int:
    """Build (or find) every image and print its reference and archive."""
    try:
        for name, (ref, archive) in ensure_images().items():
            _log(f"{name}: {ref} {archive}")
    except ImageUnavailable as error:
        _log(f"unavailable: {error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
