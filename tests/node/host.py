"""Can this machine run a real node, and the Debian packages it needs.

The node tier starts containerd, runc, CNI and a kubelet on the host itself, so it needs root, network
namespaces, a bridge with netfilter on bridged traffic, overlayfs and cgroups. Where one is missing the
whole tier is skipped with one line saying which; packages are installed with apt-get when missing
(the project's own files must install what it needs, a fresh CI machine has none of them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Debian 12 package -> a file it installs that the tier uses.
PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "podman": "/usr/bin/podman",
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a",
    "iproute2": "/usr/sbin/ip",
    "util-linux": "/usr/bin/unshare",
}
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")


def _log(message: str) -> None:
    print(f"[node-host] {message}", file=sys.stderr, flush=True)


def missing_packages() -> list[str]:
    """Debian packages of the tier that are not installed."""
    return [package for package, path in PACKAGES.items() if not Path(path).exists()]


def ensure_packages() -> None:
    """apt-get install the missing packages (root only; one `apt-get update` first)."""
    missing = missing_packages()
    if not missing or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    _log(f"installing {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=900"]
    for command in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", *missing]):
        result = subprocess.run(["apt-get", *lock, *command], env=env, check=False)
        if result.returncode != 0:
            _log(f"apt-get {command[0]} exited {result.returncode}; the tier will say what is missing")
            return


def unsupported_reason() -> str | None:
    """Why this machine cannot run the node tier, or None when it can."""
    if sys.platform != "linux":
        return f"the node tier needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the node tier needs root (containerd, runc, a bridge and iptables rules on the host)"
    missing = missing_packages()
    if missing:
        return f"missing Debian packages: {' '.join(missing)} (python -m tests.node.prepare installs them)"
    absent = [plugin for plugin in CNI_PLUGINS if not (CNI_BIN_DIR / plugin).exists()]
    if absent:
        return f"CNI plugins missing from {CNI_BIN_DIR}: {', '.join(absent)}"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "no overlayfs in this kernel (containerd's snapshotter needs it)"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "no cgroup file system mounted at /sys/fs/cgroup"
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        return "bridged traffic is not seen by netfilter (no br_netfilter), so Services cannot reach pods"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"cannot create network namespaces: {probe.stderr.strip()}"
    return None
