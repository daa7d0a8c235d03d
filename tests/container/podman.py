"""podman, runc and mmdebstrap on this machine: installed when missing, run with the settings this machine needs.

The container tier and `make image` build and run every image here, without a registry:
- root filesystems come from Debian packages (`mmdebstrap`), images from `podman import` / `podman build`;
- podman runs with `--runtime runc --cgroup-manager cgroupfs` (its default runtime, crun, refuses a cgroup
  v1 hybrid hierarchy) and lowers rlimits explicitly (raising them needs CAP_SYS_RESOURCE);
- builds and containers get no network (`--network=none`): what a build needs from PyPI is downloaded on
  the host beforehand and mounted in.

`ensure_tools()` installs the Debian packages when they are missing and raises `ContainersUnavailable`
with a one-line reason where that cannot work (not Linux, not root, no apt-get).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tests.support.venvs import cache_lock

#: Debian packages the tier needs, by the command each provides.
PACKAGES = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}
#: Global flags of every podman call (see the module docstring).
GLOBAL_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
#: Lowered rlimits for every container and build step (raising them is refused without CAP_SYS_RESOURCE).
ULIMITS = ("--ulimit", "nofile=10000:10000", "--ulimit", "nproc=10000:10000")


class PodmanFailed(subprocess.CalledProcessError):
    """A podman command failed; str() includes what it printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '')[-3000:]}{(self.stdout or '')[-1000:]}"


class ContainersUnavailable(RuntimeError):
    """This machine cannot build or run containers; the message is one line saying why."""


def log(message: str) -> None:
    print(f"[containers] {message}", file=sys.stderr, flush=True)


def _missing() -> list[str]:
    return [command for command in PACKAGES if shutil.which(command) is None]


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=1800,
    )


def ensure_tools() -> None:
    """podman, runc and mmdebstrap on PATH, installed with apt-get when missing."""
    if not sys.platform.startswith("linux"):
        raise ContainersUnavailable(f"containers need Linux, this is {sys.platform}")
    if os.geteuid() != 0:
        raise ContainersUnavailable("building root filesystems and running rootful podman needs root")
    missing = _missing()
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ContainersUnavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    with cache_lock("apt-container-tools"):
        missing = _missing()
        if not missing:
            return
        packages = sorted({PACKAGES[command] for command in missing})
        log(f"installing {' '.join(packages)} with apt-get")
        installed = _apt_get("install", "-y", "-q", "--no-install-recommends", *packages)
        if installed.returncode != 0:
            _apt_get("update", "-q")
            installed = _apt_get("install", "-y", "-q", "--no-install-recommends", *packages)
        if installed.returncode != 0 or _missing():
            last = (installed.stderr.strip().splitlines() or ["no output"])[-1]
            raise ContainersUnavailable(f"apt-get install {' '.join(packages)} failed: {last}")


def podman(
    *args: str,
    check: bool = True,
    timeout: float = 1800,
    capture: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman <global flags> args`; on failure with check, raise with podman's stderr."""
    command = ["podman", *GLOBAL_FLAGS, *args]
    result = subprocess.run(
        command,
        capture_output=capture,
        text=True,
        check=False,
        timeout=timeout,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise PodmanFailed(result.returncode, command, result.stdout, result.stderr)
    return result


def nice(command: Sequence[str]) -> list[str]:
    """command under `nice` (builds share the machine with other work)."""
    return ["nice", "-n", "10", *command] if shutil.which("nice") else list(command)


def run_in(image: str, *command: str, entrypoint: str | None = None, check: bool = True) -> str:
    """Run a command in a throw-away container of image (no network); its stdout."""
    flags = ["--rm", "--network=none", *ULIMITS]
    if entrypoint is not None:
        flags += ["--entrypoint", entrypoint]
    return podman("run", *flags, image, *command, check=check).stdout


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def image_id(name: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def image_size(name: str) -> int:
    """Bytes the image takes in local storage (every layer unpacked)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def save_archive(name: str, archive: Path) -> None:
    """`podman save --format oci-archive`: loadable with `podman load` and `ctr -n k8s.io images import`."""
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    podman("save", "--quiet", "--format", "oci-archive", "-o", str(partial), name)
    partial.replace(archive)


def load_archive(archive: Path, name: str) -> None:
    """Load an archive written by save_archive into local storage; it must bring `name`."""
    podman("load", "--quiet", "-i", str(archive))
    if not image_exists(name):
        raise RuntimeError(f"{archive} did not bring {name}")


def remove_container(container: str) -> None:
    podman("rm", "--force", "--time", "0", container, check=False)


def wait_for(predicate, what: str, seconds: float = 120.0, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    """Poll predicate() until it is true; raise TimeoutError naming `what` otherwise (not an assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {seconds:.0f} s")
