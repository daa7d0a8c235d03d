"""Helpers the shim tests share: a real installed shim, the cached vendored-wandb payload, env builders.

`install_shim(dest)` runs the same `install()` the init container runs, so tests exercise the real layout.
`payload_dir()` builds the payload once (real pip, real wheels) into the test cache and reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, Optional

from tests.support.venvs import cache_lock, cache_root, find_python
from webhook.shim import contract
from webhook.shim_build import payload
from webhook.shim_build.install import install

#: Minors the tests need vendored (the rest of SUPPORTED_MINORS is built too, for the size figures).
PAYLOAD_MINORS = payload.SUPPORTED_MINORS


def payload_key(minors=PAYLOAD_MINORS, platform: Optional[str] = None) -> str:
    """Cache key of a payload build: what it pins, for which minors and arch, in which format."""
    spec = {
        "format": payload.PAYLOAD_FORMAT,
        "pins": {minor: payload.WANDB_PINS[minor] for minor in minors},
        "compat": {minor: payload.COMPAT_PIN for minor in minors if minor in payload.COMPAT_MINORS},
        "platform": platform or payload.host_platform(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def payload_dir(minors=PAYLOAD_MINORS, platform: Optional[str] = None) -> Path:
    """A built payload (its `site/` holds py3.X dirs and manifest.json), built on first use then reused."""
    root = cache_root() / f"payload-{payload_key(minors, platform)}"
    if (root / contract.SITE_SUBDIR / "manifest.json").is_file():
        return root
    with cache_lock(root.name):
        if not (root / contract.SITE_SUBDIR / "manifest.json").is_file():
            print(f"[payload] building {root} (first run only; minutes)", file=sys.stderr)
            payload.build_payload(root, minors=minors, platform=platform)
    return root


def install_shim(dest: os.PathLike[str] | str, with_payload: bool = True) -> Path:
    """Install the shim into dest exactly as the init container does; return dest.

    with_payload=False installs bootstrap + package only (fast; vendored wandb absent), which is what a
    test wants when the interpreter under test brings its own wandb or none is needed.
    """
    dest = Path(dest)
    if with_payload:
        install(dest, payload_dir())
    else:
        missing = cache_root() / "no-payload-here"
        previous = os.environ.get("WANDB_KFP_PAYLOAD_DIR")
        os.environ["WANDB_KFP_PAYLOAD_DIR"] = str(missing)
        try:
            install(dest)
        finally:
            if previous is None:
                os.environ.pop("WANDB_KFP_PAYLOAD_DIR", None)
            else:
                os.environ["WANDB_KFP_PAYLOAD_DIR"] = previous
    return dest


def bootstrap_dir(shim: Path) -> Path:
    """Where the webhook points PYTHONPATH for a shim installed at `shim`."""
    return Path(contract.bootstrap_dir(str(shim)))


def shim_env(shim: Path, extra: Optional[Mapping[str, str]] = None, debug: bool = True) -> Dict[str, str]:
    """A clean environment with the bootstrap first on PYTHONPATH, as the webhook injects it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WANDB_", "PYTHON")) and key != "_KFP_RUNTIME"
    }
    env["PYTHONPATH"] = str(bootstrap_dir(shim))
    if debug:
        env["WANDB_KFP_SHIM_DEBUG"] = "1"
    env.update(extra or {})
    return env


def run_python(
    python: os.PathLike[str] | str, args, env: Mapping[str, str], cwd=None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run a real interpreter (stdin empty) and capture its output as text."""
    return subprocess.run(
        [str(python), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def shim_lines(stderr: str) -> list[str]:
    """The shim's own stderr lines (each starts with the `wandb-kfp-shim:` prefix)."""
    return [line for line in stderr.splitlines() if line.startswith("wandb-kfp-shim:")]


def pythons(minors) -> Dict[str, Path]:
    """The subset of the given CPython minors installed here, minor -> interpreter."""
    found = {}
    for minor in minors:
        python = find_python(minor)
        if python is not None:
            found[minor] = python
    return found


# --- Running real compiled pods (tests/fixtures/pods.py loads them) the way `main` runs them -------
def python3_path_dir(python: os.PathLike[str] | str, where: Path) -> Path:
    """A directory holding `python3` (and `python`) that run `python`, to put first on PATH."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("python3", "python"):
        link = where / name
        if not link.exists():
            link.symlink_to(python)
    return where


def with_path_first(env: Mapping[str, str], directory: Path) -> Dict[str, str]:
    """env with directory first on PATH."""
    result = dict(env)
    result["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', os.defpath)}"
    return result
