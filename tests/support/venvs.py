"""Cached virtualenvs for the real tools the tests drive (KFP SDKs, wandb under other Pythons).

Each venv lives outside the checkout, under the cache root, keyed by its Python and requirements, so a
second run reuses it and two tiers asking for the same one share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def cache_root() -> Path:
    """Root of every cached test artefact (venvs, binaries, payloads); override with WKW_CACHE."""
    root = Path(os.environ.get("WKW_CACHE", Path.home() / ".cache" / "wandb-kfp-webhook"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """An exclusive lock on one cached artefact, so parallel test runs (or worktrees) never build it twice."""
    locks = cache_root() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_python(minor: str) -> Path | None:
    """The interpreter for a CPython minor ("3.9"): pyenv's, else one on PATH; None when absent."""
    candidates = sorted(PYENV_ROOT.glob(f"versions/{minor}.*/bin/python{minor}"), reverse=True)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which(f"python{minor}")
    return Path(found) if found else None


def _venv_dir(name: str, minor: str, requirements: list[str]) -> Path:
    key = hashlib.sha256("\n".join([minor, *requirements]).encode()).hexdigest()[:10]
    return cache_root() / "venvs" / f"{name}-py{minor}-{key}"


def venv_path(name: str, minor: str, requirements: list[str]) -> Path | None:
    """The python of that venv when it is already built and complete; None otherwise (never builds)."""
    venv = _venv_dir(name, minor, requirements)
    venv_python = venv / "bin" / "python"
    return venv_python if (venv / ".complete").exists() and venv_python.exists() else None


def ensure_venv(name: str, minor: str, requirements: list[str]) -> Path:
    """Create (once) a venv named after `name`, Python `minor` and the requirements; return its python.

    Raises LookupError when that Python is not on the machine, so a caller can skip with the reason.
    """
    built = venv_path(name, minor, requirements)
    if built is not None:
        return built
    with cache_lock(_venv_dir(name, minor, requirements).name):
        return _build_venv(name, minor, requirements)


def _build_venv(name: str, minor: str, requirements: list[str]) -> Path:
    built = venv_path(name, minor, requirements)
    if built is not None:
        return built
    python = find_python(minor)
    if python is None:
        raise LookupError(f"CPython {minor} is not installed (looked in {PYENV_ROOT} and on PATH)")
    venv = _venv_dir(name, minor, requirements)
    marker = venv / ".complete"
    venv_python = venv / "bin" / "python"
    if venv.exists():
        shutil.rmtree(venv)
    print(f"[venvs] creating {venv.name}: {' '.join(requirements) or '(no packages)'}", file=sys.stderr)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    if requirements:
        subprocess.run(
            [
                str(venv_python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *requirements,
            ],
            check=True,
        )
    marker.write_text("\n".join(requirements) + "\n")
    return venv_python
