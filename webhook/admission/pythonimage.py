"""Lighter pods: which CPython a component image runs, and how big the shim's emptyDir must be for it.

When the main container's image is the official Python image with a minor in its tag (`python:3.7`,
`python:3.11-slim`, `docker.io/library/python:3.12@sha256:...`), the init container copies only that
minor's vendored wandb (`shim install ... --python 3.X`) and the emptyDir's sizeLimit shrinks to fit it.
Any other image gets every minor, as before, so nothing that records today stops recording.

An official Python image holds no protobuf, so the minor's compat wandb (for images that load a protobuf
older than the minor's vendored wandb accepts, such as kfp 2.0.x's 3.20) is needed only when the pod's
own command installs packages: any `pip install` other than KFP's dependency-free `kfp` install
(`'kfp==2.X' '--no-deps'`, kfp 2.1+) adds `--compat`.

The size of each minor's copy comes from the payload manifest (`site/manifest.json`, field
`minors[3.X].install.bytes`) that the image holds next to the payload; the server reads it once. Without a
readable manifest the configured `shim_size_limit` (the size of the full copy) is used.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

from webhook.shim import contract

#: Official Docker Hub Python images, optionally registry- and namespace-qualified, tag starting with the
#: minor (`3.11`, `3.11.7`, `3.11-slim-bookworm`), with or without a digest.
_OFFICIAL_PYTHON = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(?:library/)?python"
    r":(3\.[0-9]{1,2})(?:[.-][A-Za-z0-9_.-]{0,120})?(?:@sha256:[0-9a-f]{64})?$"
)
#: What the shim itself (bootstrap, package, manifest) takes, on top of a minor's vendored wandb.
SHIM_BYTES = 2 * 1024 * 1024
#: Head room over the measured copy: an init container image built with other pins must still fit.
HEADROOM = 1.5
MIN_LIMIT_MIB = 16
_MIB = 1024 * 1024


def python_minor(image: str) -> str | None:
    """'3.11' for an official Python image whose tag names the minor; None for any other image."""
    match = _OFFICIAL_PYTHON.match(image.strip())
    return match.group(1) if match else None


_PIP_INSTALL = re.compile(r"\bpip3?\s+install\s")
_SHELL_OPERATOR = frozenset("();<>|&")
#: What KFP's own kfp install line holds besides `kfp==X` and --no-deps (kfp 2.1+).
_KFP_LINE_EXTRAS = ("typing-extensions",)


def _pip_install_words(line: str) -> list[str] | None:
    """The shell words after `pip install` up to the next shell operator; None when unparseable."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    try:
        for token in lexer:
            if token and set(token) <= _SHELL_OPERATOR:
                break
            words.append(token)
    except ValueError:
        return None
    return words


def _harmless_install(words: list[str] | None) -> bool:
    """Whether one `pip install WORDS` is KFP's kfp install without dependencies (so no protobuf)."""
    if words is None or "--no-deps" not in words:
        return False
    requirements = [word for word in words if not word.startswith("-")]
    if not requirements:
        return False
    for requirement in requirements:
        name = re.split(r"[<>=!~;\s\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        if name == "kfp":
            if not re.match(r"^kfp==2\.(?:[1-9]|[1-9][0-9])\.", requirement):
                return False  # kfp 2.0.x, or a range: it may come with protobuf 3
        elif name not in _KFP_LINE_EXTRAS:
            return False
    return True


def installs_packages(argv: list[str]) -> bool:
    """Whether the container's command pip-installs packages that may bring their own protobuf."""
    for text in argv:
        for match in _PIP_INSTALL.finditer(text):
            line = text[match.end() :].split("\n", 1)[0]
            if not _harmless_install(_pip_install_words(line)):
                return True
    return False


def payload_manifest_path() -> Path:
    """The manifest of the payload `shim install` copies from (same lookup as install.resolve_payload)."""
    root = os.environ.get(contract.PAYLOAD_DIR_ENV) or contract.DEFAULT_PAYLOAD_DIR
    return Path(root) / contract.SITE_SUBDIR / "manifest.json"


@functools.lru_cache(maxsize=8)
def _install_bytes(manifest_path: str) -> dict[tuple[str, bool], int] | None:
    """(minor, compat) -> bytes `shim install --python minor [--compat]` copies; None without a manifest."""
    try:
        manifest: Any = json.loads(Path(manifest_path).read_text())
        sizes = {}
        for minor, entry in manifest["minors"].items():
            sizes[(minor, False)] = int(entry["install"]["bytes"])
            sizes[(minor, True)] = int(entry["install"]["compat_bytes"])
        return sizes
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def size_limit(minor: str | None, compat: bool, full_limit: str) -> str:
    """The emptyDir sizeLimit for a pod that copies `minor` only (None: every minor, the full limit)."""
    if minor is None:
        return full_limit
    sizes = _install_bytes(str(payload_manifest_path()))
    if sizes is None:
        return full_limit
    needed = (sizes.get((minor, compat), 0) + SHIM_BYTES) * HEADROOM
    return f"{max(MIN_LIMIT_MIB, math.ceil(needed / _MIB))}Mi"


def install_args(minor: str | None, compat: bool) -> list[str]:
    """What the init container adds to the install command: nothing, or `--python 3.X [--compat]`."""
    if minor is None:
        return []
    return [contract.INSTALL_PYTHON_FLAG, minor, *([contract.INSTALL_COMPAT_FLAG] if compat else [])]
