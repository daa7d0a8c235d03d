"""Shared helpers: statistics, the machine description, tool discovery, bounded subprocesses."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.stats import percentile  # noqa: F401 - re-exported for the benchmark sections

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
PACKAGES = (
    "flask",
    "werkzeug",
    "gunicorn",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "prometheus-client",
    "cryptography",
    "kubernetes",
    "jsonpatch",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float | None:
    clean = [value for value in values if value is not None]
    return statistics.median(clean) if clean else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_version(command: Sequence[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout + result.stderr).strip().splitlines()
    return text[0] if text else None


def machine_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(value, 2) for value in load_average()],
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "openssl": __import__("ssl").OPENSSL_VERSION,
        "packages": versions,
        "tools": {
            "wrk": tool_version(["wrk", "-v"]),
            "hyperfine": tool_version(["hyperfine", "--version"]),
        },
    }


def apt_install(packages: Sequence[str]) -> str | None:
    """Install Debian packages when missing; None on success, else the reason it could not."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "apt-get unavailable or not root"
    log(f"installing {' '.join(packages)} with apt-get")
    try:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, check=False)
        result = subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"apt-get failed: {error}"
    if result.returncode != 0:
        return f"apt-get install {' '.join(packages)} exited {result.returncode}: {result.stderr.strip()[-300:]}"
    return None


def ensure_tool(binary: str, package: str) -> str | None:
    """The tool's path, installing its Debian package when needed; None when it cannot be had."""
    found = shutil.which(binary)
    if found:
        return found
    problem = apt_install([package])
    if problem:
        log(problem)
    return shutil.which(binary)


def rss_kib(pid: int) -> int | None:
    """Resident set size of one process from /proc (VmRSS), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def pss_kib(pid: int) -> int | None:
    """Proportional set size (shared pages split between the processes sharing them), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children_of(pid: int) -> list[int]:
    """Direct children of a process (gunicorn workers of the arbiter), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds a process has used (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
